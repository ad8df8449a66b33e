//! An incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! The decoder walks the wire bytes once, resuming where it stopped, and appends the chunk
//! data to a body buffer. It is strict where leniency lets a front proxy and this server
//! disagree on where the body ends: every line ends in CRLF (no bare LF, as Go since 1.24.2),
//! a chunk's data is followed by exactly CRLF, a size has 1 to 16 hex digits.
//!
//! Invariants:
//! - The decoded body never exceeds `max_body_bytes`: a chunk size that would pass it is
//!   rejected as soon as its digits say so, before any of its data arrives.
//! - Framing bytes (everything that is not chunk data) stay below `framing_limit`, so tiny
//!   chunks or endless extensions and trailers cannot make the wire size grow without bound.

use super::error::HttpError;

/// A chunk size has at most 16 hex digits: any more cannot fit in 64 bits (Go's rule).
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// Where the decoder stands in the chunked grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size (none read yet when `digits == 0`).
    Size,
    /// After the size, in optional whitespace before `;` or CR (RFC 9112's BWS).
    SizeSpace,
    /// In a chunk extension, skipped up to its CR.
    Extension,
    /// After the CR of a size line; LF expected.
    SizeLf,
    /// Copying `remaining` bytes of chunk data.
    Data,
    /// After a chunk's data; CR expected.
    DataCr,
    /// After a chunk's data and CR; LF expected.
    DataLf,
    /// At the start of a trailer line, or of the empty line that ends the body.
    TrailerStart,
    /// In a trailer field line, skipped up to its CR.
    Trailer,
    /// After the CR of a trailer line; LF expected.
    TrailerLf,
    /// After the CR of the final empty line; LF expected.
    EndLf,
}

/// Decodes one chunked body whose first byte is at `start` in the caller's buffer.
#[derive(Clone, Debug)]
pub(crate) struct ChunkDecoder {
    /// Index in the buffer of the next byte to look at.
    pos: usize,
    state: State,
    /// The size being read (in `Size`), or the data still to copy (in `Data`).
    remaining: u64,
    digits: u8,
    /// Framing bytes seen so far.
    framing_bytes: usize,
}

impl ChunkDecoder {
    /// A decoder for a body that starts at `start`.
    pub(crate) fn new(start: usize) -> Self {
        ChunkDecoder {
            pos: start,
            state: State::Size,
            remaining: 0,
            digits: 0,
            framing_bytes: 0,
        }
    }

    /// The next byte this decoder will look at; the caller's buffer must keep at least this
    /// many bytes between calls.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Decodes what `buf` holds beyond the last call, appending chunk data to `body`.
    /// Returns the end of the body on the wire once its final CRLF is in, `None` if more
    /// bytes are needed.
    pub(crate) fn advance(
        &mut self,
        buf: &[u8],
        body: &mut Vec<u8>,
        max_body_bytes: usize,
        framing_limit: usize,
    ) -> Result<Option<usize>, HttpError> {
        while let Some(&byte) = buf.get(self.pos) {
            if self.state == State::Data {
                let available = buf.len() - self.pos;
                let take = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
                let end = self.pos + take;
                body.extend_from_slice(buf.get(self.pos..end).unwrap_or_default());
                self.pos = end;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }

            self.pos += 1;
            self.framing_bytes += 1;
            if self.framing_bytes >= framing_limit {
                return Err(HttpError::ChunkFramingTooLarge);
            }
            if self.state == State::Size {
                if let Some(value) = hex_value(byte) {
                    if self.digits == MAX_CHUNK_SIZE_DIGITS {
                        return Err(HttpError::BadChunk);
                    }
                    self.remaining = self
                        .remaining
                        .checked_mul(16)
                        .and_then(|size| size.checked_add(u64::from(value)))
                        .ok_or(HttpError::BadChunk)?;
                    self.digits += 1;
                    // Digits only ever grow the size: decide now, before the data comes.
                    let total = (body.len() as u64).saturating_add(self.remaining);
                    if total > max_body_bytes as u64 {
                        return Err(HttpError::BodyTooLarge);
                    }
                    continue;
                }
            }
            self.state = match (self.state, byte) {
                (State::Size, b' ' | b'\t') if self.digits > 0 => State::SizeSpace,
                (State::Size, b';') if self.digits > 0 => State::Extension,
                (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
                (State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
                (State::SizeSpace, b';') => State::Extension,
                (State::SizeSpace, b'\r') => State::SizeLf,
                (State::Extension, b'\r') => State::SizeLf,
                (State::Extension, _) if is_field_byte(byte) => State::Extension,
                (State::SizeLf, b'\n') if self.remaining == 0 => State::TrailerStart,
                (State::SizeLf, b'\n') => State::Data,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => {
                    self.digits = 0;
                    State::Size
                }
                (State::TrailerStart, b'\r') => State::EndLf,
                // A trailer starts with a field name; leading whitespace would be obs-fold.
                (State::TrailerStart, _) if is_field_byte(byte) && byte > b' ' => State::Trailer,
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::Trailer, _) if is_field_byte(byte) => State::Trailer,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => return Ok(Some(self.pos)),
                _ => return Err(HttpError::BadChunk),
            };
        }
        Ok(None)
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Bytes allowed inside an extension or a trailer line: HTAB, SP, visible ASCII and
/// obs-text (RFC 9110 §5.5); never a control byte such as NUL, CR or LF.
fn is_field_byte(byte: u8) -> bool {
    byte == b'\t' || (b' '..=b'~').contains(&byte) || byte >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: usize = 64;
    const FRAMING: usize = 256;

    /// Decodes `wire` all at once: the body and its end, or the error.
    fn decode(wire: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
        let mut body = Vec::new();
        let mut d = ChunkDecoder::new(0);
        Ok(d.advance(wire, &mut body, MAX_BODY, FRAMING)?
            .map(|end| (body, end)))
    }

    #[test]
    fn decodes_valid_bodies() {
        // Protects: data, extensions, whitespace before them, trailers and upper-case hex.
        let table: [(&[u8], &[u8]); 7] = [
            (b"0\r\n\r\n", b""),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"5;name=value;x=\"q\"\r\nhello\r\n0;last\r\n\r\n", b"hello"),
            (b"5 \t;ext\r\nhello\r\n0 \r\n\r\n", b"hello"),
            (
                b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nOther:\tv\r\n\r\n",
                b"hello",
            ),
        ];
        for (wire, expected) in table {
            let got = decode(wire);
            assert_eq!(
                got,
                Ok(Some((expected.to_vec(), wire.len()))),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        // Protects: bytes after the final CRLF (the next pipelined request) are not read.
        let wire = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        assert_eq!(decode(wire), Ok(Some((b"abc".to_vec(), 13))));
    }

    #[test]
    fn incomplete_bodies_need_more() {
        // Protects: every proper prefix of a valid body asks for more, never decides.
        let wire = b"5;e\r\nhello\r\n0\r\nT: v\r\n\r\n";
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn rejects_malformed_framing() {
        // Protects: the strict grammar: CRLF everywhere, hex sizes of 1 to 16 digits, data
        // followed by exactly CRLF, no control bytes in extensions or trailers.
        let table: [&[u8]; 16] = [
            b"\r\n",
            b"x\r\n",
            b";ext\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5 x\r\n",
            b"-5\r\n",
            b"+5\r\n",
            b"5;a\0b\r\n",
            b"0\r\nT: v\n\r\n",
            b"0\r\n folded\r\n\r\n",
            b"00000000000000000\r\n",
        ];
        for wire in table {
            assert_eq!(
                decode(wire),
                Err(HttpError::BadChunk),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        // Sixteen digits are still a size.
        assert_eq!(
            decode(b"0000000000000000\r\n\r\n"),
            Ok(Some((Vec::new(), 20)))
        );
    }

    #[test]
    fn body_limit_is_decided_on_the_size_line() {
        // Protects: a chunk that would pass max_body_bytes is refused from its size alone,
        // across chunks, and a huge or overflowing size is refused without arithmetic panics.
        assert_eq!(decode(b"41\r\n"), Err(HttpError::BodyTooLarge));
        assert_eq!(decode(b"40\r\n"), Ok(None));
        let mut exact = b"40\r\n".to_vec();
        exact.extend_from_slice(&[b'x'; 64]);
        exact.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(
            decode(&exact).map(|r| r.map(|(b, _)| b.len())),
            Ok(Some(64))
        );
        assert_eq!(decode(b"20\r\n"), Ok(None));
        let mut split = b"20\r\n".to_vec();
        split.extend_from_slice(&[b'x'; 32]);
        split.extend_from_slice(b"\r\n21\r\n");
        assert_eq!(decode(&split), Err(HttpError::BodyTooLarge));
        assert_eq!(
            decode(b"FFFFFFFFFFFFFFFF\r\n"),
            Err(HttpError::BodyTooLarge)
        );
        assert_eq!(
            decode(b"FFFFFFFFFFFFFFFFFFFF"),
            Err(HttpError::BodyTooLarge)
        );
    }

    #[test]
    fn framing_bytes_are_bounded() {
        // Protects: long extensions, many empty-ish chunks or endless trailers end in an
        // error once the framing reaches its limit, so the buffer cannot grow forever.
        let mut ext = b"1;".to_vec();
        ext.extend_from_slice(&[b'a'; FRAMING]);
        assert_eq!(decode(&ext), Err(HttpError::ChunkFramingTooLarge));

        let mut tiny = Vec::new();
        for _ in 0..MAX_BODY {
            tiny.extend_from_slice(b"1\r\nx\r\n");
        }
        tiny.extend_from_slice(b"0\r\n\r\n");
        // 64 one-byte chunks fit the body limit, but their 5 framing bytes each do not fit
        // the framing limit.
        const { assert!(MAX_BODY * 5 >= FRAMING) };
        assert_eq!(decode(&tiny), Err(HttpError::ChunkFramingTooLarge));

        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < FRAMING + 10 {
            trailers.extend_from_slice(b"T: v\r\n");
        }
        assert_eq!(decode(&trailers), Err(HttpError::ChunkFramingTooLarge));

        // Framing just below the limit is fine.
        let mut ok = b"0;".to_vec();
        ok.extend_from_slice(&[b'a'; FRAMING - 7]);
        ok.extend_from_slice(b"\r\n\r\n");
        assert_eq!(ok.len(), FRAMING - 1);
        assert_eq!(decode(&ok), Ok(Some((Vec::new(), FRAMING - 1))));
    }

    #[test]
    fn resumes_where_it_stopped() {
        // Protects: feeding the wire one byte at a time gives the same body and end as
        // feeding it whole, and no byte is copied twice.
        let wire = b"4;x=y\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nA: b\r\n\r\n";
        let mut body = Vec::new();
        let mut d = ChunkDecoder::new(0);
        let mut end = None;
        for cut in 1..=wire.len() {
            assert_eq!(end, None);
            end = match d.advance(&wire[..cut], &mut body, MAX_BODY, FRAMING) {
                Ok(end) => end,
                Err(e) => panic!("cut {cut}: {e}"),
            };
        }
        assert_eq!(end, Some(wire.len()));
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(d.position(), wire.len());
    }
}
