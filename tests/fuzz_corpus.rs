//! The fuzz targets on stable: every committed corpus file and every regression of every
//! target, replayed through exactly the checks the fuzzers run (the fuzz crate's library,
//! included below), plus tests that those checks catch a planted fault, so a green replay
//! means something.
//!
//! Files: `fuzz/corpus/<target>/*` (seeds from the contract's examples, and a few inputs
//! the fuzzers found interesting) and `fuzz/regressions/<target>/*` (inputs that once
//! crashed a target). The seeds are built below from values; after a change to an input
//! format, rewrite them with
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpus`.

#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use std::fs;
use std::path::{Path, PathBuf};

use dlockd::api::fuzzing::{BodyDecoder, BodyKind};
use dlockd::api::Operation;
use dlockd::http::fuzzing::{transcript, FUZZ_LIMITS};
use dlockd::lease::model::Offset;
use dlockd::lease::{LeaseError, LeaseTable, Renewal, StoreId, UnlockStatus};
use fuzz::lease::{LeaseOp, LeaseRun, Table, MAX_TTL_MS};
use fuzz::request::{
    BodyChoice, Decor, Framing, MethodChoice, Req, RouteChoice, Session, Step, StoreChoice,
    TokenChoice, ValueChoice, IDS, KEYS, NUMBERS, NUMBER_STRINGS,
};
use fuzz::wire::Reader;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 5] = [
    ("http_request", fuzz::http_request),
    ("lock_body", fuzz::lock_body),
    ("unlock_body", fuzz::unlock_body),
    ("request_to_response", fuzz::request_to_response),
    ("lease_ops", fuzz::lease_ops),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of a directory, sorted; none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Every corpus file and regression of `target`, through `check`. The name of the file
/// being replayed is printed first, so a failure says which one it was.
fn replay(target: &str, check: impl Fn(&[u8])) -> usize {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "no corpus for {target}");
    let regressions = files_in(&fuzz_dir().join("regressions").join(target));
    for file in corpus.iter().chain(&regressions) {
        eprintln!("replaying {}", file.display());
        check(&fs::read(file).expect("a readable corpus file"));
    }
    corpus.len() + regressions.len()
}

fn target(name: &str) -> Check {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, check)| *check)
        .expect("a known target")
}

#[test]
fn replay_http_request() {
    // Protects every framing property the fuzzer checks, on every committed input.
    replay("http_request", target("http_request"));
}

#[test]
fn replay_lock_body() {
    // Protects agreement of the try-lock body decoder with the reference decoder.
    replay("lock_body", target("lock_body"));
}

#[test]
fn replay_unlock_body() {
    // Protects agreement of the unlock body decoder with the reference decoder.
    replay("unlock_body", target("unlock_body"));
}

#[test]
fn replay_request_to_response() {
    // Protects the contract's answers for whole requests and sessions.
    replay("request_to_response", target("request_to_response"));
}

#[test]
fn replay_lease_ops() {
    // Protects agreement of the lease table with its model.
    replay("lease_ops", target("lease_ops"));
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_binary() {
    // Protects the wiring: each target here has a one-line binary in fuzz/fuzz_targets and
    // a committed corpus; a target added on one side only fails here.
    let binaries: Vec<String> = files_in(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_owned))
        .collect();
    let mut names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    names.sort();
    assert_eq!(binaries, names);
    for name in names {
        let source = fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs")))
            .expect("a target source");
        assert!(
            source.contains(&format!("dlockd_fuzz::{name}(data)")),
            "{name}"
        );
        assert!(!files_in(&fuzz_dir().join("corpus").join(name)).is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Planted faults: each replays a corpus through its target's check with one thing broken,
// and must fail. Were a check vacuous (or the corpus too thin to reach it), these would
// pass the fault and fail the test.

#[test]
#[should_panic(expected = "differs from the reference parse")]
fn replay_catches_a_framer_that_drops_a_body_byte() {
    replay("http_request", |data| {
        let (reads, payload) = fuzz::http::split_input(data);
        let _ = reads;
        let mut t = transcript(FUZZ_LIMITS, payload, 0);
        for framed in &mut t.requests {
            framed.body.pop();
        }
        fuzz::http::check_transcript(FUZZ_LIMITS, payload, &t);
    });
}

#[test]
#[should_panic(expected = "decoded other fields than the reference")]
fn replay_catches_a_decoder_that_takes_the_wrong_expiry() {
    replay("lock_body", |data| {
        let expected = fuzz::body::reference(BodyKind::TryLock, data);
        let mut got = BodyDecoder::new().decode(BodyKind::TryLock, data);
        if let Some(fields) = &mut got {
            fields.expiry_s = fields.expiry_s.wrapping_add(1);
        }
        fuzz::body::compare("planted", data, &expected, got);
    });
}

#[test]
#[should_panic(expected = "which the reference refuses")]
fn replay_catches_a_decoder_that_allows_duplicates() {
    // A decoder that keeps the last value of a repeated field instead of refusing the body.
    replay("unlock_body", |data| {
        let expected = fuzz::body::reference(BodyKind::Unlock, data);
        let text = String::from_utf8_lossy(data);
        let got = match BodyDecoder::new().decode(BodyKind::Unlock, data) {
            None if text.matches("resourceId").count() > 1 => Some(Default::default()),
            other => other,
        };
        fuzz::body::compare("planted", data, &expected, got);
    });
}

/// A lease table whose leases live one millisecond too long.
struct OneTickLate(LeaseTable);

impl Table for OneTickLate {
    fn table(&self) -> &LeaseTable {
        &self.0
    }
    fn table_mut(&mut self) -> &mut LeaseTable {
        &mut self.0
    }
    fn try_lock(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        self.0
            .try_lock(store, resource, owner, ttl_ms.saturating_add(1), now_ms)
    }
}

/// A lease table that hands out its first fencing token for every grant.
struct TokenStandsStill {
    table: LeaseTable,
    first: Option<u64>,
}

impl Table for TokenStandsStill {
    fn table(&self) -> &LeaseTable {
        &self.table
    }
    fn table_mut(&mut self) -> &mut LeaseTable {
        &mut self.table
    }
    fn try_lock_fenced(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, LeaseError> {
        let got = self
            .table
            .try_lock_fenced(store, resource, owner, ttl_ms, now_ms)?;
        Ok(got.map(|token| *self.first.get_or_insert(token)))
    }
}

/// A lease table that ends a restored lease one millisecond before its saved end.
struct RestoredEndsEarly(LeaseTable);

impl Table for RestoredEndsEarly {
    fn table(&self) -> &LeaseTable {
        &self.0
    }
    fn table_mut(&mut self) -> &mut LeaseTable {
        &mut self.0
    }
    fn restore(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        last_live_ms: u64,
        token: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        let early = last_live_ms.saturating_sub(1);
        self.0.restore(store, resource, owner, early, token, now_ms)
    }
}

/// A lease table whose renewal brings an expired lease back.
struct RenewalRevives(LeaseTable);

impl Table for RenewalRevives {
    fn table(&self) -> &LeaseTable {
        &self.0
    }
    fn table_mut(&mut self) -> &mut LeaseTable {
        &mut self.0
    }
    fn renew(
        &mut self,
        store: StoreId,
        resource: &[u8],
        owner: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Renewal {
        match self.0.renew(store, resource, owner, ttl_ms, now_ms) {
            Renewal::Refused(UnlockStatus::LockDoesNotExist) => {
                match self.0.try_lock(store, resource, owner, ttl_ms, now_ms) {
                    Ok(true) => Renewal::Renewed {
                        last_live_ms: now_ms.saturating_add(ttl_ms),
                        token: 0,
                    },
                    _ => Renewal::Refused(UnlockStatus::LockDoesNotExist),
                }
            }
            other => other,
        }
    }
}

#[test]
#[should_panic(expected = "renew")]
fn replay_catches_a_renewal_that_revives_an_expired_lease() {
    // Renewal: an expired lease is never brought back, even if nobody took it since.
    replay("lease_ops", |data| {
        let run = LeaseRun::read(&mut Reader::new(data));
        fuzz::lease::run_against(&run, &mut RenewalRevives(LeaseTable::new(run.max_leases)));
    });
}

#[test]
#[should_panic(expected = "holder")]
fn replay_catches_a_table_that_ends_leases_late() {
    replay("lease_ops", |data| {
        let run = LeaseRun::read(&mut Reader::new(data));
        fuzz::lease::run_against(&run, &mut OneTickLate(LeaseTable::new(run.max_leases)));
    });
}

#[test]
#[should_panic(expected = "does not grow")]
fn replay_catches_a_fencing_token_that_does_not_grow() {
    // Fencing: every grant's token is larger than every token before it.
    replay("lease_ops", |data| {
        let run = LeaseRun::read(&mut Reader::new(data));
        let mut table = TokenStandsStill {
            table: LeaseTable::new(run.max_leases),
            first: None,
        };
        fuzz::lease::run_against(&run, &mut table);
    });
}

#[test]
#[should_panic(expected = "holder")]
fn replay_catches_a_restored_lease_that_ends_early() {
    // Restore: a saved lease is held through its own last live tick, never less.
    replay("lease_ops", |data| {
        let run = LeaseRun::read(&mut Reader::new(data));
        fuzz::lease::run_against(
            &run,
            &mut RestoredEndsEarly(LeaseTable::new(run.max_leases)),
        );
    });
}

#[test]
#[should_panic(expected = "body for")]
fn replay_catches_a_wrong_unlock_status() {
    // An answer of the right shape with the wrong value: only the oracle can tell.
    replay("request_to_response", |data| {
        let session = Session::read(&mut Reader::new(data));
        fuzz::request::run(&session, &|out| {
            if let Some(at) = out.windows(12).position(|w| w == br#"{"status":0}"#) {
                out[at + 10] = b'1';
            }
        });
    });
}

#[test]
#[should_panic(expected = "body for")]
fn replay_catches_a_wrong_remaining_time() {
    // A holder answer of the right shape with the wrong time left (its first digit changed):
    // only the model can tell.
    replay("request_to_response", |data| {
        let session = Session::read(&mut Reader::new(data));
        fuzz::request::run(&session, &|out| {
            let key = br#""remainingMs":"#;
            if let Some(at) = out.windows(key.len()).position(|w| w == key) {
                let digit = &mut out[at + key.len()];
                *digit = if *digit == b'9' { b'1' } else { *digit + 1 };
            }
        });
    });
}

#[test]
#[should_panic(expected = "is not one the contract gives")]
fn replay_catches_an_answer_outside_the_contract() {
    replay("request_to_response", |data| {
        let session = Session::read(&mut Reader::new(data));
        fuzz::request::run(&session, &|out| {
            // 401 becomes 418, with the reason phrase the writer would give it.
            if let Some(rest) = out.strip_prefix(b"HTTP/1.1 401 Unauthorized") {
                *out = [&b"HTTP/1.1 418 Client Error"[..], rest].concat();
            }
        });
    });
}

// ---------------------------------------------------------------------------------------
// The seed corpus, from the contract's examples.

fn http_seeds() -> Vec<(&'static str, Vec<usize>, Vec<u8>)> {
    let lock = b"POST /v1.0-alpha1/lock/lockstore HTTP/1.1\r\nHost: localhost:3500\r\nContent-Type: application/json\r\nContent-Length: 58\r\n\r\n{\"resourceId\":\"order-42\",\"lockOwner\":\"a\",\"expiryInSeconds\":30}";
    let mut pipeline = b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    pipeline.extend_from_slice(b"POST /v1.0-alpha1/lock/s HTTP/1.1\r\nHost: x\r\ndapr-api-token: secret\r\nContent-Length: 2\r\n\r\n{}");
    pipeline.extend_from_slice(b"POST /v1.0-alpha1/unlock/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    let mut many_headers = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for _ in 0..33 {
        many_headers.extend_from_slice(b"a: b\r\n");
    }
    many_headers.extend_from_slice(b"\r\n");
    let mut long_head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
    long_head.extend_from_slice(&[b'v'; 300]);
    long_head.extend_from_slice(b"\r\n\r\n");
    let seeds: Vec<(&'static str, Vec<usize>, &[u8])> = vec![
        ("lock_content_length", vec![], &lock[..]),
        ("lock_in_odd_reads", vec![1, 13, 64, 2], &lock[..]),
        ("pipelined_three", vec![5, 17, 3], &pipeline),
        (
            "chunked_extensions_and_trailers",
            vec![],
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n4;a=b\r\nWiki\r\n5 ;c\r\npedia\r\n0\r\nX-T: 1\r\n\r\n",
        ),
        (
            "http10_keep_alive",
            vec![],
            b"POST /v1.0-alpha1/unlock/s HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}GET /v1.0/metadata HTTP/1.0\r\n\r\n",
        ),
        (
            "absolute_form",
            vec![],
            b"GET http://localhost:3500/v1.0/healthz?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        (
            "expect_continue_waiting",
            vec![],
            b"POST /v1.0-alpha1/lock/s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        ),
        (
            "connection_close_then_more",
            vec![],
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "duplicate_token_headers",
            vec![],
            b"GET / HTTP/1.1\r\nHost: x\r\ndapr-api-token: one\r\nDAPR-API-TOKEN: two\r\n\r\n",
        ),
        (
            "bare_lf_line_ends",
            vec![],
            b"POST /v1.0-alpha1/lock/s HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",
        ),
        ("leading_empty_lines", vec![], b"\r\n\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "same_content_length_twice",
            vec![],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        ),
        (
            "content_lengths_differ",
            vec![],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
        ),
        (
            "content_length_and_chunked",
            vec![],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunked_on_http10",
            vec![],
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "gzip_chunked",
            vec![],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "negative_content_length",
            vec![],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "huge_content_length",
            vec![],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ),
        (
            "body_over_the_limit",
            vec![],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n",
        ),
        (
            "chunk_size_overflows",
            vec![],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n",
        ),
        (
            "chunk_data_without_crlf",
            vec![3],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        ),
        ("too_many_headers", vec![], &many_headers),
        ("head_over_the_limit", vec![100], &long_head),
        ("missing_host", vec![], b"GET / HTTP/1.1\r\n\r\n"),
        ("two_hosts", vec![], b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("obs_fold", vec![], b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"),
        ("http2_version", vec![], b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
        ("nul_in_path", vec![], b"GET /v1.0/\0healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("invalid_utf8_in_path", vec![], b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "garbage_after_a_request",
            vec![],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01\x02\x00garbage\r\n\r\n",
        ),
        ("lone_cr", vec![], b"GET / HTTP/1.1\r\nHost: x\r\n\rX\r\n\r\n"),
        ("incomplete_head", vec![2], b"POST /v1.0-alpha1/lock/s HTTP/1.1\r\nHost: x\r\nContent-Le"),
    ];
    seeds
        .into_iter()
        .map(|(name, reads, payload)| (name, reads, payload.to_vec()))
        .collect()
}

fn body_seeds() -> Vec<(&'static str, &'static [u8])> {
    vec![
        (
            "canonical",
            br#"{"resourceId":"order-42","lockOwner":"worker-a","expiryInSeconds":30}"#,
        ),
        (
            "canonical_unlock",
            br#"{"resourceId":"order-42","lockOwner":"worker-a"}"#,
        ),
        (
            "proto_names",
            br#"{"store_name":"s","resource_id":"r","lock_owner":"o","expiry_in_seconds":10}"#,
        ),
        (
            "spaced_any_order",
            b" {\n \"lockOwner\" : \"o\",\t\"expiryInSeconds\": 5, \"resourceId\":\"r\" }\r\n",
        ),
        ("empty", b""),
        ("empty_object", b"{}"),
        ("whitespace_only", b" \n"),
        (
            "nulls",
            br#"{"resourceId":null,"lockOwner":null,"storeName":null,"expiryInSeconds":null}"#,
        ),
        ("expiry_as_string", br#"{"expiryInSeconds":"10"}"#),
        ("expiry_float", br#"{"expiryInSeconds":10.0}"#),
        ("expiry_exponent", br#"{"expiryInSeconds":1e1}"#),
        ("expiry_fraction", br#"{"expiryInSeconds":10.5}"#),
        ("expiry_spaced_string", br#"{"expiryInSeconds":" 10"}"#),
        ("expiry_bool", br#"{"expiryInSeconds":true}"#),
        ("expiry_abc", br#"{"expiryInSeconds":"abc"}"#),
        ("expiry_over_int32", br#"{"expiryInSeconds":2147483648}"#),
        (
            "expiry_go_delimiters",
            br#"{"expiryInSeconds":"10 20","x":"1e,"}"#,
        ),
        (
            "expiry_lenient_exponent_in_string",
            br#"{"expiryInSeconds":"1e,"}"#,
        ),
        (
            "expiry_exponent_without_digits",
            br#"{"expiryInSeconds":1e}"#,
        ),
        (
            "expiry_twenty_digits",
            br#"{"expiryInSeconds":0.0000000000000000000001e22}"#,
        ),
        ("string_field_number", br#"{"resourceId":1}"#),
        ("duplicate_field", br#"{"resourceId":"a","resourceId":"b"}"#),
        (
            "duplicate_across_names",
            br#"{"lockOwner":null,"lock_owner":"o"}"#,
        ),
        (
            "wrong_case_unknown",
            br#"{"ResourceId":"r","resourceid":1,"x":[1,{"y":null}]}"#,
        ),
        ("not_json", b"not json"),
        ("array", b"[]"),
        ("null", b"null"),
        ("truncated", br#"{"resourceId":"r""#),
        ("trailing_garbage", br#"{"resourceId":"r"}x"#),
        (
            "huge_numbers_skipped",
            br#"{"big":123456789012345678901234567890,"huge":1e400,"expiryInSeconds":7}"#,
        ),
        (
            "escapes",
            br#"{"resource\u0049d":"a\"b\\c\u00e9\ud83d\ude00\n","lockOwner":"<&>"}"#,
        ),
        (
            "lone_surrogate_skipped",
            br#"{"x":"\ud800","resourceId":"r"}"#,
        ),
        ("invalid_utf8", b"{\"resourceId\":\"\xff\"}"),
        (
            "nested_unknown",
            br#"{"a":{"b":[[[{"c":"d"}]]]},"lockOwner":"o"}"#,
        ),
    ]
}

/// Index of a name in one of the request module's pools.
fn at(pool: &[&str], name: &str) -> usize {
    pool.iter()
        .position(|n| *n == name)
        .expect("a name in the pool")
}

fn members(fields: &[(&str, ValueChoice)]) -> BodyChoice {
    BodyChoice::Members(
        fields
            .iter()
            .map(|(key, value)| (at(&KEYS, key), value.clone()))
            .collect(),
    )
}

fn id(name: &str) -> ValueChoice {
    ValueChoice::Id(at(&IDS, name))
}

fn number(literal: &str) -> ValueChoice {
    ValueChoice::Number(at(&NUMBERS, literal))
}

fn text(value: &str) -> ValueChoice {
    ValueChoice::Text(value.as_bytes().to_vec())
}

fn req(method: MethodChoice, route: RouteChoice, body: BodyChoice) -> Req {
    Req {
        method,
        route,
        token: TokenChoice::Absent,
        body,
        framing: Framing::ContentLength,
    }
}

fn lock_route(op: Operation, store: StoreChoice) -> RouteChoice {
    RouteChoice::Lock {
        op,
        store,
        decor: Decor::default(),
    }
}

/// A try-lock of `lockstore` with these fields.
fn lock(resource: ValueChoice, owner: ValueChoice, expiry: ValueChoice) -> Step {
    let body = members(&[
        ("resourceId", resource),
        ("lockOwner", owner),
        ("expiryInSeconds", expiry),
    ]);
    Step::Send(req(
        MethodChoice::Post,
        lock_route(Operation::TryLock, StoreChoice::Configured(0)),
        body,
    ))
}

fn unlock(resource: ValueChoice, owner: ValueChoice) -> Step {
    let body = members(&[("resource_id", resource), ("lock_owner", owner)]);
    Step::Send(req(
        MethodChoice::Post,
        lock_route(Operation::Unlock, StoreChoice::Configured(0)),
        body,
    ))
}

/// A request to one of dlockd's own routes on `lockstore`, with these members in order.
fn own(op: Operation, fields: &[(&str, ValueChoice)]) -> Step {
    Step::Send(req(
        MethodChoice::Post,
        lock_route(op, StoreChoice::Configured(0)),
        members(fields),
    ))
}

fn renew(resource: ValueChoice, owner: ValueChoice, expiry: ValueChoice) -> Step {
    own(
        Operation::Renew,
        &[
            ("resourceId", resource),
            ("lockOwner", owner),
            ("expiryInSeconds", expiry),
        ],
    )
}

/// An acquire; without a `waitTimeoutMs` member when `wait` is `None`.
fn acquire(
    resource: ValueChoice,
    owner: ValueChoice,
    expiry: ValueChoice,
    wait: Option<ValueChoice>,
) -> Step {
    let mut fields = vec![
        ("resourceId", resource),
        ("lockOwner", owner),
        ("expiryInSeconds", expiry),
    ];
    fields.extend(wait.map(|wait| ("waitTimeoutMs", wait)));
    own(Operation::Acquire, &fields)
}

/// A holder query; without a `lockOwner` member when `owner` is `None`.
fn holder(resource: ValueChoice, owner: Option<ValueChoice>) -> Step {
    let mut fields = vec![("resource_id", resource)];
    fields.extend(owner.map(|owner| ("lock_owner", owner)));
    own(Operation::Holder, &fields)
}

/// Raw HTTP/1.1 POSTs of these (target, body) pairs, pipelined.
fn raw_posts(requests: &[(&str, &str)]) -> Step {
    let mut bytes = Vec::new();
    for (target, body) in requests {
        bytes.extend_from_slice(
            format!(
                "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    Step::Raw(bytes)
}

fn get(route: RouteChoice) -> Step {
    Step::Send(req(MethodChoice::Get, route, BodyChoice::Empty))
}

fn with(step: Step, change: impl FnOnce(&mut Req)) -> Step {
    let Step::Send(mut req) = step else {
        panic!("a request step")
    };
    change(&mut req);
    Step::Send(req)
}

fn request_seeds() -> Vec<(&'static str, Session)> {
    let a = || id("worker-a");
    let b = || text("worker-b");
    let r = || id("order-1");
    let ten = || number("10");
    let healthz = |decor: u8| RouteChoice::Healthz {
        outbound: false,
        decor: Decor(decor),
    };
    vec![
        (
            "lock_unlock_cycle",
            Session {
                config: 0,
                steps: vec![
                    lock(r(), a(), ten()),
                    lock(r(), a(), ten()),
                    lock(r(), b(), ten()),
                    unlock(r(), b()),
                    unlock(r(), a()),
                    unlock(r(), a()),
                ],
            },
        ),
        (
            "lease_expiry",
            Session {
                config: 0,
                steps: vec![
                    lock(r(), a(), number("1")),
                    Step::Wait(1000),
                    lock(r(), b(), ten()),
                    Step::Wait(1),
                    Step::Advance,
                    lock(r(), b(), ten()),
                    unlock(r(), a()),
                    lock(id("é😀"), a(), ValueChoice::NumberString(at(&NUMBER_STRINGS, "1e1"))),
                    Step::Wait(10_000),
                    unlock(id("é😀"), a()),
                ],
            },
        ),
        (
            "validation_errors",
            Session {
                config: 0,
                steps: vec![
                    lock(r(), a(), number("0")),
                    lock(r(), a(), number("-5")),
                    lock(r(), a(), ValueChoice::Null),
                    lock(id(""), a(), ten()),
                    lock(r(), id(""), ten()),
                    lock(id("a||b"), a(), ten()),
                    unlock(id("a||b"), a()),
                    lock(id(IDS[5]), a(), ten()),
                    lock(r(), id(IDS[5]), ten()),
                    lock(id(IDS[4]), id(IDS[4]), ten()),
                    lock(id("<&>\"\\\n"), a(), number("10.5")),
                    lock(r(), a(), number("2147483648")),
                    lock(r(), a(), ValueChoice::NumberString(at(&NUMBER_STRINGS, " 10"))),
                    lock(ValueChoice::True, a(), ten()),
                    with(lock(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::TryLock, StoreChoice::Other(b"nope".to_vec()));
                    }),
                    with(lock(r(), a(), ten()), |req| {
                        req.body = BodyChoice::Raw(b"not json".to_vec());
                    }),
                    with(lock(r(), a(), ten()), |req| {
                        req.body = members(&[("resourceId", r()), ("resource_id", r())]);
                    }),
                    with(unlock(r(), a()), |req| req.body = BodyChoice::Empty),
                ],
            },
        ),
        (
            "no_store_configured",
            Session {
                config: 2,
                steps: vec![
                    lock(r(), a(), ten()),
                    lock(r(), a(), number("0")),
                    unlock(id(""), a()),
                    get(RouteChoice::Metadata {
                        decor: Decor::default(),
                    }),
                ],
            },
        ),
        (
            "api_token",
            Session {
                config: 1,
                steps: vec![
                    lock(r(), a(), ten()),
                    with(lock(r(), a(), ten()), |req| {
                        req.token = TokenChoice::Wrong(b"wrong".to_vec())
                    }),
                    with(lock(r(), a(), ten()), |req| req.token = TokenChoice::Right),
                    with(unlock(r(), a()), |req| {
                        req.token = TokenChoice::RightThenWrong(b"x".to_vec())
                    }),
                    with(unlock(r(), a()), |req| {
                        req.token = TokenChoice::WrongThenRight(b"x".to_vec())
                    }),
                    get(healthz(0)),
                    get(healthz(Decor::TRAILING_SLASH | Decor::LEADING_SLASHES)),
                    get(healthz(Decor::DOUBLE_SLASHES)),
                    get(RouteChoice::Healthz {
                        outbound: true,
                        decor: Decor(Decor::QUERY),
                    }),
                    get(RouteChoice::Metadata {
                        decor: Decor::default(),
                    }),
                    with(
                        get(RouteChoice::Metadata {
                            decor: Decor::default(),
                        }),
                        |req| req.token = TokenChoice::Right,
                    ),
                    get(RouteChoice::Unknown(0)),
                ],
            },
        ),
        (
            "routes",
            Session {
                config: 0,
                steps: vec![
                    get(healthz(0)),
                    get(RouteChoice::Healthz {
                        outbound: true,
                        decor: Decor::default(),
                    }),
                    get(RouteChoice::Metadata {
                        decor: Decor(Decor::ABSOLUTE),
                    }),
                    with(get(healthz(0)), |req| req.method = MethodChoice::Post),
                    with(lock(r(), a(), ten()), |req| req.method = MethodChoice::Get),
                    with(lock(r(), a(), ten()), |req| req.method = MethodChoice::Delete),
                    get(RouteChoice::Unknown(1)),
                    with(get(RouteChoice::Unknown(2)), |req| req.method = MethodChoice::Post),
                    get(RouteChoice::BadEscape),
                    with(lock(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::TryLock, StoreChoice::Encoded(0))
                    }),
                    with(lock(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::TryLock, StoreChoice::Plus)
                    }),
                    with(unlock(r(), a()), |req| {
                        req.route = lock_route(Operation::Unlock, StoreChoice::Configured(2))
                    }),
                    with(lock(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::TryLock, StoreChoice::WrongCase)
                    }),
                    with(lock(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::TryLock, StoreChoice::Other(b"\xff/<x>".to_vec()))
                    }),
                    with(lock(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::TryLock, StoreChoice::Other(Vec::new()))
                    }),
                    with(unlock(r(), a()), |req| {
                        req.route = RouteChoice::Lock {
                            op: Operation::Unlock,
                            store: StoreChoice::Configured(0),
                            decor: Decor(0x3f),
                        }
                    }),
                ],
            },
        ),
        (
            "framing",
            Session {
                config: 0,
                steps: vec![
                    with(lock(r(), a(), ten()), |req| req.framing = Framing::Chunked(7)),
                    with(unlock(r(), a()), |req| req.framing = Framing::Chunked(1)),
                    with(lock(r(), a(), ten()), |req| {
                        req.framing = Framing::Http10 { keep_alive: true }
                    }),
                    with(unlock(r(), a()), |req| {
                        req.framing = Framing::Http10 { keep_alive: false }
                    }),
                    with(get(healthz(0)), |req| req.framing = Framing::Close),
                    with(get(RouteChoice::BadEscape), |req| {
                        req.framing = Framing::Http10 { keep_alive: true }
                    }),
                    with(lock(r(), a(), ten()), |req| req.framing = Framing::Oversize),
                ],
            },
        ),
        (
            "table_full",
            Session {
                config: 0,
                steps: vec![
                    lock(id("order-1"), a(), ten()),
                    lock(id("worker-a"), a(), ten()),
                    lock(id("a|b"), a(), ten()),
                    lock(text("r4"), a(), number("1")),
                    lock(text("r5"), a(), ten()),
                    unlock(text("r5"), a()),
                    Step::Wait(1001),
                    lock(text("r5"), a(), ten()),
                    lock(text("r6"), a(), ten()),
                    Step::Wait(10_000),
                    Step::Wait(1),
                    Step::Advance,
                    lock(text("r6"), a(), ten()),
                ],
            },
        ),
        (
            "raw_requests",
            Session {
                config: 0,
                steps: vec![
                    Step::Raw(b"POST /v1.0-alpha1/lock/s HTTP/1.1\r\nHost: x\r\nContent-Length: 54\r\n\r\n{\"resourceId\":\"r\",\"lockOwner\":\"o\",\"expiryInSeconds\":5}POST /v1.0-alpha1/unlock/s HTTP/1.1\r\nHost: x\r\nContent-Length: 34\r\n\r\n{\"resourceId\":\"r\",\"lockOwner\":\"o\"}GET /v1.0/healthz HTTP/1.1\r\n\r\n".to_vec()),
                    Step::Raw(b"GET /v1.0/metadata HTTP/1.0\r\n\r\n".to_vec()),
                    Step::RawApi {
                        method: MethodChoice::Post,
                        target: b"/v1.0-alpha1/lock/lockstore?x".to_vec(),
                        token: None,
                        body: br#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":"1e1"}"#.to_vec(),
                    },
                    Step::RawApi {
                        method: MethodChoice::Post,
                        target: b"/v1.0-alpha1//unlock/%6Cockstore/".to_vec(),
                        token: Some(b"secret".to_vec()),
                        body: br#"{"resourceId":"r","lockOwner":"p"}"#.to_vec(),
                    },
                    Step::RawApi {
                        method: MethodChoice::Get,
                        target: b"/v1.0-alpha1/lock/%".to_vec(),
                        token: None,
                        body: Vec::new(),
                    },
                ],
            },
        ),
        (
            // Found by the fuzzer: a body built from fields can pass the body limit, and the
            // answer is then the framer's ERR_BODY_READ, before anything routes.
            "body_over_the_limit",
            Session {
                config: 1,
                steps: vec![with(lock(r(), a(), ten()), |req| {
                    let control = ValueChoice::Text(vec![0x1a; 16]);
                    let fields: Vec<_> = (0..6).map(|_| ("storeName", control.clone())).collect();
                    req.body = members(&fields);
                    req.framing = Framing::Chunked(1);
                })],
            },
        ),
        (
            "body_forms",
            Session {
                config: 0,
                steps: vec![
                    with(lock(r(), a(), ten()), |req| {
                        req.body = members(&[
                            ("expiry_in_seconds", number("1e1")),
                            ("store_name", text("ignored")),
                            ("ResourceId", ValueChoice::Object),
                            ("resource_id", r()),
                            ("other", ValueChoice::Array),
                            ("lock_owner", a()),
                        ])
                    }),
                    lock(r(), b(), number("100e-1")),
                    lock(r(), b(), number("1e400")),
                    lock(r(), b(), ValueChoice::NumberString(at(&NUMBER_STRINGS, "10 20"))),
                    lock(r(), b(), ValueChoice::NumberString(at(&NUMBER_STRINGS, "abc"))),
                    unlock(r(), a()),
                ],
            },
        ),
        (
            // A renewal extends the owner's live lease (or shortens it), never another's, and
            // never brings an expired one back; a holder query tells and changes nothing.
            "renew_and_holder",
            Session {
                config: 0,
                steps: vec![
                    lock(r(), a(), number("1")),
                    holder(r(), Some(a())),
                    holder(r(), None),
                    holder(r(), Some(b())),
                    renew(r(), b(), ten()),
                    renew(r(), a(), ten()),
                    Step::Wait(1001),
                    holder(r(), Some(a())),
                    renew(r(), a(), number("1")),
                    holder(r(), Some(id(""))),
                    Step::Wait(1000),
                    holder(r(), Some(a())),
                    Step::Wait(1),
                    renew(r(), a(), ten()),
                    holder(r(), Some(a())),
                    Step::Advance,
                    renew(r(), a(), ten()),
                    lock(r(), b(), ten()),
                    with(renew(r(), b(), ten()), |req| {
                        req.route = lock_route(Operation::Renew, StoreChoice::Configured(1))
                    }),
                    unlock(r(), b()),
                    renew(r(), b(), ten()),
                    holder(r(), Some(b())),
                ],
            },
        ),
        (
            // Acquires: without a wait, a try-lock; the holder asking is refused at once; a
            // wait ends refused at its deadline, or granted the tick the holder's lease ends,
            // with a lease from the grant.
            "acquire_waits",
            Session {
                config: 0,
                steps: vec![
                    acquire(r(), a(), ten(), None),
                    acquire(r(), a(), ten(), Some(number("0"))),
                    acquire(r(), b(), ten(), Some(ValueChoice::Null)),
                    acquire(r(), a(), ten(), Some(number("1000"))),
                    acquire(r(), b(), ten(), Some(number("1000"))),
                    acquire(r(), b(), number("1"), Some(number("60000"))),
                    holder(r(), Some(b())),
                    acquire(r(), a(), ten(), Some(number("1000"))),
                    acquire(
                        r(),
                        a(),
                        ten(),
                        Some(ValueChoice::NumberString(at(&NUMBER_STRINGS, "10"))),
                    ),
                    holder(r(), Some(a())),
                    with(
                        acquire(r(), b(), number("1"), Some(number("10"))),
                        |req| req.framing = Framing::Http10 { keep_alive: true },
                    ),
                    unlock(r(), a()),
                    with(acquire(r(), b(), ten(), Some(number("1"))), |req| {
                        req.route = RouteChoice::Lock {
                            op: Operation::Acquire,
                            store: StoreChoice::Encoded(0),
                            decor: Decor(0x3f),
                        };
                        req.framing = Framing::Chunked(5);
                    }),
                ],
            },
        ),
        (
            // A full table refuses an acquire of a free lock at once; one that waits for a
            // lease to end is granted, that lease's place being free by then.
            "acquire_when_full",
            Session {
                config: 0,
                steps: vec![
                    lock(r(), a(), number("1")),
                    lock(text("r2"), a(), ten()),
                    lock(text("r3"), a(), ten()),
                    lock(text("r4"), a(), ten()),
                    acquire(text("r5"), b(), ten(), Some(number("1000"))),
                    acquire(r(), b(), ten(), Some(number("60000"))),
                    holder(r(), None),
                    renew(text("r2"), a(), number("1")),
                    acquire(text("r2"), b(), ten(), Some(number("1000"))),
                ],
            },
        ),
        (
            // dlockd's routes validate in daprd's order: the lengths (the lease's, then the
            // wait's), the store configured, the ids, the store known, `||`.
            "renew_holder_validation",
            Session {
                config: 0,
                steps: vec![
                    renew(r(), a(), number("0")),
                    renew(r(), a(), ValueChoice::Null),
                    renew(id(""), a(), ten()),
                    renew(r(), id(""), ten()),
                    renew(id(IDS[5]), a(), ten()),
                    renew(r(), id(IDS[5]), ten()),
                    renew(id("a||b"), a(), ten()),
                    renew(r(), a(), number("1e400")),
                    with(renew(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::Renew, StoreChoice::Other(b"nope".to_vec()))
                    }),
                    holder(id("a||b"), None),
                    holder(r(), Some(id(""))),
                    holder(r(), Some(id(IDS[5]))),
                    holder(id(""), None),
                    holder(ValueChoice::Number(at(&NUMBERS, "10")), None),
                    with(holder(r(), Some(a())), |req| {
                        req.body = members(&[
                            ("resourceId", r()),
                            ("expiryInSeconds", ValueChoice::NumberString(at(&NUMBER_STRINGS, "abc"))),
                            ("waitTimeoutMs", ValueChoice::True),
                        ])
                    }),
                ],
            },
        ),
        (
            "acquire_validation",
            Session {
                config: 0,
                steps: vec![
                    acquire(r(), a(), ten(), Some(number("-1"))),
                    acquire(r(), a(), ten(), Some(number("60001"))),
                    acquire(r(), a(), ten(), Some(number("2147483647"))),
                    acquire(r(), a(), ten(), Some(number("2147483648"))),
                    acquire(r(), a(), ten(), Some(number("10.5"))),
                    acquire(r(), a(), ten(), Some(ValueChoice::NumberString(at(&NUMBER_STRINGS, "abc")))),
                    acquire(r(), a(), ten(), Some(ValueChoice::True)),
                    acquire(r(), a(), number("0"), Some(number("-1"))),
                    acquire(id(""), id(""), ten(), Some(number("-5"))),
                    with(acquire(r(), a(), ten(), Some(number("-1"))), |req| {
                        req.route = lock_route(Operation::Acquire, StoreChoice::WrongCase)
                    }),
                    acquire(id("a||b"), a(), ten(), Some(number("1000"))),
                    with(acquire(r(), a(), ten(), None), |req| {
                        req.body = members(&[
                            ("resourceId", r()),
                            ("lockOwner", a()),
                            ("expiryInSeconds", ten()),
                            ("waitTimeoutMs", number("1")),
                            ("wait_timeout_ms", ValueChoice::Null),
                        ])
                    }),
                    with(acquire(r(), a(), ten(), None), |req| {
                        req.body = members(&[
                            ("resourceId", r()),
                            ("lockOwner", a()),
                            ("expiryInSeconds", ten()),
                            ("WaitTimeoutMs", number("-1")),
                        ])
                    }),
                    with(renew(r(), a(), ten()), |req| {
                        req.body = members(&[
                            ("resource_id", r()),
                            ("lock_owner", a()),
                            ("expiry_in_seconds", number("1e1")),
                            ("wait_timeout_ms", ValueChoice::Object),
                        ])
                    }),
                    with(unlock(r(), a()), |req| {
                        req.body = members(&[
                            ("resourceId", r()),
                            ("lockOwner", a()),
                            ("waitTimeoutMs", ValueChoice::NumberString(at(&NUMBER_STRINGS, "abc"))),
                        ])
                    }),
                    with(renew(r(), a(), ten()), |req| req.method = MethodChoice::Get),
                    with(holder(r(), None), |req| req.method = MethodChoice::Delete),
                    with(renew(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::Renew, StoreChoice::Other(Vec::new()))
                    }),
                    with(acquire(r(), a(), ten(), Some(number("-1"))), |req| {
                        req.route = lock_route(Operation::Acquire, StoreChoice::Other(Vec::new()))
                    }),
                    with(holder(r(), None), |req| {
                        req.route = lock_route(Operation::Holder, StoreChoice::Other(Vec::new()))
                    }),
                    with(renew(r(), a(), ten()), |req| {
                        req.route = lock_route(Operation::Renew, StoreChoice::Plus)
                    }),
                    with(holder(r(), None), |req| {
                        req.route = lock_route(Operation::Holder, StoreChoice::Other(b"\xff/<x>".to_vec()))
                    }),
                    with(get(RouteChoice::Unknown(8)), |req| req.method = MethodChoice::Post),
                    with(get(RouteChoice::Unknown(9)), |req| req.method = MethodChoice::Post),
                    with(get(RouteChoice::Unknown(10)), |req| req.method = MethodChoice::Post),
                    with(get(RouteChoice::Unknown(11)), |req| req.method = MethodChoice::Post),
                    with(get(RouteChoice::Unknown(12)), |req| req.method = MethodChoice::Post),
                ],
            },
        ),
        (
            "own_routes_without_store",
            Session {
                config: 2,
                steps: vec![
                    acquire(r(), a(), ten(), Some(number("-1"))),
                    acquire(r(), a(), ten(), Some(number("1"))),
                    renew(r(), a(), number("0")),
                    renew(r(), a(), ten()),
                    holder(id(""), None),
                ],
            },
        ),
        (
            "own_routes_token",
            Session {
                config: 1,
                steps: vec![
                    renew(r(), a(), ten()),
                    with(holder(r(), None), |req| req.token = TokenChoice::Right),
                    with(acquire(r(), a(), ten(), Some(number("-1"))), |req| {
                        req.token = TokenChoice::WrongThenRight(b"x".to_vec())
                    }),
                    with(acquire(r(), a(), ten(), Some(number("10"))), |req| {
                        req.token = TokenChoice::RightThenWrong(b"x".to_vec())
                    }),
                ],
            },
        ),
        (
            // Raw bytes: an acquire that waits, a holder query and an unlock pipelined, and
            // raw API calls of each of dlockd's routes.
            "own_routes_raw",
            Session {
                config: 0,
                steps: vec![
                    raw_posts(&[(
                        "/v1.0-alpha1/lock/s",
                        r#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":1}"#,
                    )]),
                    raw_posts(&[(
                        "/v1.0-alpha1/lock/s/acquire",
                        r#"{"resourceId":"r","lockOwner":"p","expiryInSeconds":5,"waitTimeoutMs":5000}"#,
                    )]),
                    raw_posts(&[
                        (
                            "/v1.0-alpha1/lock/s/holder",
                            r#"{"resourceId":"r","lockOwner":"p"}"#,
                        ),
                        (
                            "/v1.0-alpha1/unlock/s",
                            r#"{"resourceId":"r","lockOwner":"o"}"#,
                        ),
                    ]),
                    Step::RawApi {
                        method: MethodChoice::Post,
                        target: b"/v1.0-alpha1/lock/s/renew".to_vec(),
                        token: None,
                        body: br#"{"resourceId":"r","lockOwner":"p","expiryInSeconds":"1"}"#.to_vec(),
                    },
                    Step::RawApi {
                        method: MethodChoice::Post,
                        target: b"/v1.0-alpha1/lock/s/acquire?x".to_vec(),
                        token: None,
                        body: br#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":1,"waitTimeoutMs":-1}"#.to_vec(),
                    },
                    Step::RawApi {
                        method: MethodChoice::Post,
                        target: b"/v1.0-alpha1/lock/s/acquire".to_vec(),
                        token: None,
                        body: br#"{"resourceId":"r","lockOwner":"o","expiryInSeconds":1,"waitTimeoutMs":2000}"#.to_vec(),
                    },
                    Step::RawApi {
                        method: MethodChoice::Post,
                        target: b"/v1.0-alpha1//lock/s/./holder/".to_vec(),
                        token: None,
                        body: br#"{"resourceId":"r"}"#.to_vec(),
                    },
                ],
            },
        ),
    ]
}

fn lease_seeds() -> Vec<(&'static str, LeaseRun)> {
    let lock = |store, resource, owner, ttl_ms| LeaseOp::TryLock {
        store,
        resource,
        owner,
        ttl_ms,
    };
    let unlock = |store, resource, owner| LeaseOp::Unlock {
        store,
        resource,
        owner,
    };
    let to_end = |pick, after| LeaseOp::ToEnd { pick, after };
    let fenced = |store, resource, owner, ttl_ms| LeaseOp::TryLockFenced {
        store,
        resource,
        owner,
        ttl_ms,
    };
    let enable = |first| LeaseOp::EnableFencing { first };
    let ahead = |by| Offset { back: false, by };
    let back = |by| Offset { back: true, by };
    let restore = |store, resource, owner, end, token| LeaseOp::Restore {
        store,
        resource,
        owner,
        end,
        token,
    };
    let mut seeds = Vec::new();
    for (name, ttl_ms) in [
        ("boundary_1ms", 1),
        ("boundary_1s", 1000),
        ("boundary_longest", MAX_TTL_MS),
    ] {
        seeds.push((
            name,
            LeaseRun {
                start_ms: 17,
                max_leases: 8,
                ops: vec![
                    lock(0, 0, 0, ttl_ms),
                    to_end(0, false),
                    LeaseOp::Advance,
                    lock(0, 0, 1, 1000),
                    unlock(0, 0, 1),
                    to_end(0, true),
                    LeaseOp::Advance,
                    unlock(0, 0, 0),
                    lock(0, 0, 1, 1000),
                    LeaseOp::Holder {
                        store: 0,
                        resource: 0,
                    },
                ],
            },
        ));
    }
    seeds.push((
        "table_full_until_expiry",
        LeaseRun {
            start_ms: 0,
            max_leases: 2,
            ops: vec![
                lock(0, 0, 0, 1000),
                lock(1, 0, 0, 2000),
                LeaseOp::Wait { ms: 5 },
                lock(0, 1, 0, 1000),
                lock(0, 0, 1, 1000),
                LeaseOp::Wait { ms: 996 },
                lock(0, 0, 1, 1000),
                lock(0, 1, 0, 1000),
                LeaseOp::Wait { ms: 1000 },
                LeaseOp::AdvanceAtMost { budget: 1 },
                lock(0, 1, 0, 1000),
                LeaseOp::AdvanceAtMost { budget: 3 },
            ],
        },
    ));
    seeds.push((
        "top_level_wheel_slot",
        LeaseRun {
            start_ms: 0,
            max_leases: 8,
            ops: vec![
                LeaseOp::Advance,
                LeaseOp::Wait {
                    ms: (1 << 42) - 1000,
                },
                lock(0, 0, 0, 2000),
                lock(0, 1, 0, 500),
                to_end(1, true),
                LeaseOp::Advance,
                to_end(0, true),
                LeaseOp::Advance,
            ],
        },
    ));
    seeds.push((
        "ends_past_u64_max",
        LeaseRun {
            start_ms: u64::MAX - 5000,
            max_leases: 3,
            ops: vec![
                lock(0, 0, 0, 10_000),
                lock(0, 1, 0, 1000),
                lock(0, 2, 0, 0),
                LeaseOp::Wait { ms: 995 },
                LeaseOp::Advance,
                to_end(1, true),
                LeaseOp::Advance,
                lock(1, 1, 1, MAX_TTL_MS),
                LeaseOp::Wait { ms: 1 << 41 },
                LeaseOp::Advance,
                lock(2, 2, 2, 1000),
                unlock(0, 0, 0),
                LeaseOp::AdvanceAtMost { budget: 2 },
            ],
        },
    ));
    seeds.push((
        "owners_and_resources",
        LeaseRun {
            start_ms: (1 << 42) - 3,
            max_leases: 8,
            ops: vec![
                lock(0, 2, 0, 3000),
                lock(0, 3, 1, 3000),
                lock(2, 4, 3, 0),
                lock(1, 5, 2, 65_000),
                unlock(0, 2, 1),
                unlock(0, 3, 1),
                LeaseOp::Wait { ms: 1 },
                lock(2, 4, 2, 7000),
                LeaseOp::Wait { ms: 3000 },
                LeaseOp::Advance,
                lock(0, 2, 1, 3000),
                LeaseOp::Wait { ms: 1 << 30 },
                LeaseOp::AdvanceAtMost { budget: 0 },
                LeaseOp::Advance,
            ],
        },
    ));
    seeds.push((
        "fencing_from_the_first_token",
        LeaseRun {
            start_ms: 0,
            max_leases: 8,
            ops: vec![
                enable(500),
                fenced(0, 0, 0, 10),
                lock(0, 1, 0, 10),
                fenced(0, 0, 1, 10),
                LeaseOp::Wait { ms: 5 },
                fenced(0, 0, 1, 10),
                LeaseOp::Wait { ms: 6 },
                fenced(0, 0, 1, 10),
                unlock(0, 0, 1),
                fenced(0, 0, 2, 1000),
                enable(10),
                fenced(1, 0, 0, 1000),
                enable(1 << 40),
                lock(2, 5, 3, MAX_TTL_MS),
                LeaseOp::Live,
                to_end(0, true),
                LeaseOp::Advance,
                LeaseOp::Live,
            ],
        },
    ));
    seeds.push((
        "fencing_off",
        LeaseRun {
            start_ms: 17,
            max_leases: 3,
            ops: vec![
                fenced(0, 0, 0, 10),
                restore(1, 1, 1, ahead(20), ahead(9)),
                LeaseOp::Live,
                enable(1),
                fenced(0, 1, 0, 5),
                LeaseOp::Wait { ms: 21 },
                LeaseOp::Advance,
                enable(1),
                fenced(0, 0, 2, 5),
                restore(0, 0, 1, ahead(5), ahead(0)),
                restore(0, 2, 1, ahead(5), back(1)),
                fenced(0, 3, 0, 5),
                LeaseOp::Live,
            ],
        },
    ));
    seeds.push((
        "restore_at_start_up",
        LeaseRun {
            start_ms: 123_456,
            max_leases: 5,
            ops: vec![
                enable(1000),
                restore(0, 0, 0, ahead(50), back(7)),
                restore(0, 0, 1, ahead(60), ahead(0)),
                restore(0, 2, 1, ahead(3000), ahead(3000)),
                restore(1, 3, 2, back(5), ahead(1)),
                restore(2, 4, 3, ahead(u64::MAX), ahead(0)),
                LeaseOp::Live,
                fenced(0, 0, 1, 5),
                LeaseOp::Wait { ms: 50 },
                fenced(0, 0, 1, 5),
                LeaseOp::Wait { ms: 1 },
                LeaseOp::Advance,
                fenced(0, 0, 1, 5),
                restore(1, 5, 0, ahead(1 << 41), ahead(1 << 39)),
                restore(1, 1, 0, ahead(10), ahead(0)),
                fenced(1, 1, 0, 10),
                LeaseOp::Live,
                LeaseOp::Wait { ms: 3000 },
                LeaseOp::AdvanceAtMost { budget: 1 },
                fenced(1, 1, 0, 10),
                LeaseOp::Live,
            ],
        },
    ));
    let renew = |store, resource, owner, ttl_ms| LeaseOp::Renew {
        store,
        resource,
        owner,
        ttl_ms,
    };
    seeds.push((
        "renewals",
        LeaseRun {
            start_ms: 5_000,
            max_leases: 4,
            ops: vec![
                renew(0, 0, 0, 1000),
                lock(0, 0, 0, 1000),
                renew(0, 0, 1, 5000),
                LeaseOp::Wait { ms: 600 },
                renew(0, 0, 0, 1000),
                LeaseOp::AdvanceAtMost { budget: 0 },
                LeaseOp::Wait { ms: 600 },
                LeaseOp::Advance,
                renew(0, 0, 0, 100),
                to_end(0, false),
                LeaseOp::Advance,
                to_end(0, true),
                renew(0, 0, 0, 1000),
                LeaseOp::Advance,
                enable(40),
                fenced(1, 1, 2, 1000),
                renew(1, 1, 2, MAX_TTL_MS),
                LeaseOp::Advance,
                renew(1, 1, 2, 1),
                LeaseOp::Wait { ms: 2 },
                LeaseOp::Advance,
                LeaseOp::Live,
                // A lease that never ends, renewed to end: filed, then reclaimed.
                restore(2, 4, 3, ahead(u64::MAX), ahead(0)),
                LeaseOp::Advance,
                renew(2, 4, 3, 1),
                LeaseOp::Wait { ms: 5 },
                LeaseOp::Advance,
                LeaseOp::Live,
            ],
        },
    ));
    seeds
}

/// Every seed as (target, file name, bytes).
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut all = Vec::new();
    for (name, reads, payload) in http_seeds() {
        let data = fuzz::http::make_input(&reads, &payload);
        all.push(("http_request", format!("seed-{name}"), data));
    }
    for (name, body) in body_seeds() {
        all.push(("lock_body", format!("seed-{name}"), body.to_vec()));
        all.push(("unlock_body", format!("seed-{name}"), body.to_vec()));
    }
    for (name, session) in request_seeds() {
        all.push((
            "request_to_response",
            format!("seed-{name}"),
            session.write(),
        ));
    }
    for (name, run) in lease_seeds() {
        all.push(("lease_ops", format!("seed-{name}"), run.write()));
    }
    all
}

#[test]
fn structured_seeds_read_back_as_written() {
    // Protects the seed encoders: each structured seed reads back as the value it was
    // written from, so the corpus holds the sessions and runs this file describes.
    for (name, session) in request_seeds() {
        let read = Session::read(&mut Reader::new(&session.write()));
        assert_eq!(read, session, "{name}");
    }
    for (name, run) in lease_seeds() {
        let read = LeaseRun::read(&mut Reader::new(&run.write()));
        assert_eq!(read, run, "{name}");
    }
    for (_, reads, payload) in http_seeds() {
        let data = fuzz::http::make_input(&reads, &payload);
        assert_eq!(fuzz::http::split_input(&data), (reads, &payload[..]));
    }
}

#[test]
fn seeds_are_committed() {
    // Protects the link between this file and fuzz/corpus: every seed is there, unchanged.
    for (target, name, data) in seeds() {
        let path = fuzz_dir().join("corpus").join(target).join(&name);
        let committed = fs::read(&path).unwrap_or_default();
        assert!(
            committed == data,
            "{} is missing or stale: run `cargo test --test fuzz_corpus -- --ignored \
             write_seed_corpus`",
            path.display()
        );
    }
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing an input format"]
fn write_seed_corpus() {
    for (target, name, data) in seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).expect("a corpus directory");
        fs::write(dir.join(name), data).expect("a written seed");
    }
}
