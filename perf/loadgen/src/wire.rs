//! What the protocols share: resource ids, pre-encoded request templates (HTTP/1.1 and RESP),
//! and the protocol-neutral reading of an answer ([`Outcome`], which gRPC answers map to too).
//!
//! Invariants: every request a connection sends is its template with a 36-byte resource id
//! spliced in, so encoding is two copies and a few digit writes, never an allocation once the
//! output buffer has grown; an answer is framed without copying, straight from the read buffer.

use std::fmt;

use crate::{http, resp};

/// Resource ids look like UUIDs so their length matches what real clients send.
pub const RESOURCE_ID_BYTES: usize = 36;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The resource id for `value`, its 128 bits in hex, UUID-shaped:
/// `00000000-0000-0000-0000-0000000012ab` for 0x12ab.
pub fn resource_id(value: u128) -> [u8; RESOURCE_ID_BYTES] {
    let mut id = *b"00000000-0000-0000-0000-000000000000";
    let mut rest = value;
    for byte in id.iter_mut().rev() {
        if rest == 0 {
            break;
        }
        if *byte == b'-' {
            continue;
        }
        *byte = HEX[(rest & 0xf) as usize];
        rest >>= 4;
    }
    id
}

/// A request with a hole for the resource id: `head`, then the id, then `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    bytes: Vec<u8>,
    hole_at: usize,
}

impl Template {
    pub fn new(head: &[u8], tail: &[u8]) -> Template {
        let mut bytes = Vec::with_capacity(head.len() + tail.len());
        bytes.extend_from_slice(head);
        bytes.extend_from_slice(tail);
        Template {
            bytes,
            hole_at: head.len(),
        }
    }

    /// The encoded length of every request from this template.
    pub fn len(&self) -> usize {
        self.bytes.len() + RESOURCE_ID_BYTES
    }

    /// Appends the request for resource `id` to `out`.
    pub fn encode(&self, id: u128, out: &mut Vec<u8>) {
        let (head, tail) = self.bytes.split_at(self.hole_at);
        out.extend_from_slice(head);
        out.extend_from_slice(&resource_id(id));
        out.extend_from_slice(tail);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The Dapr lock API over HTTP/1.1.
    Http,
    /// Redis, driven the way Dapr's `lock.redis` component drives it.
    Resp,
    /// The Dapr lock API over gRPC (`dapr.proto.runtime.v1.Dapr`), framed by tonic: never
    /// through [`parse`].
    Grpc,
    /// etcd's v3 API over gRPC, with the calls dlockd's `lock.etcd` store makes for each
    /// lock and unlock (see `crate::etcd`), framed by tonic: never through [`parse`].
    Etcd,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Resp => "resp",
            Protocol::Grpc => "grpc",
            Protocol::Etcd => "etcd",
        }
    }
}

/// An unlock status in Dapr's numbering: 0 released, 1 no such lock, 2 someone else's,
/// 3 internal error.
pub type UnlockStatus = u8;

pub const UNLOCK_SUCCESS: UnlockStatus = 0;
pub const UNLOCK_NOT_FOUND: UnlockStatus = 1;
pub const UNLOCK_OTHERS: UnlockStatus = 2;

/// What an answer said, whichever protocol carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `{"success":true}` / `+OK`.
    Granted,
    /// `{"success":false}` / `$-1`.
    Denied,
    /// `{"status":N}` / `:1`, `:-1`, `:-2`, mapped to Dapr's numbering.
    Unlocked(UnlockStatus),
    /// A well-framed success answer that is none of the above: what a fixed-response server
    /// sends. An error only under `--check`.
    Unrecognized,
    /// A non-200 status or a RESP error reply.
    Refused,
}

/// One framed answer at the front of the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub outcome: Outcome,
    /// Bytes the answer took; the next answer starts right after.
    pub len: usize,
    /// The server will close the connection after this answer (`Connection: close`).
    pub close: bool,
}

/// Why the bytes at the front of the read buffer are not an answer we can frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    Http(http::Error),
    Resp(resp::Error),
    /// gRPC answers (the Dapr API's and etcd's) are framed by tonic, not here.
    Grpc,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Http(e) => write!(f, "http: {e}"),
            WireError::Resp(e) => write!(f, "resp: {e}"),
            WireError::Grpc => f.write_str("grpc: answers are framed by tonic"),
        }
    }
}

/// Frames the first answer in `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(protocol: Protocol, buf: &[u8]) -> Result<Option<Frame>, WireError> {
    match protocol {
        Protocol::Http => match http::parse(buf) {
            Ok(Some((answer, len))) => Ok(Some(Frame {
                outcome: http::outcome(&answer),
                len,
                close: answer.close,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(WireError::Http(e)),
        },
        Protocol::Resp => match resp::parse(buf) {
            Ok(Some((reply, len))) => Ok(Some(Frame {
                outcome: resp::outcome(&reply),
                len,
                close: false,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(WireError::Resp(e)),
        },
        Protocol::Grpc | Protocol::Etcd => Err(WireError::Grpc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Resource ids are 36 bytes, UUID-shaped, and the index is readable in the last group.
    #[test]
    fn resource_id_formats_the_index() {
        assert_eq!(&resource_id(0), b"00000000-0000-0000-0000-000000000000");
        assert_eq!(
            &resource_id(0x12ab),
            b"00000000-0000-0000-0000-0000000012ab"
        );
        assert_eq!(
            &resource_id(0x1234_5678_9abc_def0),
            b"00000000-0000-0000-1234-56789abcdef0"
        );
        assert_eq!(
            &resource_id(u128::from(u64::MAX)),
            b"00000000-0000-0000-ffff-ffffffffffff"
        );
        assert_eq!(
            &resource_id((2 << 96) | 7),
            b"00000002-0000-0000-0000-000000000007"
        );
        assert_eq!(
            &resource_id(u128::MAX),
            b"ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
    }

    // Distinct indexes give distinct ids (the workloads rely on disjoint slices).
    #[test]
    fn resource_ids_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u128 {
            assert!(seen.insert(resource_id(i * 7919)));
        }
    }

    // A template splices the id between head and tail and reports the encoded length.
    #[test]
    fn template_splices_the_id() {
        let t = Template::new(b"<", b">");
        let mut out = b"x".to_vec();
        t.encode(1, &mut out);
        assert_eq!(out, b"x<00000000-0000-0000-0000-000000000001>".to_vec());
        assert_eq!(t.len(), 38);
    }
}
