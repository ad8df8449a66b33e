//! RESP (the Redis protocol) the way Dapr's `lock.redis` component speaks it: the commands,
//! and a small framer for the replies.
//!
//! TryLock is `SET lock||<resourceId> <owner> EX <expiry> NX`; Unlock runs the component's
//! Lua script through `EVALSHA` after one `SCRIPT LOAD` at start. Commands are arrays of bulk
//! strings. Invariants: the framer never reads past `buf`, never panics on any bytes, and
//! handles exactly the reply types those commands produce (simple string, error, integer,
//! bulk string); anything else is an error value.

use std::fmt;

use crate::wire::{
    Outcome, Template, RESOURCE_ID_BYTES, UNLOCK_NOT_FOUND, UNLOCK_OTHERS, UNLOCK_SUCCESS,
};

/// The unlock script of Dapr's `lock.redis`: -1 no such lock, -2 someone else's, else the
/// result of `DEL` (1).
pub const UNLOCK_SCRIPT: &str = "local v = redis.call(\"get\", KEYS[1]); if v == false then return -1 end; if v ~= ARGV[1] then return -2 else return redis.call(\"del\", KEYS[1]) end";

/// The key prefix `lock.redis` puts before the resource id when no app id is configured.
pub const KEY_PREFIX: &str = "lock||";

/// The longest simple-string, error or integer line accepted (Redis error texts are short).
pub const MAX_LINE_BYTES: usize = 1024;
/// The largest bulk string accepted: a script digest is 40 bytes; values are lock owners.
pub const MAX_BULK_BYTES: usize = 8 * 1024;

/// Encodes one command: an array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        bulk(arg, &mut out);
    }
    out
}

fn bulk(arg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// The head of a key argument: its length line and the prefix, before the resource id.
fn key_head(out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!("${}\r\n{KEY_PREFIX}", KEY_PREFIX.len() + RESOURCE_ID_BYTES).as_bytes(),
    );
}

/// TryLock: `SET lock||<id> <owner> EX <expiry> NX`.
pub fn set_request(owner: &str, expiry_s: u32) -> Template {
    let mut head = b"*6\r\n".to_vec();
    bulk(b"SET", &mut head);
    key_head(&mut head);
    let mut tail = b"\r\n".to_vec();
    bulk(owner.as_bytes(), &mut tail);
    bulk(b"EX", &mut tail);
    bulk(expiry_s.to_string().as_bytes(), &mut tail);
    bulk(b"NX", &mut tail);
    Template::new(&head, &tail)
}

/// Unlock: `EVALSHA <sha> 1 lock||<id> <owner>`.
pub fn evalsha_request(sha: &str, owner: &str) -> Template {
    let mut head = b"*5\r\n".to_vec();
    bulk(b"EVALSHA", &mut head);
    bulk(sha.as_bytes(), &mut head);
    bulk(b"1", &mut head);
    key_head(&mut head);
    let mut tail = b"\r\n".to_vec();
    bulk(owner.as_bytes(), &mut tail);
    Template::new(&head, &tail)
}

/// `SCRIPT LOAD <unlock script>`: answered with the script's digest as a bulk string.
pub fn script_load_request() -> Vec<u8> {
    command(&[b"SCRIPT", b"LOAD", UNLOCK_SCRIPT.as_bytes()])
}

/// Why a reply cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A type byte other than `+ - : $`.
    Type(u8),
    LineTooLong,
    Integer,
    BulkLength,
    BulkTerminator,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Type(b) => write!(f, "unexpected reply type byte 0x{b:02x}"),
            Error::LineTooLong => f.write_str("reply line too long"),
            Error::Integer => f.write_str("malformed integer"),
            Error::BulkLength => f.write_str("malformed or too large bulk length"),
            Error::BulkTerminator => f.write_str("bulk string not followed by CRLF"),
        }
    }
}

/// One framed reply; byte strings borrow the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    /// `None` is the null bulk string `$-1`.
    Bulk(Option<&'a [u8]>),
}

/// Frames the reply at the start of `buf`: `Ok(Some((reply, bytes used)))`, or `Ok(None)` if
/// it is not all there yet.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, Error> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    if !matches!(kind, b'+' | b'-' | b':' | b'$') {
        return Err(Error::Type(kind));
    }
    let Some((line, after_line)) = line(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let used = 1 + after_line;
    match kind {
        b'+' => Ok(Some((Reply::Simple(line), used))),
        b'-' => Ok(Some((Reply::Error(line), used))),
        b':' => Ok(Some((Reply::Integer(integer(line)?), used))),
        _ => {
            let n = integer(line).map_err(|_| Error::BulkLength)?;
            if n == -1 {
                return Ok(Some((Reply::Bulk(None), used)));
            }
            let n = usize::try_from(n).map_err(|_| Error::BulkLength)?;
            if n > MAX_BULK_BYTES {
                return Err(Error::BulkLength);
            }
            let Some(rest) = buf.get(used..used + n + 2) else {
                return Ok(None);
            };
            let (data, crlf) = rest.split_at(n);
            if crlf != b"\r\n" {
                return Err(Error::BulkTerminator);
            }
            Ok(Some((Reply::Bulk(Some(data)), used + n + 2)))
        }
    }
}

/// The line before the first CRLF and the bytes up to and including that CRLF.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Error> {
    let window = buf.get(..buf.len().min(MAX_LINE_BYTES + 2)).unwrap_or(buf);
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Some((window.get(..at).unwrap_or_default(), at + 2))),
        None if buf.len() >= MAX_LINE_BYTES + 2 => Err(Error::LineTooLong),
        None => Ok(None),
    }
}

fn integer(line: &[u8]) -> Result<i64, Error> {
    let (negative, digits) = match line.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::Integer);
    }
    let mut n: i64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(d - b'0')))
            .ok_or(Error::Integer)?;
    }
    Ok(if negative { -n } else { n })
}

/// Reads a reply for the workload, mapping the unlock script's results to Dapr's statuses.
pub fn outcome(reply: &Reply<'_>) -> Outcome {
    match reply {
        Reply::Simple(b"OK") => Outcome::Granted,
        Reply::Bulk(None) => Outcome::Denied,
        Reply::Integer(1) => Outcome::Unlocked(UNLOCK_SUCCESS),
        // DEL answering 0 means the key vanished between GET and DEL: gone, like -1.
        Reply::Integer(-1 | 0) => Outcome::Unlocked(UNLOCK_NOT_FOUND),
        Reply::Integer(-2) => Outcome::Unlocked(UNLOCK_OTHERS),
        Reply::Error(_) => Outcome::Refused,
        _ => Outcome::Unrecognized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::resource_id;

    // SET is exactly the command lock.redis sends, with the lock|| key prefix.
    #[test]
    fn set_matches_lock_redis() {
        let t = set_request("owner-3", 10);
        let mut out = Vec::new();
        t.encode(0x12ab, &mut out);
        let key = [KEY_PREFIX.as_bytes(), &resource_id(0x12ab)].concat();
        let want = command(&[b"SET", &key, b"owner-3", b"EX", b"10", b"NX"]);
        assert_eq!(out, want);
        assert_eq!(t.len(), want.len());
        assert!(out.starts_with(b"*6\r\n$3\r\nSET\r\n$42\r\nlock||00000000-"));
    }

    // EVALSHA names one key and passes the owner as the argument.
    #[test]
    fn evalsha_matches_lock_redis() {
        let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
        let t = evalsha_request(sha, "owner-0");
        let mut out = Vec::new();
        t.encode(5, &mut out);
        let key = [KEY_PREFIX.as_bytes(), &resource_id(5)].concat();
        let want = command(&[b"EVALSHA", sha.as_bytes(), b"1", &key, b"owner-0"]);
        assert_eq!(out, want);
    }

    // SCRIPT LOAD carries the script verbatim as one bulk string.
    #[test]
    fn script_load_carries_the_script() {
        let cmd = script_load_request();
        let head = format!(
            "*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n${}\r\n",
            UNLOCK_SCRIPT.len()
        );
        assert!(cmd.starts_with(head.as_bytes()));
        assert!(cmd.ends_with(b"end\r\n"));
    }

    // Each reply type is framed with its exact length.
    #[test]
    fn frames_each_reply_type() {
        let cases: &[(&[u8], Reply<'_>)] = &[
            (b"+OK\r\n", Reply::Simple(b"OK")),
            (b"-ERR nope\r\n", Reply::Error(b"ERR nope")),
            (b":1\r\n", Reply::Integer(1)),
            (b":-2\r\n", Reply::Integer(-2)),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"$0\r\n\r\n", Reply::Bulk(Some(b""))),
            (b"$3\r\na\r\n\r\n", Reply::Bulk(Some(b"a\r\n"))),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Ok(Some((*want, input.len()))));
        }
    }

    // Split at every byte, a reply is incomplete until its last byte arrives.
    #[test]
    fn every_prefix_is_partial() {
        for input in [&b"+OK\r\n"[..], b":-1\r\n", b"$-1\r\n", b"$5\r\nhello\r\n"] {
            for cut in 0..input.len() {
                assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
            }
        }
    }

    // Pipelined replies are framed one after the other.
    #[test]
    fn frames_pipelined_replies() {
        let buf = b"+OK\r\n:1\r\n$-1\r\n:";
        let (a, n1) = parse(buf).unwrap().unwrap();
        let (b, n2) = parse(&buf[n1..]).unwrap().unwrap();
        let (c, n3) = parse(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!(
            [outcome(&a), outcome(&b), outcome(&c)],
            [Outcome::Granted, Outcome::Unlocked(0), Outcome::Denied]
        );
        assert_eq!(parse(&buf[n1 + n2 + n3..]), Ok(None));
    }

    // Bad input becomes an error value, never a panic.
    #[test]
    fn rejects_bad_replies() {
        let cases: &[(&[u8], Error)] = &[
            (b"*1\r\n:1\r\n", Error::Type(b'*')),
            (b"hello\r\n", Error::Type(b'h')),
            (b":\r\n", Error::Integer),
            (b":12a\r\n", Error::Integer),
            (b":99999999999999999999\r\n", Error::Integer),
            (b"$-2\r\n", Error::BulkLength),
            (b"$x\r\n", Error::BulkLength),
            (b"$99999\r\n", Error::BulkLength),
            (b"$2\r\nabcd", Error::BulkTerminator),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input),
                Err(*want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let long = [b"+".as_slice(), &[b'a'; MAX_LINE_BYTES + 2]].concat();
        assert_eq!(parse(&long), Err(Error::LineTooLong));
    }

    // Any bytes at all give a value, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = crate::zipf::Rng::new(11);
        let alphabet = b"+-:$*\r\n0123456789-OK";
        for _ in 0..20_000 {
            let len = (rng.next_u64() % 32) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse(&buf);
        }
    }

    // The script's answers map to Dapr's unlock statuses; errors are refusals.
    #[test]
    fn maps_replies_to_outcomes() {
        assert_eq!(outcome(&Reply::Integer(1)), Outcome::Unlocked(0));
        assert_eq!(outcome(&Reply::Integer(-1)), Outcome::Unlocked(1));
        assert_eq!(outcome(&Reply::Integer(-2)), Outcome::Unlocked(2));
        assert_eq!(outcome(&Reply::Integer(7)), Outcome::Unrecognized);
        assert_eq!(outcome(&Reply::Error(b"NOSCRIPT")), Outcome::Refused);
        assert_eq!(outcome(&Reply::Simple(b"PONG")), Outcome::Unrecognized);
        assert_eq!(outcome(&Reply::Bulk(Some(b"x"))), Outcome::Unrecognized);
    }
}
