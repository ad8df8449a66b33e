//! gRPC clients built on gRPC's C core (Python, C++, Ruby, PHP) that dial `unix:///path`
//! send the socket's path, percent-encoded, as the request's `:authority`
//! (`tmp%2Fdapr-app-grpc.socket`). That is no URI authority, and the HTTP/2 layer under tonic
//! refuses such a request outright (`RST_STREAM` with `PROTOCOL_ERROR`), where daprd's gRPC
//! server ignores the authority. dlockd has no use for the authority either, so on its gRPC
//! Unix socket [`FixAuthority`] reads each connection through [`Filter`], which rewrites an
//! `:authority` value that is no authority into one of the same length that is: every byte
//! outside the URI's unreserved characters becomes `-`. Keeping the length keeps the HPACK
//! dynamic table's sizes what the client's encoder counts, so every later reference to the
//! entry decodes to the rewritten value, consistently.
//!
//! The filter follows the HTTP/2 frames: it passes every byte through unchanged but those
//! of the first header block fragment of a HEADERS frame, which it holds until the frame is
//! whole, walks field by field (HPACK's representations, without decoding its Huffman
//! strings or keeping its table), and rewrites in place. A Huffman-coded authority, or one
//! named by a Huffman-coded literal name, passes unchanged (gRPC's C core codes neither).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client's connection preface, `PRI * HTTP/2.0…`, passed through.
const PREFACE_LEN: usize = 24;
/// A frame's header: length (24 bits), type, flags, stream.
const FRAME_HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The largest HEADERS frame held (HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`, which tonic
/// keeps); a larger one is refused by the HTTP/2 layer anyway, and passes through.
const MAX_HELD: usize = 16_384;
/// `:authority` in HPACK's static table.
const AUTHORITY_INDEX: usize = 1;

/// The rewriting of an HTTP/2 byte stream from a client: sans-IO, fed what was read.
#[derive(Debug, Default)]
pub(super) struct Filter {
    preface_done: usize,
    head: [u8; FRAME_HEAD],
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: usize,
    /// The current frame's payload, while a HEADERS frame is held.
    held: Option<(u8, Vec<u8>)>,
}

impl Filter {
    /// Appends to `out` what `input` becomes: the same bytes, but a HEADERS frame only once
    /// it is whole (rewritten).
    pub(super) fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.preface_done < PREFACE_LEN {
                let n = (PREFACE_LEN - self.preface_done).min(input.len());
                out.extend_from_slice(&input[..n]);
                self.preface_done += n;
                input = &input[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(input.len());
                match &mut self.held {
                    Some((_, held)) => held.extend_from_slice(&input[..n]),
                    None => out.extend_from_slice(&input[..n]),
                }
                self.payload_left -= n;
                input = &input[n..];
                if self.payload_left == 0 {
                    if let Some((flags, mut held)) = self.held.take() {
                        rewrite_headers(flags, &mut held);
                        out.extend_from_slice(&held);
                    }
                }
            } else {
                let n = (FRAME_HEAD - self.head_len).min(input.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&input[..n]);
                out.extend_from_slice(&input[..n]);
                self.head_len += n;
                input = &input[n..];
                if self.head_len == FRAME_HEAD {
                    self.head_len = 0;
                    self.start_frame();
                }
            }
        }
    }

    /// What an ended stream leaves: a frame held but cut short, as it came.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some((_, held)) = self.held.take() {
            out.extend_from_slice(&held);
        }
    }

    fn start_frame(&mut self) {
        let h = &self.head;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        self.payload_left = len;
        if h[3] == HEADERS && len > 0 && len <= MAX_HELD {
            self.held = Some((h[4], Vec::with_capacity(len)));
        }
    }
}

/// Rewrites the `:authority` of a whole HEADERS frame's payload in place, if it is no
/// authority. The fragment may end inside a field (the rest comes in CONTINUATION frames):
/// the walk stops there.
fn rewrite_headers(flags: u8, payload: &mut [u8]) {
    let mut start = 0;
    let mut end = payload.len();
    if flags & FLAG_PADDED != 0 {
        let Some(&pad) = payload.first() else { return };
        start = 1;
        end = match end.checked_sub(usize::from(pad)) {
            Some(end) if end >= start => end,
            _ => return,
        };
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    if let Some(block) = payload.get_mut(start..end) {
        rewrite_block(block);
    }
}

/// Walks an HPACK header block fragment field by field; `None` where it ends early or is
/// not HPACK.
fn rewrite_block(block: &mut [u8]) -> Option<()> {
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        if first & 0x80 != 0 {
            // Indexed field.
            (_, at) = integer(block, at, 7)?;
        } else if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            (_, at) = integer(block, at, 5)?;
        } else {
            // A literal: with incremental indexing (6-bit index), or without indexing or
            // never indexed (4-bit).
            let prefix = if first & 0x40 != 0 { 6 } else { 4 };
            let (index, next) = integer(block, at, prefix)?;
            at = next;
            let named = if index == 0 {
                let (range, huffman, next) = string(block, at)?;
                at = next;
                !huffman && &block[range] == b":authority"
            } else {
                index == AUTHORITY_INDEX
            };
            let (range, huffman, next) = string(block, at)?;
            at = next;
            if named && !huffman {
                fix_authority(&mut block[range]);
            }
        }
    }
    Some(())
}

/// An HPACK integer with an `n`-bit prefix at `at`: its value and where it ends.
fn integer(block: &[u8], at: usize, n: u32) -> Option<(usize, usize)> {
    let max = (1usize << n) - 1;
    let mut value = usize::from(*block.get(at)?) & max;
    let mut at = at + 1;
    if value < max {
        return Some((value, at));
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(at)?;
        at += 1;
        value = value.checked_add(usize::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some((value, at));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// An HPACK string at `at`: its bytes' range, whether they are Huffman-coded, and its end.
fn string(block: &[u8], at: usize) -> Option<(std::ops::Range<usize>, bool, usize)> {
    let huffman = *block.get(at)? & 0x80 != 0;
    let (len, start) = integer(block, at, 7)?;
    let end = start.checked_add(len)?;
    (end <= block.len()).then_some((start..end, huffman, end))
}

/// Makes `value` an authority of the same length, unless it is one.
fn fix_authority(value: &mut [u8]) {
    if tonic::codegen::http::uri::Authority::try_from(&*value).is_ok() {
        return;
    }
    for b in value.iter_mut() {
        if !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')) {
            *b = b'-';
        }
    }
}

/// A connection read through a [`Filter`].
pub(super) struct FixAuthority<S> {
    inner: S,
    filter: Filter,
    /// Filtered bytes not yet read, from `ready_at`.
    ready: Vec<u8>,
    ready_at: usize,
    scratch: Box<[u8]>,
    eof: bool,
}

impl<S> FixAuthority<S> {
    pub(super) fn new(inner: S) -> FixAuthority<S> {
        FixAuthority {
            inner,
            filter: Filter::default(),
            ready: Vec::new(),
            ready_at: 0,
            scratch: vec![0; 8192].into_boxed_slice(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.ready_at == this.ready.len() && !this.eof {
            this.ready.clear();
            this.ready_at = 0;
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                this.filter.finish(&mut this.ready);
            } else {
                this.filter.push(read.filled(), &mut this.ready);
            }
        }
        let n = (this.ready.len() - this.ready_at).min(buf.remaining());
        buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
        this.ready_at += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S> tonic::transport::server::Connected for FixAuthority<S> {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// The header block gRPC's C core (grpcio 1.85) sends for `unix:///tmp/cap.sock`, as
    /// captured: `:path`, then `:authority` as a literal with a new name, then indexed
    /// `:method POST` and `:scheme http`, then `content-type`.
    fn captured_block(authority: &[u8]) -> Vec<u8> {
        let mut b = vec![0x40, 5];
        b.extend_from_slice(b":path");
        b.push(4);
        b.extend_from_slice(b"/x/y");
        b.push(0x40);
        b.push(10);
        b.extend_from_slice(b":authority");
        b.push(authority.len() as u8);
        b.extend_from_slice(authority);
        b.extend_from_slice(&[0x83, 0x86, 0x40, 12]);
        b.extend_from_slice(b"content-type");
        b.push(16);
        b.extend_from_slice(b"application/grpc");
        b
    }

    fn filtered(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut filter = Filter::default();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            filter.push(piece, &mut out);
        }
        filter.finish(&mut out);
        out
    }

    // The captured request's authority becomes one of the same length, and every other
    // byte of the stream is kept, however the stream is cut into reads.
    #[test]
    fn a_socket_path_authority_is_rewritten_in_place() {
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        stream.extend(frame(HEADERS, 0x4, 1, &captured_block(b"tmp%2Fcap.sock")));
        stream.extend(frame(0x0, 0x1, 1, b"\0\0\0\0\x05hello%"));
        let mut want = PREFACE.to_vec();
        want.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        want.extend(frame(HEADERS, 0x4, 1, &captured_block(b"tmp-2Fcap.sock")));
        want.extend(frame(0x0, 0x1, 1, b"\0\0\0\0\x05hello%"));
        for chunk in [1, 2, 7, 9, 24, 4096] {
            assert_eq!(filtered(&stream, chunk), want, "reads of {chunk}");
        }
        let fixed = b"tmp-2Fcap.sock";
        assert!(tonic::codegen::http::uri::Authority::try_from(&fixed[..]).is_ok());
    }

    // A valid authority, named by the static table's index or by a literal name, padding
    // and priority fields, and a Huffman-coded value are all left alone; an indexed-name
    // authority that is no authority is rewritten.
    #[test]
    fn only_an_invalid_plain_authority_changes() {
        let block = |name_index: u8, value: &[u8], huffman: bool| {
            let mut b = vec![
                0x40 | name_index,
                value.len() as u8 | if huffman { 0x80 } else { 0 },
            ];
            b.extend_from_slice(value);
            b
        };
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(HEADERS, 0x4, 1, &block(1, b"localhost:50001", false)));
        stream.extend(frame(HEADERS, 0x4, 3, &block(1, b"a%2Fb", true)));
        assert_eq!(filtered(&stream, 5), stream);

        let mut padded = vec![2];
        padded.extend_from_slice(&[0, 0, 0, 0, 16]);
        padded.extend(block(1, b"dir%2Fs.sock", false));
        padded.extend_from_slice(&[0, 0]);
        let mut want = vec![2];
        want.extend_from_slice(&[0, 0, 0, 0, 16]);
        want.extend(block(1, b"dir-2Fs.sock", false));
        want.extend_from_slice(&[0, 0]);
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(
            HEADERS,
            0x4 | FLAG_PADDED | FLAG_PRIORITY,
            1,
            &padded,
        ));
        let mut expect = PREFACE.to_vec();
        expect.extend(frame(HEADERS, 0x4 | FLAG_PADDED | FLAG_PRIORITY, 1, &want));
        assert_eq!(filtered(&stream, 3), expect);
    }

    // A stream that ends inside a held frame gives back what came; garbage is passed on for
    // the HTTP/2 layer to refuse, without a panic.
    #[test]
    fn cut_and_garbled_streams_pass_through() {
        let mut stream = PREFACE.to_vec();
        let whole = frame(HEADERS, 0x4, 1, &captured_block(b"a%2Fb"));
        stream.extend_from_slice(&whole[..whole.len() - 3]);
        assert_eq!(filtered(&stream, 4), stream);
        let mut garbled = PREFACE.to_vec();
        garbled.extend(frame(HEADERS, FLAG_PADDED, 1, &[200, 0x40, 0xff, 0xff]));
        garbled.extend(frame(HEADERS, 0, 1, &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff]));
        assert_eq!(filtered(&garbled, 2), garbled);
    }
}
