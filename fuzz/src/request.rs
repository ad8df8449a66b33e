//! `request_to_response`: whole requests through the server's sans-IO path (framing,
//! routing, the token, the body, validation, a real `LeaseTable` on a virtual clock, the
//! answer and its HTTP bytes), each answer checked against the contract
//! (`docs/dapr-lock-contract.md`).
//!
//! An input is a session ([`Session`]): one of three configurations (stores and no token;
//! the same with a token; no store at all), then steps. A structured request step says what
//! a client sends (method, route with a configured, encoded or unknown store: daprd's lock
//! and unlock, dlockd's own renew, acquire and holder (`docs/extensions.md`), the health
//! checks, metadata, paths that route nowhere; token present,
//! absent or wrong, a body built from fields or raw bytes, Content-Length or chunked, HTTP/1.0
//! or 1.1); it is written out as HTTP, framed, answered, and the answer is compared with what
//! an independent oracle expects: status, content type, `Connection`, and the body (exact
//! bytes, or for an error its code and message). The oracle reads bodies with the reference
//! decoder of [`super::body`] and answers leases with the model of [`super::lease`]. Raw
//! steps send arbitrary HTTP bytes, or arbitrary method, target, token and body straight to
//! `Api::handle`; their answers must only have one of the contract's shapes. Every step that
//! reaches the lease table, raw or not, is answered by the model too, and both must agree.
//!
//! The lock path is the server's own: `Api::handle`, then for `Outcome::Lock` the decision
//! step every connection takes (`dlockd::dispatch::Shard::decide`, one shard on a virtual
//! clock), `answer_response`, and `http::write_response` with `Connection::of`, the
//! connection's own choice of header.
//!
//! An acquire that must wait (`Decision::Wait`: a `waitTimeoutMs` above 0 on a lock another
//! owner holds) is carried out as a worker carries it out, with the shard's own waiting
//! machinery: parked (`Shard::park`), then woken (`Shard::wake`) at each tick something comes
//! due (`Shard::next_due`) until its answer comes out (`Shard::take_over`). The session's
//! client is one client that waits for each answer, so nothing else happens during the wait:
//! the clock moves to the tick of the answer, which the model predicts with the answer itself
//! (granted on the tick after the holder's last live one, if that comes by the deadline, with
//! a lease from then; else `{"success":false}` at the deadline). What a blocking client cannot
//! do is left out: waiters that queue behind each other, an unlock or try-lock while someone
//! waits, a client that leaves, shutdown (`waiters` in a holder answer is therefore always 0).

use std::sync::{Mutex, OnceLock, PoisonError};

use dlockd::api::fuzzing::{check_lock_op, check_response};
use dlockd::api::{
    answer_response, Answer, Api, ApiConfig, Holding, LockOp, OpKind, Operation, Outcome, Response,
};
use dlockd::dispatch::{Decision, ReplyTo, Shard};
use dlockd::http::{write_response, Body, Connection, Frame, Framer, Limits, Method, Version};
use dlockd::lease::{Key, LeaseTable, Renewal, StoreId, UnlockStatus};
use dlockd::shard::{ShardId, SlotId};
use serde_json::Value;

use super::lease::Model;
use super::wire::{Reader, Writer};

/// Bounds of the simulated server: roomy enough for every structured request.
pub const LIMITS: Limits = Limits {
    max_header_bytes: 2048,
    max_body_bytes: 512,
};
pub const MAX_ID_BYTES: usize = 64;
/// `--max-wait` of the simulated server, in ms (dlockd's default).
pub const MAX_WAIT_MS: i32 = 60_000;
/// Small, so that the table fills up.
pub const MAX_LEASES: usize = 4;
pub const TOKEN: &[u8] = b"secret";
pub const APP_ID: &str = "fuzz";
/// The stores of configurations 0 and 1; one needs its space encoded in the URL.
pub const STORES: [&str; 3] = ["lockstore", "s", "my store"];
/// Configuration 0: stores, no token. 1: stores and [`TOKEN`]. 2: no store, no token.
pub const CONFIGS: usize = 3;
/// The clock at the start of a session, in ms.
const START_MS: u64 = 1_000_000;
const MAX_STEPS: usize = 32;

/// Paths that route nowhere, whatever the method (new ones go at the end, so that inputs
/// written before keep their paths).
pub const UNKNOWN_PATHS: [&str; 13] = [
    "/v1.0/lock/lockstore",
    "/v1.0-beta1/lock/lockstore",
    "/v1.0-alpha1/lock",
    "/v1.0-alpha1/lock/lockstore/extra",
    "/",
    "/v1.0/healthz/x",
    "/v1.0-alpha1/LOCK/lockstore",
    "/v1.0/state/lockstore",
    // Near misses of dlockd's own routes: under unlock, in capitals, one segment too many,
    // a verb it does not have, the verb in place of the store under unlock.
    "/v1.0-alpha1/unlock/lockstore/renew",
    "/v1.0-alpha1/lock/lockstore/RENEW",
    "/v1.0-alpha1/lock/lockstore/holder/x",
    "/v1.0-alpha1/lock/lockstore/release",
    "/v1.0-alpha1/unlock/acquire/lockstore",
];
/// Ids a body may use: plain, empty, with the key separator, at and over the length cap,
/// with characters JSON or Go's encoder escape.
pub const IDS: [&str; 9] = [
    "order-1",
    "worker-a",
    "",
    "a||b",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef!",
    "é😀",
    "<&>\"\\\n",
    "a|b",
];
/// Keys a body member may use: every field under both names, wrong case, unknown (new ones
/// go at the end, so that inputs written before keep their keys).
pub const KEYS: [&str; 13] = [
    "resourceId",
    "resource_id",
    "lockOwner",
    "lock_owner",
    "expiryInSeconds",
    "expiry_in_seconds",
    "storeName",
    "store_name",
    "ResourceId",
    "other",
    // An acquire's field; unknown, and skipped, on every other route.
    "waitTimeoutMs",
    "wait_timeout_ms",
    "WaitTimeoutMs",
];
/// Number literals for a value (new ones go at the end, so that inputs written before keep
/// their numbers).
pub const NUMBERS: [&str; 16] = [
    "10",
    "1",
    "0",
    "-5",
    "2147483647",
    "2147483648",
    "10.0",
    "1e1",
    "10.5",
    "1e400",
    "-0",
    "100e-1",
    // Waits: at `--max-wait`, just above it, just below 0, about a lease of one second.
    "60000",
    "60001",
    "-1",
    "1000",
];
/// Strings holding numbers, for the expiry and the wait.
pub const NUMBER_STRINGS: [&str; 6] = ["10", "1e1", " 10", "abc", "10 20", "1e,"];

// ---------------------------------------------------------------------------------------
// The input.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub config: usize,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Send(Req),
    /// The clock moves forward.
    Wait(u64),
    /// The table reclaims what expired, as the worker's tick does.
    Advance,
    /// Raw bytes on one connection, framed and answered request by request.
    Raw(Vec<u8>),
    /// Raw parts straight into `Api::handle`.
    RawApi {
        method: MethodChoice,
        target: Vec<u8>,
        token: Option<Vec<u8>>,
        body: Vec<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodChoice {
    Post,
    Get,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Req {
    pub method: MethodChoice,
    pub route: RouteChoice,
    pub token: TokenChoice,
    pub body: BodyChoice,
    pub framing: Framing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteChoice {
    /// A lock route: `/v1.0-alpha1/lock/{store}` (`TryLock`), `/v1.0-alpha1/unlock/{store}`
    /// (`Unlock`), or dlockd's `/v1.0-alpha1/lock/{store}/renew`, `.../acquire`, `.../holder`.
    Lock {
        op: Operation,
        store: StoreChoice,
        decor: Decor,
    },
    Healthz {
        outbound: bool,
        decor: Decor,
    },
    Metadata {
        decor: Decor,
    },
    /// One of [`UNKNOWN_PATHS`].
    Unknown(usize),
    /// A lock path with a `%` escape Go cannot parse.
    BadEscape,
}

/// Ways to write the same path, as bits: `//` before it, `//` between segments, a `.`
/// segment, a trailing `/`, a query, the absolute form `http://h/...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Decor(pub u8);

impl Decor {
    pub const LEADING_SLASHES: u8 = 1;
    pub const DOUBLE_SLASHES: u8 = 2;
    pub const DOT_SEGMENT: u8 = 4;
    pub const TRAILING_SLASH: u8 = 8;
    pub const QUERY: u8 = 16;
    pub const ABSOLUTE: u8 = 32;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// `STORES[i]` as is (the space of `my store` as `%20`).
    Configured(usize),
    /// `STORES[i]` with every byte percent-encoded.
    Encoded(usize),
    /// `my+store`: `+` is a space in a store name.
    Plus,
    /// Any bytes, percent-encoded where needed (empty: no store segment at all).
    Other(Vec<u8>),
    /// `LockStore`: names match case-sensitively.
    WrongCase,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenChoice {
    Absent,
    Right,
    Wrong(Vec<u8>),
    /// Two headers; the first one counts.
    RightThenWrong(Vec<u8>),
    WrongThenRight(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyChoice {
    Empty,
    Members(Vec<(usize, ValueChoice)>),
    Raw(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueChoice {
    Null,
    /// One of [`IDS`].
    Id(usize),
    /// A string of these bytes, each taken as a Latin-1 character.
    Text(Vec<u8>),
    /// One of [`NUMBERS`].
    Number(usize),
    /// One of [`NUMBER_STRINGS`], as a JSON string.
    NumberString(usize),
    True,
    Object,
    Array,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    /// Chunks of this many bytes.
    Chunked(usize),
    /// HTTP/1.0, with or without `Connection: keep-alive`.
    Http10 {
        keep_alive: bool,
    },
    /// HTTP/1.1 with `Connection: close`.
    Close,
    /// A `Content-Length` over the body limit, and no body.
    Oversize,
}

impl Session {
    pub fn read(r: &mut Reader<'_>) -> Self {
        let config = r.below(CONFIGS);
        let mut steps = Vec::new();
        while !r.is_empty() && steps.len() < MAX_STEPS {
            steps.push(Step::read(r));
        }
        Session { config, steps }
    }

    pub fn write(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.choice(self.config);
        for step in &self.steps {
            step.write(&mut w);
        }
        w.out
    }
}

impl<'a> arbitrary::Arbitrary<'a> for Session {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let data = u.bytes(u.len())?;
        Ok(Session::read(&mut Reader::new(data)))
    }
}

impl Step {
    fn read(r: &mut Reader<'_>) -> Self {
        match r.below(8) {
            0..=3 => Step::Send(Req::read(r)),
            4 => Step::Wait(match r.below(4) {
                0 => r.uint::<1>() % 6,
                1 => 995 + r.uint::<1>() % 11,
                2 => (1 + r.uint::<1>()) * 1000,
                _ => 1 << (r.uint::<1>() % 43),
            }),
            5 => Step::Advance,
            6 => Step::Raw(r.bytes(255).to_vec()),
            _ => Step::RawApi {
                method: MethodChoice::read(r),
                target: r.bytes(64).to_vec(),
                token: r.flag().then(|| r.bytes(16).to_vec()),
                body: r.bytes(255).to_vec(),
            },
        }
    }

    /// Writes a step [`Step::read`] can produce (waits of 0 to 5 ms, 995 to 1005 ms, whole
    /// seconds up to 256, or a power of two).
    fn write(&self, w: &mut Writer) {
        match self {
            Step::Send(req) => {
                w.choice(0);
                req.write(w);
            }
            Step::Wait(ms) => {
                w.choice(4);
                match *ms {
                    0..=5 => w.choice(0).uint::<1>(*ms),
                    995..=1005 => w.choice(1).uint::<1>(ms - 995),
                    ms if ms % 1000 == 0 && (1000..=256_000).contains(&ms) => {
                        w.choice(2).uint::<1>(ms / 1000 - 1)
                    }
                    ms => w.choice(3).uint::<1>(u64::from(ms.trailing_zeros())),
                };
            }
            Step::Advance => {
                w.choice(5);
            }
            Step::Raw(bytes) => {
                w.choice(6).bytes(bytes);
            }
            Step::RawApi {
                method,
                target,
                token,
                body,
            } => {
                w.choice(7);
                method.write(w);
                w.bytes(target);
                match token {
                    Some(token) => w.flag(true).bytes(token),
                    None => w.flag(false),
                };
                w.bytes(body);
            }
        }
    }
}

impl MethodChoice {
    fn read(r: &mut Reader<'_>) -> Self {
        match r.below(4) {
            0 | 1 => MethodChoice::Post,
            2 => MethodChoice::Get,
            _ => MethodChoice::Delete,
        }
    }

    fn write(self, w: &mut Writer) {
        w.choice(match self {
            MethodChoice::Post => 0,
            MethodChoice::Get => 2,
            MethodChoice::Delete => 3,
        });
    }

    fn name(self) -> &'static str {
        match self {
            MethodChoice::Post => "POST",
            MethodChoice::Get => "GET",
            MethodChoice::Delete => "DELETE",
        }
    }

    fn method(self) -> Method {
        match self {
            MethodChoice::Post => Method::Post,
            MethodChoice::Get => Method::Get,
            MethodChoice::Delete => Method::Other,
        }
    }
}

impl Req {
    fn read(r: &mut Reader<'_>) -> Self {
        let method = MethodChoice::read(r);
        // Tags 7 to 9 came with dlockd's own routes: inputs written before read as they did.
        let route = match r.below(10) {
            tag @ (0 | 1 | 7..=9) => {
                let store = match r.below(5) {
                    0 => StoreChoice::Configured(r.below(STORES.len())),
                    1 => StoreChoice::Encoded(r.below(STORES.len())),
                    2 => StoreChoice::Plus,
                    3 => StoreChoice::Other(r.bytes(12).to_vec()),
                    _ => StoreChoice::WrongCase,
                };
                let op = match tag {
                    0 => Operation::TryLock,
                    1 => Operation::Unlock,
                    7 => Operation::Renew,
                    8 => Operation::Acquire,
                    _ => Operation::Holder,
                };
                RouteChoice::Lock {
                    op,
                    store,
                    decor: Decor(r.byte()),
                }
            }
            tag @ (2 | 3) => RouteChoice::Healthz {
                outbound: tag == 3,
                decor: Decor(r.byte()),
            },
            4 => RouteChoice::Metadata {
                decor: Decor(r.byte()),
            },
            5 => RouteChoice::Unknown(r.below(UNKNOWN_PATHS.len())),
            _ => RouteChoice::BadEscape,
        };
        let token = match r.below(5) {
            0 => TokenChoice::Absent,
            1 => TokenChoice::Right,
            2 => TokenChoice::Wrong(r.bytes(8).to_vec()),
            3 => TokenChoice::RightThenWrong(r.bytes(8).to_vec()),
            _ => TokenChoice::WrongThenRight(r.bytes(8).to_vec()),
        };
        let body = match r.below(4) {
            0 => BodyChoice::Empty,
            1 | 2 => {
                let count = r.below(7);
                let members = (0..count)
                    .map(|_| (r.below(KEYS.len()), ValueChoice::read(r)))
                    .collect();
                BodyChoice::Members(members)
            }
            _ => BodyChoice::Raw(r.bytes(255).to_vec()),
        };
        let framing = match r.below(5) {
            0 => Framing::ContentLength,
            1 => Framing::Chunked(1 + r.below(16)),
            2 => Framing::Http10 {
                keep_alive: r.flag(),
            },
            3 => Framing::Close,
            _ => Framing::Oversize,
        };
        Req {
            method,
            route,
            token,
            body,
            framing,
        }
    }

    fn write(&self, w: &mut Writer) {
        self.method.write(w);
        match &self.route {
            RouteChoice::Lock { op, store, decor } => {
                w.choice(match op {
                    Operation::TryLock => 0,
                    Operation::Unlock => 1,
                    Operation::Renew => 7,
                    Operation::Acquire => 8,
                    Operation::Holder => 9,
                });
                match store {
                    StoreChoice::Configured(i) => w.choice(0).choice(*i),
                    StoreChoice::Encoded(i) => w.choice(1).choice(*i),
                    StoreChoice::Plus => w.choice(2),
                    StoreChoice::Other(bytes) => w.choice(3).bytes(bytes),
                    StoreChoice::WrongCase => w.choice(4),
                };
                w.byte(decor.0);
            }
            RouteChoice::Healthz { outbound, decor } => {
                w.choice(2 + usize::from(*outbound)).byte(decor.0);
            }
            RouteChoice::Metadata { decor } => {
                w.choice(4).byte(decor.0);
            }
            RouteChoice::Unknown(i) => {
                w.choice(5).choice(*i);
            }
            RouteChoice::BadEscape => {
                w.choice(6);
            }
        }
        match &self.token {
            TokenChoice::Absent => w.choice(0),
            TokenChoice::Right => w.choice(1),
            TokenChoice::Wrong(bytes) => w.choice(2).bytes(bytes),
            TokenChoice::RightThenWrong(bytes) => w.choice(3).bytes(bytes),
            TokenChoice::WrongThenRight(bytes) => w.choice(4).bytes(bytes),
        };
        match &self.body {
            BodyChoice::Empty => {
                w.choice(0);
            }
            BodyChoice::Members(members) => {
                w.choice(1).choice(members.len());
                for (key, value) in members {
                    w.choice(*key);
                    value.write(w);
                }
            }
            BodyChoice::Raw(bytes) => {
                w.choice(3).bytes(bytes);
            }
        }
        match self.framing {
            Framing::ContentLength => w.choice(0),
            Framing::Chunked(size) => w.choice(1).choice(size - 1),
            Framing::Http10 { keep_alive } => w.choice(2).flag(keep_alive),
            Framing::Close => w.choice(3),
            Framing::Oversize => w.choice(4),
        };
    }
}

impl ValueChoice {
    fn read(r: &mut Reader<'_>) -> Self {
        match r.below(8) {
            0 => ValueChoice::Null,
            1 => ValueChoice::Id(r.below(IDS.len())),
            2 => ValueChoice::Text(r.bytes(16).to_vec()),
            3 => ValueChoice::Number(r.below(NUMBERS.len())),
            4 => ValueChoice::NumberString(r.below(NUMBER_STRINGS.len())),
            5 => ValueChoice::True,
            6 => ValueChoice::Object,
            _ => ValueChoice::Array,
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            ValueChoice::Null => w.choice(0),
            ValueChoice::Id(i) => w.choice(1).choice(*i),
            ValueChoice::Text(bytes) => w.choice(2).bytes(bytes),
            ValueChoice::Number(i) => w.choice(3).choice(*i),
            ValueChoice::NumberString(i) => w.choice(4).choice(*i),
            ValueChoice::True => w.choice(5),
            ValueChoice::Object => w.choice(6),
            ValueChoice::Array => w.choice(7),
        };
    }

    fn json(&self) -> String {
        let quoted = |text: &str| serde_json::to_string(text).expect("a string serializes");
        match self {
            ValueChoice::Null => "null".into(),
            ValueChoice::Id(i) => quoted(IDS[*i]),
            ValueChoice::Text(bytes) => {
                quoted(&bytes.iter().map(|&b| char::from(b)).collect::<String>())
            }
            ValueChoice::Number(i) => NUMBERS[*i].into(),
            ValueChoice::NumberString(i) => quoted(NUMBER_STRINGS[*i]),
            ValueChoice::True => "true".into(),
            ValueChoice::Object => r#"{"resourceId":1}"#.into(),
            ValueChoice::Array => r#"[1,"x",null]"#.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing a request out.

/// What was put on the wire for a structured request.
struct Wire {
    bytes: Vec<u8>,
    /// The path as the API sees it (after the framer drops an absolute form's authority).
    target: Vec<u8>,
    body: Vec<u8>,
    version: Version,
    keep_alive: bool,
    /// The decoded store name of a lock route, if the path has one.
    store: Option<Vec<u8>>,
}

/// The segment after the store that names one of dlockd's own routes.
fn own_route(op: Operation) -> Option<&'static str> {
    match op {
        Operation::TryLock | Operation::Unlock => None,
        Operation::Renew => Some("renew"),
        Operation::Acquire => Some("acquire"),
        Operation::Holder => Some("holder"),
    }
}

/// Percent-encodes all but letters, digits, `-`, `_` and `~`.
fn encode(bytes: &[u8], all: bool) -> String {
    let mut out = String::new();
    for &b in bytes {
        if !all && (b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn path_of(segments: &[String], decor: Decor) -> String {
    let separator = if decor.has(Decor::DOUBLE_SLASHES) {
        "//"
    } else {
        "/"
    };
    let mut segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    if decor.has(Decor::DOT_SEGMENT) {
        segments.insert(1.min(segments.len()), ".");
    }
    let mut path = String::from(if decor.has(Decor::LEADING_SLASHES) {
        "//"
    } else {
        "/"
    });
    path.push_str(&segments.join(separator));
    if decor.has(Decor::TRAILING_SLASH) {
        path.push('/');
    }
    path
}

impl Req {
    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            BodyChoice::Empty => Vec::new(),
            BodyChoice::Raw(bytes) => bytes.clone(),
            BodyChoice::Members(members) => {
                let members: Vec<String> = members
                    .iter()
                    .map(|(key, value)| format!("\"{}\":{}", KEYS[*key], value.json()))
                    .collect();
                format!("{{{}}}", members.join(",")).into_bytes()
            }
        }
    }

    fn wire(&self) -> Wire {
        let (path, store, decor) = match &self.route {
            RouteChoice::Lock { op, store, decor } => {
                let (segment, name) = match store {
                    StoreChoice::Configured(i) => (
                        encode(STORES[*i].as_bytes(), false),
                        STORES[*i].as_bytes().to_vec(),
                    ),
                    StoreChoice::Encoded(i) => (
                        encode(STORES[*i].as_bytes(), true),
                        STORES[*i].as_bytes().to_vec(),
                    ),
                    StoreChoice::Plus => ("my+store".to_owned(), b"my store".to_vec()),
                    StoreChoice::Other(bytes) => (encode(bytes, false), bytes.clone()),
                    StoreChoice::WrongCase => ("LockStore".to_owned(), b"LockStore".to_vec()),
                };
                let verb = if *op == Operation::Unlock {
                    "unlock"
                } else {
                    "lock"
                };
                let mut segments = vec!["v1.0-alpha1".to_owned(), verb.to_owned(), segment];
                if let Some(own) = own_route(*op) {
                    segments.push(own.to_owned());
                }
                (path_of(&segments, *decor), Some(name), *decor)
            }
            RouteChoice::Healthz { outbound, decor } => {
                let mut segments = vec!["v1.0".to_owned(), "healthz".to_owned()];
                if *outbound {
                    segments.push("outbound".to_owned());
                }
                (path_of(&segments, *decor), None, *decor)
            }
            RouteChoice::Metadata { decor } => {
                let segments = ["v1.0".to_owned(), "metadata".to_owned()];
                (path_of(&segments, *decor), None, *decor)
            }
            RouteChoice::Unknown(i) => (UNKNOWN_PATHS[*i].to_owned(), None, Decor::default()),
            RouteChoice::BadEscape => ("/v1.0-alpha1/lock/%zz".to_owned(), None, Decor::default()),
        };
        let mut target = path;
        if decor.has(Decor::QUERY) {
            target.push_str("?x=1&y");
        }
        let request_target = if decor.has(Decor::ABSOLUTE) {
            format!("http://h{target}")
        } else {
            target.clone()
        };
        let (version, connection, keep_alive) = match self.framing {
            Framing::Http10 { keep_alive: true } => ("1.0", Some("keep-alive"), true),
            Framing::Http10 { keep_alive: false } => ("1.0", None, false),
            Framing::Close => ("1.1", Some("close"), false),
            _ => ("1.1", None, true),
        };
        let mut head = format!(
            "{} {request_target} HTTP/{version}\r\nHost: dlockd\r\nUser-Agent: fuzz\r\n",
            self.method.name()
        );
        if let Some(connection) = connection {
            head.push_str(&format!("Connection: {connection}\r\n"));
        }
        let text =
            |bytes: &[u8]| -> String { bytes.iter().map(|&b| char::from(b'a' + b % 26)).collect() };
        let tokens: Vec<String> = match &self.token {
            TokenChoice::Absent => vec![],
            TokenChoice::Right => vec![String::from_utf8_lossy(TOKEN).into_owned()],
            TokenChoice::Wrong(bytes) => vec![text(bytes)],
            TokenChoice::RightThenWrong(bytes) => {
                vec![String::from_utf8_lossy(TOKEN).into_owned(), text(bytes)]
            }
            TokenChoice::WrongThenRight(bytes) => {
                vec![text(bytes), String::from_utf8_lossy(TOKEN).into_owned()]
            }
        };
        for token in &tokens {
            head.push_str(&format!("dapr-api-token: {token}\r\n"));
        }
        let body = self.body_bytes();
        let mut bytes;
        match self.framing {
            Framing::Chunked(size) => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                bytes = head.into_bytes();
                for piece in body.chunks(size) {
                    bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    bytes.extend_from_slice(piece);
                    bytes.extend_from_slice(b"\r\n");
                }
                bytes.extend_from_slice(b"0\r\n\r\n");
            }
            Framing::Oversize => {
                head.push_str(&format!(
                    "Content-Length: {}\r\n\r\n",
                    LIMITS.max_body_bytes + 1
                ));
                bytes = head.into_bytes();
            }
            _ => {
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                bytes = head.into_bytes();
                bytes.extend_from_slice(&body);
            }
        }
        Wire {
            bytes,
            target: target.into_bytes(),
            body,
            version: if version == "1.0" {
                Version::Http10
            } else {
                Version::Http11
            },
            keep_alive,
            store,
        }
    }

    /// The first `dapr-api-token` the request carries, as the server reads it.
    fn first_token(&self) -> Option<Vec<u8>> {
        let text = |bytes: &[u8]| bytes.iter().map(|&b| b'a' + b % 26).collect::<Vec<u8>>();
        match &self.token {
            TokenChoice::Absent => None,
            TokenChoice::Right | TokenChoice::RightThenWrong(_) => Some(TOKEN.to_vec()),
            TokenChoice::Wrong(bytes) | TokenChoice::WrongThenRight(bytes) => Some(text(bytes)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The oracle: what the contract answers.

/// What the server must do with a structured request.
#[derive(Debug)]
pub enum Expected {
    /// Answer at once, without touching the lease table.
    Answer(ExpectedAnswer),
    /// A lock operation on the table, whose answer the model gives.
    Lock {
        kind: OpKind,
        store: StoreId,
        resource: Vec<u8>,
        owner: Vec<u8>,
    },
}

#[derive(Debug)]
pub struct ExpectedAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: ExpectedBody,
    /// Whether the answer itself closes the connection.
    pub close: bool,
}

#[derive(Debug)]
pub enum ExpectedBody {
    Exact(Vec<u8>),
    /// `{"errorCode":code,"message":…}`; the message is exact, or only its start is fixed.
    Error {
        code: &'static str,
        message: String,
        exact: bool,
    },
    Metadata,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

fn answer(status: u16, content_type: &'static str, body: &[u8], close: bool) -> Expected {
    Expected::Answer(ExpectedAnswer {
        status,
        content_type,
        body: ExpectedBody::Exact(body.to_vec()),
        close,
    })
}

fn error(status: u16, code: &'static str, message: String, exact: bool) -> Expected {
    Expected::Answer(ExpectedAnswer {
        status,
        content_type: JSON,
        body: ExpectedBody::Error {
            code,
            message,
            exact,
        },
        close: false,
    })
}

/// Bytes as Go's encoder shows them in a JSON string: each byte of invalid UTF-8 becomes
/// one U+FFFD.
pub fn go_text(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|_| '\u{fffd}'));
    }
    out
}

/// Whether daprd lets a request through without the token: a GET whose decoded path, outer
/// slashes trimmed, is exactly one of the two health checks (the path is not cleaned).
fn token_exempt(method: MethodChoice, path: &str) -> bool {
    let trimmed = path.trim_matches('/');
    method == MethodChoice::Get && (trimmed == "v1.0/healthz" || trimmed == "v1.0/healthz/outbound")
}

/// The contract's answer to a structured request, in daprd's order.
fn expect(config: usize, req: &Req, wire: &Wire) -> Expected {
    // The framer refuses a body over the limit from its declared length or chunk sizes,
    // before anything routes.
    if req.framing == Framing::Oversize || wire.body.len() > LIMITS.max_body_bytes {
        return answer(
            400,
            JSON,
            br#"{"errorCode":"ERR_BODY_READ","message":"failed to read request body: stream too large"}"#,
            true,
        );
    }
    if req.route == RouteChoice::BadEscape {
        return answer(400, TEXT, b"400 Bad Request", true);
    }
    let path = String::from_utf8_lossy(&wire.target);
    let path = path.split('?').next().unwrap_or_default();
    if config == 1 && req.first_token().as_deref() != Some(TOKEN) && !token_exempt(req.method, path)
    {
        return answer(401, TEXT, b"invalid api token\n", false);
    }
    let no_route = || {
        answer(
            404,
            JSON,
            br#"{"errorCode":"ERR_DIRECT_INVOKE","message":"failed getting app id either from the URL path or the header dapr-app-id"}"#,
            false,
        )
    };
    let op = match (&req.route, req.method) {
        (RouteChoice::Healthz { .. }, MethodChoice::Get) => return answer(204, "", b"", false),
        (RouteChoice::Metadata { .. }, MethodChoice::Get) => {
            return Expected::Answer(ExpectedAnswer {
                status: 200,
                content_type: JSON,
                body: ExpectedBody::Metadata,
                close: false,
            })
        }
        (RouteChoice::Lock { op, .. }, MethodChoice::Post) => *op,
        _ => return no_route(),
    };
    let mut store = wire.store.clone().unwrap_or_default();
    let op = match (store.is_empty(), own_route(op)) {
        (false, _) => op,
        (true, None) => return no_route(),
        // `/v1.0-alpha1/lock//renew`: Go's path clean-up drops the empty segment, and what is
        // left is daprd's try-lock route, on a store named after the verb.
        (true, Some(verb)) => {
            store = verb.as_bytes().to_vec();
            Operation::TryLock
        }
    };
    let fields = match super::body::reference_for(op, &wire.body) {
        Ok(fields) => fields,
        Err(_) => {
            let prefix = "failed deserializing HTTP body: ".to_owned();
            return error(400, "ERR_MALFORMED_REQUEST", prefix, false);
        }
    };
    let in_store = |what: &str| format!("{what} in lock store {}", go_text(&store));
    let malformed = |message: String| error(400, "ERR_MALFORMED_REQUEST", message, true);
    // Step 1, the lengths: the lease's (the routes that take one), then an acquire's wait.
    let kind = match op {
        Operation::Unlock => OpKind::Unlock,
        Operation::Holder => OpKind::Holder,
        _ if fields.expiry_s <= 0 => {
            return malformed(in_store("ExpiryInSeconds is not positive"));
        }
        Operation::TryLock => OpKind::TryLock {
            expiry_s: fields.expiry_s as u32,
        },
        Operation::Renew => OpKind::Renew {
            expiry_s: fields.expiry_s as u32,
        },
        Operation::Acquire => {
            if !(0..=MAX_WAIT_MS).contains(&fields.wait_ms) {
                return malformed(in_store(&format!(
                    "WaitTimeoutMs is outside 0 to {MAX_WAIT_MS} (--max-wait)"
                )));
            }
            OpKind::Acquire {
                expiry_s: fields.expiry_s as u32,
                wait_ms: fields.wait_ms as u32,
            }
        }
    };
    let stores: &[&str] = if config == 2 { &[] } else { &STORES };
    if stores.is_empty() {
        let message = "lock store is not configured".to_owned();
        return error(500, "ERR_LOCK_STORE_NOT_CONFIGURED", message, true);
    }
    if fields.resource.is_empty() {
        return malformed(in_store("ResourceId is empty"));
    }
    // A holder query may leave the owner out: it is only compared.
    if fields.owner.is_empty() && op != Operation::Holder {
        return malformed(in_store("LockOwner is empty"));
    }
    // Our own cap, after daprd's step 4; only its code and status are the contract's.
    if fields.resource.len() > MAX_ID_BYTES {
        return error(
            400,
            "ERR_MALFORMED_REQUEST",
            "ResourceId is longer than ".into(),
            false,
        );
    }
    if fields.owner.len() > MAX_ID_BYTES {
        return error(
            400,
            "ERR_MALFORMED_REQUEST",
            "LockOwner is longer than ".into(),
            false,
        );
    }
    let Some(at) = stores.iter().position(|name| name.as_bytes() == store) else {
        let message = format!("lock store {} not found", go_text(&store));
        return error(400, "ERR_LOCK_STORE_NOT_FOUND", message, true);
    };
    if fields.resource.windows(2).any(|pair| pair == b"||") {
        let (code, prefix) = match op {
            Operation::TryLock | Operation::Acquire => {
                ("ERR_TRY_LOCK", "failed to try acquiring lock: ")
            }
            Operation::Unlock => ("ERR_UNLOCK", "failed to release lock: "),
            Operation::Renew => ("ERR_RENEW_LOCK", "failed to renew lock: "),
            Operation::Holder => ("ERR_LOCK_HOLDER", "failed to get lock holder: "),
        };
        let message = format!(
            "{prefix}input key/keyPrefix '{}' can't contain '||'",
            go_text(&fields.resource)
        );
        return error(500, code, message, true);
    }
    Expected::Lock {
        kind,
        store: StoreId(at as u16),
        resource: fields.resource,
        owner: fields.owner,
    }
}

/// The contract's answer to a lease decision.
fn expect_lease_answer(answer_of_model: Answer) -> ExpectedAnswer {
    let exact = |body: &[u8]| ExpectedAnswer {
        status: 200,
        content_type: JSON,
        body: ExpectedBody::Exact(body.to_vec()),
        close: false,
    };
    match answer_of_model {
        Answer::TryLock(Ok(true)) | Answer::Granted { .. } | Answer::StoreGranted { .. } => {
            exact(br#"{"success":true}"#)
        }
        Answer::TryLock(Ok(false)) => exact(br#"{"success":false}"#),
        Answer::TryLock(Err(_)) => ExpectedAnswer {
            status: 500,
            content_type: JSON,
            body: ExpectedBody::Error {
                code: "ERR_TRY_LOCK",
                message: "failed to try acquiring lock: ".into(),
                exact: false,
            },
            close: false,
        },
        Answer::Unlock(status) | Answer::Renew(status) => {
            exact(format!(r#"{{"status":{}}}"#, status as u8).as_bytes())
        }
        Answer::Renewed { .. } | Answer::StoreRenewed { .. } => exact(br#"{"status":0}"#),
        Answer::Holder(h) if !h.locked => exact(br#"{"locked":false}"#),
        Answer::Holder(h) => exact(
            format!(
                r#"{{"locked":true,"ownedByCaller":{},"remainingMs":{},"waiters":{}}}"#,
                h.owned_by_caller, h.remaining_ms, h.waiters
            )
            .as_bytes(),
        ),
    }
}

/// A holder query's body: `{"locked":false}`, or the four members in their order, with the
/// owner never in it.
fn check_holding(body: &[u8]) {
    if body == br#"{"locked":false}"# {
        return;
    }
    let value: Value = serde_json::from_slice(body).expect("a holder answer is JSON");
    let members = value.as_object().expect("a holder answer is an object");
    let keys: Vec<&str> = members.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["locked", "ownedByCaller", "remainingMs", "waiters"],
        "{value}"
    );
    assert_eq!(value["locked"], true, "{value}");
    assert!(value["ownedByCaller"].is_boolean(), "{value}");
    assert!(
        value["remainingMs"].is_u64() && value["waiters"].is_u64(),
        "{value}"
    );
}

// ---------------------------------------------------------------------------------------
// Running a session.

/// One simulated worker: an API for the configuration, its shard (the lease table and the
/// decision step), the model, the clock.
pub struct Server<'t> {
    config: usize,
    shard: Shard,
    model: Model,
    now_ms: u64,
    /// Changes the answer bytes before they are checked: a planted fault for the tests.
    tamper: &'t dyn Fn(&mut Vec<u8>),
}

/// The API of each configuration, made once for the whole run, as a worker makes one:
/// `Api::new` leaks its metadata answer on purpose (it lives as long as the process). Kept
/// in a static rather than a thread-local, so no destructor ever drops an `Api` and leaves
/// that answer unreachable, which LeakSanitizer would report when the fuzzer exits.
fn with_api<R>(config: usize, f: impl FnOnce(&mut Api) -> R) -> R {
    static APIS: OnceLock<Mutex<Vec<Api>>> = OnceLock::new();
    let apis = APIS.get_or_init(|| {
        let apis = (0..CONFIGS).map(|config| {
            Api::new(ApiConfig {
                stores: if config == 2 {
                    Vec::new()
                } else {
                    STORES.map(str::to_owned).to_vec()
                },
                app_id: APP_ID.to_owned(),
                api_token: (config == 1).then(|| TOKEN.to_vec()),
                max_id_bytes: MAX_ID_BYTES,
                max_expiry_s: None,
                max_wait_ms: MAX_WAIT_MS as u32,
                store_types: Vec::new(),
            })
        });
        Mutex::new(apis.collect())
    });
    // A check that panicked while holding the lock left nothing half-done that matters.
    let mut apis = apis.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut apis[config])
}

pub fn check(data: &[u8]) {
    dlockd::fuzzing::request_to_response(data);
    let session = Session::read(&mut Reader::new(data));
    run(&session, &|_| {});
}

/// Runs a session; `tamper` may change each answer's bytes before they are checked.
pub fn run(session: &Session, tamper: &dyn Fn(&mut Vec<u8>)) {
    let mut server = Server {
        config: session.config,
        shard: Shard::new(
            ShardId(0),
            1,
            LeaseTable::new(MAX_LEASES),
            vec![false; STORES.len()],
            None,
        ),
        model: Model::default(),
        now_ms: START_MS,
        tamper,
    };
    for (n, step) in session.steps.iter().enumerate() {
        match step {
            Step::Send(req) => server.send(n, req),
            Step::Wait(ms) => server.now_ms = server.now_ms.saturating_add(*ms),
            Step::Advance => {
                server.shard.table_mut().advance(server.now_ms);
                let live = server.model.live_count(server.now_ms);
                assert!(
                    server.shard.table().scheduled() <= live,
                    "step {n}: after advance"
                );
            }
            Step::Raw(bytes) => server.raw(n, bytes),
            Step::RawApi {
                method,
                target,
                token,
                body,
            } => {
                let (response, _) =
                    server.handle(method.method(), target, token.as_deref(), body, None);
                let mut out = Vec::new();
                write_response(
                    &mut out,
                    response.status,
                    response.content_type,
                    response.body(),
                    Connection::of(Version::Http11, response.close),
                );
                (server.tamper)(&mut out);
                let answers = parse_answers(&out);
                assert_eq!(answers.len(), 1, "step {n}: one answer");
                check_shape(&answers[0], method.method());
            }
        }
    }
}

/// The shard's decision on `op` at `now_ms`, carried out as a connection carries it out: an
/// answer at once, or for an acquire that waits, parked with the shard and woken at each tick
/// something comes due, until its answer comes out. Returns the answer and its tick.
fn decide(shard: &mut Shard, now_ms: u64, op: &LockOp<'_>) -> (Answer, u64) {
    match shard.decide(now_ms, op) {
        Decision::Answer(answer) => (answer, now_ms),
        // One shard, no remote store: only an acquire's wait is decided later.
        Decision::Wait(ShardId(0)) => {
            let OpKind::Acquire { wait_ms, .. } = op.kind else {
                panic!("only an acquire waits: {op:?}");
            };
            let deadline_ms = now_ms.saturating_add(u64::from(wait_ms));
            let reply = ReplyTo {
                shard: ShardId(0),
                slot: SlotId(0),
            };
            let key = Key::new(op.resource, op.owner);
            shard.park(now_ms, reply, op.kind, op.store, key);
            let mut at_ms = now_ms;
            loop {
                let over = shard.take_over();
                if let [over] = over.as_slice() {
                    assert_eq!(over.reply, reply, "the waiter's own answer");
                    assert_eq!(
                        (shard.waiters(), shard.next_due()),
                        (0, None),
                        "nothing waits once the only waiter is answered"
                    );
                    return (over.answer, at_ms);
                }
                assert!(over.is_empty(), "one answer per waiter: {over:?}");
                let due_ms = shard
                    .next_due()
                    .expect("a parked waiter has its deadline due");
                assert!(
                    (at_ms..=deadline_ms).contains(&due_ms),
                    "{op:?} parked at {now_ms}: due at {due_ms}, after {at_ms}"
                );
                at_ms = due_ms;
                shard.wake(at_ms);
            }
        }
        decision => panic!("one shard decided {op:?} elsewhere: {decision:?}"),
    }
}

/// The model's answer to `op` at `now_ms`, and the tick it comes at. The session's client
/// waits for each answer, so nothing happens while an acquire waits: the lock it waits for is
/// free on the tick after its lease's last live one, and is then granted at once (with a
/// lease from that tick) if the deadline has not passed; else the wait ends at its deadline,
/// refused. (Nobody else waits: a lock freed always goes to this waiter.)
fn model_answer(model: &mut Model, now_ms: u64, op: &LockOp<'_>) -> (Answer, u64) {
    let (store, resource, owner) = (op.store.0, op.resource, op.owner);
    let try_lock = |model: &mut Model, expiry_s: u32, at_ms: u64| {
        let ttl_ms = u64::from(expiry_s) * 1000;
        let granted = model.try_lock(store, resource, owner, ttl_ms, at_ms, MAX_LEASES);
        (Answer::TryLock(granted), at_ms)
    };
    match op.kind {
        OpKind::TryLock { expiry_s } => try_lock(model, expiry_s, now_ms),
        OpKind::Acquire { expiry_s, wait_ms } => {
            let held = model
                .holder(store, resource, now_ms)
                .map(|(holder, remaining_ms)| (holder == owner, remaining_ms));
            match held {
                // Not re-entrant: the holder asking again is refused at once, as is an
                // acquire that does not wait, like a try-lock.
                None | Some((true, _)) => try_lock(model, expiry_s, now_ms),
                Some(_) if wait_ms == 0 => try_lock(model, expiry_s, now_ms),
                Some((false, remaining_ms)) => {
                    let free_ms = now_ms + remaining_ms + 1;
                    let deadline_ms = now_ms + u64::from(wait_ms);
                    if free_ms <= deadline_ms {
                        try_lock(model, expiry_s, free_ms)
                    } else {
                        (Answer::TryLock(Ok(false)), deadline_ms)
                    }
                }
            }
        }
        OpKind::Unlock => (
            Answer::Unlock(model.unlock(store, resource, owner, now_ms)),
            now_ms,
        ),
        OpKind::Renew { expiry_s } => {
            let ttl_ms = u64::from(expiry_s) * 1000;
            let status = match model.renew(store, resource, owner, ttl_ms, now_ms) {
                Renewal::Renewed { .. } => UnlockStatus::Success,
                Renewal::Refused(status) => status,
            };
            (Answer::Renew(status), now_ms)
        }
        OpKind::Holder => {
            let holding = match model.holder(store, resource, now_ms) {
                None => Holding::default(),
                Some((holder, remaining_ms)) => Holding {
                    locked: true,
                    owned_by_caller: !owner.is_empty() && holder == owner,
                    remaining_ms,
                    waiters: 0,
                },
            };
            (Answer::Holder(holding), now_ms)
        }
    }
}

impl Server<'_> {
    /// `Api::handle`, then for a lock operation the decision step (checked against the model)
    /// and `answer_response`; with the table's answer, if it was asked. `expected` is the
    /// oracle's decision, to compare with the API's operation. An acquire that waits moves the
    /// clock to the tick of its answer.
    fn handle(
        &mut self,
        method: Method,
        target: &[u8],
        token: Option<&[u8]>,
        body: &[u8],
        expected: Option<&Expected>,
    ) -> (Response, Option<Answer>) {
        let config = self.config;
        let (shard, model, now_ms) = (&mut self.shard, &mut self.model, &mut self.now_ms);
        with_api(config, |api| {
            let store_count = api.stores().len();
            match api.handle(method, target, token, body) {
                Outcome::Respond(response) => {
                    check_response(&response);
                    (response, None)
                }
                Outcome::Lock(op) => {
                    check_lock_op(&op, store_count, MAX_ID_BYTES);
                    if let Some(expected) = expected {
                        let Expected::Lock {
                            kind,
                            store,
                            resource,
                            owner,
                        } = expected
                        else {
                            panic!(
                                "the API asks for {op:?} where the contract answers {expected:?}"
                            );
                        };
                        assert_eq!(
                            (op.kind, op.store, op.resource, op.owner),
                            (*kind, *store, &resource[..], &owner[..]),
                            "the lock operation"
                        );
                    }
                    let at_ms = *now_ms;
                    let got = decide(shard, at_ms, &op);
                    let want = model_answer(model, at_ms, &op);
                    assert_eq!(got, want, "(answer, tick) of {op:?} at {at_ms}");
                    *now_ms = got.1;
                    (answer_response(got.0), Some(got.0))
                }
            }
        })
    }

    fn send(&mut self, n: usize, req: &Req) {
        let wire = req.wire();
        let expected = expect(self.config, req, &wire);
        let mut framer = Framer::new(LIMITS);
        let mut out = Vec::new();
        let mut lease_answer = None;
        let (version, keep_alive) = match framer.frame(&wire.bytes) {
            Err(e) => {
                out.extend_from_slice(e.response());
                (Version::Http11, false)
            }
            Ok(Frame::Partial { .. }) => panic!("step {n}: a whole request was not framed"),
            Ok(Frame::Complete(framed)) => {
                assert_eq!(
                    framed.consumed,
                    wire.bytes.len(),
                    "step {n}: request length"
                );
                assert_eq!(
                    &wire.bytes[framed.target.clone()],
                    &wire.target[..],
                    "step {n}"
                );
                assert_eq!(
                    (framed.version, framed.keep_alive),
                    (wire.version, wire.keep_alive)
                );
                let body = match &framed.body {
                    Body::Buf(range) => &wire.bytes[range.clone()],
                    Body::Chunked => framer.chunked_body(),
                };
                assert_eq!(body, &wire.body[..], "step {n}: the framed body");
                let token = framed.api_token.clone().map(|range| &wire.bytes[range]);
                let (response, answer) = self.handle(
                    req.method.method(),
                    &wire.target,
                    token,
                    body,
                    Some(&expected),
                );
                lease_answer = answer;
                let close = !framed.keep_alive || response.close;
                write_response(
                    &mut out,
                    response.status,
                    response.content_type,
                    response.body(),
                    Connection::of(framed.version, close),
                );
                (framed.version, framed.keep_alive)
            }
        };
        (self.tamper)(&mut out);
        let answers = parse_answers(&out);
        assert_eq!(answers.len(), 1, "step {n}: one answer to {req:?}");
        let got = &answers[0];
        check_shape(got, req.method.method());
        let expected = match (expected, lease_answer) {
            (Expected::Answer(answer), _) => answer,
            // The table's answer was checked against the model's in `handle`.
            (Expected::Lock { .. }, Some(answer)) => expect_lease_answer(answer),
            (expected @ Expected::Lock { .. }, None) => {
                panic!("step {n}: answered {got:?} where the contract asks for {expected:?}")
            }
        };
        let stores: &[&str] = if self.config == 2 { &[] } else { &STORES };
        check_expected(got, &expected, (version, keep_alive), req, stores);
    }

    /// Raw bytes on one connection: framed and answered as `server/conn.rs` does, until the
    /// bytes run out or the connection closes; every answer has a contract shape.
    fn raw(&mut self, n: usize, bytes: &[u8]) {
        let mut framer = Framer::new(LIMITS);
        let mut out = Vec::new();
        let mut methods = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let view = &bytes[offset..];
            match framer.frame(view) {
                Err(e) => {
                    out.extend_from_slice(e.response());
                    methods.push(Method::Other);
                    break;
                }
                Ok(Frame::Partial { .. }) => break,
                Ok(Frame::Complete(framed)) => {
                    let body = match &framed.body {
                        Body::Buf(range) => view[range.clone()].to_vec(),
                        Body::Chunked => framer.chunked_body().to_vec(),
                    };
                    let target = &view[framed.target.clone()];
                    let token = framed.api_token.clone().map(|range| &view[range]);
                    let (response, _) = self.handle(framed.method, target, token, &body, None);
                    let close = !framed.keep_alive || response.close;
                    write_response(
                        &mut out,
                        response.status,
                        response.content_type,
                        response.body(),
                        Connection::of(framed.version, close),
                    );
                    methods.push(framed.method);
                    offset += framed.consumed;
                    if close {
                        break;
                    }
                }
            }
        }
        (self.tamper)(&mut out);
        let answers = parse_answers(&out);
        assert_eq!(
            answers.len(),
            methods.len(),
            "step {n}: one answer per request"
        );
        for (answer, method) in answers.iter().zip(methods) {
            check_shape(answer, method);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading and checking answers.

/// One HTTP answer as a client reads it.
#[derive(Debug)]
pub struct Parsed {
    pub status: u16,
    /// Lower-case names, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Parsed {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Splits written answers with httparse and their `Content-Length`.
pub fn parse_answers(mut out: &[u8]) -> Vec<Parsed> {
    let mut answers = Vec::new();
    while !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(out) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!(
                "not an HTTP answer ({other:?}): {:?}",
                String::from_utf8_lossy(out)
            ),
        };
        assert_eq!(response.version, Some(1), "answers say HTTP/1.1");
        let status = response.code.expect("a complete answer has a status");
        let reason = response.reason.unwrap_or_default();
        assert_eq!(reason, dlockd::http::reason(status), "reason phrase");
        let headers: Vec<(String, Vec<u8>)> = response
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map(|(_, v)| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .expect("Content-Length is a number")
            });
        let length = match (status, length) {
            (204, None) => 0,
            (204, Some(_)) => panic!("a 204 has no Content-Length"),
            (_, Some(length)) => length,
            (_, None) => panic!("every answer but 204 has a Content-Length"),
        };
        let body = out
            .get(head_len..head_len + length)
            .expect("the body is all there");
        answers.push(Parsed {
            status,
            headers,
            body: body.to_vec(),
        });
        out = &out[head_len + length..];
    }
    answers
}

/// Checks an error body: the two keys in the contract's order, Go's escaping, valid JSON.
/// Returns the code and the message.
fn error_body(body: &[u8]) -> (String, String) {
    assert!(
        body.starts_with(br#"{"errorCode":""#) && body.ends_with(b"\"}"),
        "error body {:?}",
        String::from_utf8_lossy(body)
    );
    assert!(
        !body.iter().any(|b| matches!(b, b'<' | b'>' | b'&')),
        "<, > and & are escaped as Go does: {:?}",
        String::from_utf8_lossy(body)
    );
    let value: Value = serde_json::from_slice(body).expect("an error body is JSON");
    let object = value.as_object().expect("an error body is an object");
    assert_eq!(object.len(), 2, "errorCode and message only");
    let code = object["errorCode"].as_str().expect("errorCode is a string");
    let message = object["message"].as_str().expect("message is a string");
    let message_at = body
        .windows(br#","message":""#.len())
        .position(|w| w == br#","message":""#)
        .expect("message follows errorCode");
    assert!(message_at > 0);
    (code.to_owned(), message.to_owned())
}

/// Any answer the server gives has one of the contract's shapes.
pub fn check_shape(answer: &Parsed, method: Method) {
    let content_type = answer.header("content-type");
    let body = answer.body.as_slice();
    let json = content_type == Some(JSON.as_bytes());
    let text = content_type == Some(TEXT.as_bytes());
    let closes = answer.header("connection") == Some(b"close");
    match answer.status {
        200 => {
            assert!(json, "{answer:?}");
            let plain = [
                &br#"{"success":true}"#[..],
                br#"{"success":false}"#,
                br#"{"status":0}"#,
                br#"{"status":1}"#,
                br#"{"status":2}"#,
                br#"{"status":3}"#,
            ];
            if body.starts_with(br#"{"locked":"#) {
                assert_eq!(method, Method::Post, "holder answers come from POSTs");
                check_holding(body);
            } else if !plain.contains(&body) {
                assert_eq!(method, Method::Get, "only metadata answers other JSON");
                check_metadata(body, None);
            } else {
                assert_eq!(method, Method::Post, "lock answers come from POSTs");
            }
        }
        204 => {
            assert!(content_type.is_none() && body.is_empty(), "{answer:?}");
            assert_eq!(method, Method::Get);
        }
        401 => assert!(text && body == b"invalid api token\n", "{answer:?}"),
        404 => assert!(
            json && body
                == br#"{"errorCode":"ERR_DIRECT_INVOKE","message":"failed getting app id either from the URL path or the header dapr-app-id"}"#,
            "{answer:?}"
        ),
        431 | 501 | 505 => assert!(text && closes, "{answer:?}"),
        400 if text => assert!(closes, "{answer:?}"),
        400 | 500 => {
            assert!(json, "{answer:?}");
            let (code, message) = error_body(body);
            let starts = |prefixes: &[&str]| prefixes.iter().any(|p| message.starts_with(p));
            let fits = match (answer.status, code.as_str()) {
                (400, "ERR_MALFORMED_REQUEST") => starts(&[
                    "failed deserializing HTTP body: ",
                    "ExpiryInSeconds is not positive in lock store ",
                    "WaitTimeoutMs is outside 0 to ",
                    "ResourceId is empty in lock store ",
                    "LockOwner is empty in lock store ",
                    "ResourceId is longer than ",
                    "LockOwner is longer than ",
                ]),
                (400, "ERR_LOCK_STORE_NOT_FOUND") => {
                    message.starts_with("lock store ") && message.ends_with(" not found")
                }
                (400, "ERR_BODY_READ") => {
                    closes && message == "failed to read request body: stream too large"
                }
                (500, "ERR_LOCK_STORE_NOT_CONFIGURED") => message == "lock store is not configured",
                (500, "ERR_TRY_LOCK") => starts(&["failed to try acquiring lock: "]),
                (500, "ERR_UNLOCK") => starts(&["failed to release lock: "]),
                (500, "ERR_RENEW_LOCK") => starts(&["failed to renew lock: "]),
                (500, "ERR_LOCK_HOLDER") => starts(&["failed to get lock holder: "]),
                _ => false,
            };
            assert!(fits, "{} {code}: {message:?}", answer.status);
        }
        status => panic!("status {status} is not one the contract gives: {answer:?}"),
    }
}

/// The metadata answer: the app id, a version, `extended`, and each store (if known).
fn check_metadata(body: &[u8], stores: Option<&[&str]>) {
    let value: Value = serde_json::from_slice(body).expect("metadata is JSON");
    assert!(
        value.is_object() && value["runtimeVersion"].is_string() && value["extended"].is_object()
    );
    assert_eq!(value["id"], APP_ID);
    let components = value["components"].as_array().expect("components");
    for component in components {
        assert_eq!(component["type"], "lock.in-memory");
        assert_eq!(component["version"], "v1");
    }
    if let Some(stores) = stores {
        let names: Vec<&str> = components
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, stores);
    }
}

/// The answer is the one the oracle expects, with the right `Connection` header.
fn check_expected(
    got: &Parsed,
    expected: &ExpectedAnswer,
    (version, keep_alive): (Version, bool),
    req: &Req,
    stores: &[&str],
) {
    assert_eq!(got.status, expected.status, "status for {req:?}: {got:?}");
    let content_type = got.header("content-type").unwrap_or_default();
    assert_eq!(
        content_type,
        expected.content_type.as_bytes(),
        "content type"
    );
    let close = expected.close || !keep_alive;
    let connection = got.header("connection");
    let expected_connection: Option<&[u8]> = match (close, version) {
        (true, _) => Some(b"close"),
        (false, Version::Http10) => Some(b"keep-alive"),
        (false, Version::Http11) => None,
    };
    assert_eq!(connection, expected_connection, "Connection for {req:?}");
    match &expected.body {
        ExpectedBody::Exact(body) => assert_eq!(
            String::from_utf8_lossy(&got.body),
            String::from_utf8_lossy(body),
            "body for {req:?}"
        ),
        ExpectedBody::Error {
            code,
            message,
            exact,
        } => {
            let (got_code, got_message) = error_body(&got.body);
            assert_eq!(&got_code, code, "error code for {req:?}");
            if *exact {
                assert_eq!(&got_message, message, "message for {req:?}");
            } else {
                assert!(
                    got_message.starts_with(message.as_str()),
                    "message {got_message:?} for {req:?}"
                );
            }
        }
        ExpectedBody::Metadata => check_metadata(&got.body, Some(stores)),
    }
}
