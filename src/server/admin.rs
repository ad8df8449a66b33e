//! The admin listener: `GET /metrics` (Prometheus text 0.0.4), `GET /debug/lease` (who holds a
//! lock, and for how many more milliseconds) and `GET /debug/shards` (per-shard lease counts
//! and inbox depths), on `--metrics-listen`.
//!
//! It runs on a plain thread of its own with blocking std sockets, not on a worker: a scrape
//! formats a few kilobytes of text and a lease query waits for a shard's answer, and neither
//! should ever take a turn from a worker's connections; nor can a slow or hostile admin client
//! touch the request path. It serves one connection at a time, one request per connection
//! (`Connection: close`), each bounded in size and time, which is plenty for a scraper and an
//! operator.
//!
//! It never touches a shard's table: a lease query travels to the worker that owns the key as
//! a [`Mail::Holder`] message through that worker's inbox (the way forwarded requests go), the
//! worker answers it on its own thread between requests, and the answer comes back on a
//! one-slot channel. The counters it reads are the workers' [`WorkerMetrics`], written only
//! by their workers.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::linger::{Drain, LINGER};
use super::shared::Shared;
use crate::components::Backend;
use crate::lease::StoreId;
use crate::metrics::{self, Gauges};
use crate::shard::{Holder, HolderQuery, Mail};
use crate::shard::{ShardId, ShardMap};

/// The longest admin request head read; anything longer is answered 431.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long one admin connection may take to send its request and read the answer.
const CONNECTION_TIME: Duration = Duration::from_secs(2);
/// How long a lease query waits for its shard (to queue the question, then for the answer).
const QUERY_TIME: Duration = Duration::from_secs(1);

/// The running admin listener: a thread per listening address.
pub(super) struct Admin {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts serving each of `listeners` on a thread named `dlockd-admin`.
pub(super) fn start(listeners: Vec<TcpListener>, shared: Arc<Shared>) -> std::io::Result<Admin> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut admin = Admin {
        addrs: Vec::with_capacity(listeners.len()),
        stop: stop.clone(),
        threads: Vec::with_capacity(listeners.len()),
    };
    for listener in listeners {
        // Bound non-blocking for the workers' sake; this thread blocks in accept.
        listener.set_nonblocking(false)?;
        admin.addrs.push(listener.local_addr()?);
        let (shared, stopped) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("dlockd-admin".to_string())
            .spawn(move || run(&listener, &shared, &stopped));
        match thread {
            Ok(thread) => admin.threads.push(thread),
            Err(e) => {
                admin.stop();
                return Err(e);
            }
        }
    }
    Ok(admin)
}

impl Admin {
    pub(super) fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting and waits for the threads (at most one connection's time each).
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for (mut wake, thread) in self.addrs.into_iter().zip(self.threads) {
            // Wakes the blocking accept; the thread sees the flag and returns.
            if wake.ip().is_unspecified() {
                wake.set_ip(match wake {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            if TcpStream::connect_timeout(&wake, CONNECTION_TIME).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

fn run(listener: &TcpListener, shared: &Shared, stop: &AtomicBool) {
    let router = ShardMap::new(shared.inboxes.len());
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok(stream) => serve(shared, &router, stream),
            // Out of descriptors, or a connection reset before accept: back off, go on.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// An admin answer.
struct AdminReply {
    status: u16,
    content_type: &'static str,
    body: String,
}

const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl AdminReply {
    /// The health answers: `204`, no body, no content type.
    const HEALTHY: AdminReply = AdminReply {
        status: 204,
        content_type: "",
        body: String::new(),
    };

    fn json(status: u16, body: String) -> AdminReply {
        AdminReply {
            status,
            content_type: JSON,
            body,
        }
    }

    fn error(status: u16, message: &str) -> AdminReply {
        let mut body = String::from("{\"error\":");
        push_json_string(&mut body, message.as_bytes());
        body.push('}');
        AdminReply::json(status, body)
    }
}

fn serve(shared: &Shared, router: &ShardMap, mut stream: TcpStream) {
    let deadline = Instant::now() + CONNECTION_TIME;
    let mut buf = [0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    let reply = loop {
        if let Some(end) = find(&buf[..len], b"\r\n\r\n") {
            break handle(shared, router, &buf[..end]);
        }
        if len == buf.len() {
            break AdminReply::error(431, "request head too large");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    };
    let mut out = Vec::with_capacity(reply.body.len() + 160);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        reply.status,
        match reply.status {
            405 => "Method Not Allowed",
            status => crate::http::reason(status),
        }
    );
    // A 204 has neither (RFC 9110, 8.6).
    if reply.status != 204 {
        let _ = write!(
            out,
            "Content-Type: {}\r\nContent-Length: {}\r\n",
            reply.content_type,
            reply.body.len()
        );
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(reply.body.as_bytes());
    let left = deadline.saturating_duration_since(Instant::now());
    if stream
        .set_write_timeout(Some(left.max(Duration::from_millis(100))))
        .is_ok()
    {
        let _ = stream.write_all(&out);
    }
    let _ = stream.shutdown(Shutdown::Write);
    // What the client still sends (a head over the limit) is drained: see `linger.rs`.
    let mut drain = Drain::new(LINGER, MAX_REQUEST_BYTES * 8);
    while let Some(left) = drain.time_left() {
        if stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(n) if drain.drained(n) => {}
            _ => break,
        }
    }
}

/// Answers one request head (request line and headers, without the blank line).
fn handle(shared: &Shared, router: &ShardMap, head: &[u8]) -> AdminReply {
    let line_end = find(head, b"\r\n").unwrap_or(head.len());
    let mut parts = head[..line_end].split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return AdminReply::error(400, "malformed request line");
    };
    if !version.starts_with(b"HTTP/1.") {
        return AdminReply::error(400, "malformed request line");
    }
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, &b""[..]),
    };
    let known = matches!(
        path,
        b"/metrics"
            | b"/debug/lease"
            | b"/debug/shards"
            | b"/v1.0/healthz"
            | b"/v1.0/healthz/outbound"
    );
    if !known {
        return AdminReply::error(
            404,
            "not found: the admin listener serves /metrics, /debug/lease, /debug/shards, \
             /v1.0/healthz and /v1.0/healthz/outbound",
        );
    }
    if method != b"GET" {
        return AdminReply::error(405, "only GET is served here");
    }
    match path {
        b"/metrics" => scrape(shared),
        b"/debug/shards" => shards(shared),
        // As daprd's public port answers them: a probe (or an SDK's start-up wait) needs no
        // HTTP API on TCP, which `--unix-domain-socket` takes away.
        b"/v1.0/healthz" | b"/v1.0/healthz/outbound" => AdminReply::HEALTHY,
        _ => lease(shared, router, query),
    }
}

fn scrape(shared: &Shared) -> AdminReply {
    let accepted: Vec<u64> = shared
        .accepted
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let depths: Vec<usize> = shared.inboxes.iter().map(|i| i.request_depth()).collect();
    let mut body = String::with_capacity(8 * 1024);
    metrics::render(
        &Gauges {
            workers: &shared.metrics,
            connections: shared.connections.load(Ordering::Relaxed) as u64,
            accepted: &accepted,
            inbox_depths: &depths,
            crash_grace_remaining_ms: shared.crash_grace_remaining_ms().unwrap_or(0),
        },
        &mut body,
    );
    AdminReply {
        status: 200,
        content_type: PROMETHEUS,
        body,
    }
}

fn shards(shared: &Shared) -> AdminReply {
    let mut body = String::from("{\"shards\":[");
    for (shard, inbox) in shared.inboxes.iter().enumerate() {
        if shard > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            "{{\"shard\":{shard},\"leases\":{},\"inboxRequests\":{},\"inboxReplies\":{},\
             \"acceptedConnections\":{}}}",
            shared.metrics[shard].leases(),
            inbox.request_depth(),
            inbox.reply_depth(),
            shared.accepted[shard].load(Ordering::Relaxed),
        );
    }
    let _ = write!(
        body,
        "],\"openConnections\":{}",
        shared.connections.load(Ordering::Relaxed)
    );
    // With a data dir: how long try-locks are still refused after an unclean stop.
    if let Some(ms) = shared.crash_grace_remaining_ms() {
        let _ = write!(body, ",\"crashGraceRemainingMs\":{ms}");
    }
    body.push('}');
    AdminReply::json(200, body)
}

/// `/debug/lease?store=S&resourceId=R`: asks the shard that owns the key.
fn lease(shared: &Shared, router: &ShardMap, query: &[u8]) -> AdminReply {
    let (store, resource) = match lease_query(query) {
        Ok(asked) => asked,
        Err(refused) => return refused,
    };
    let Some(at) = shared
        .config
        .stores
        .iter()
        .position(|s| s.as_bytes() == store.as_slice())
    else {
        let mut message = String::from("unknown store ");
        message.push_str(&String::from_utf8_lossy(&store));
        return AdminReply::error(404, &message);
    };
    let Ok(id) = u16::try_from(at) else {
        return AdminReply::error(404, "unknown store");
    };
    match shared.config.backends.get(at) {
        Some(Backend::Redis(redis)) => return redis_store(shared, at, redis, &resource),
        Some(Backend::Etcd(etcd)) => return etcd_store(shared, at, etcd, &resource),
        _ => {}
    }
    let store_id = StoreId(id);
    let shard = router.shard_of(store_id, &resource);
    match ask_holder(shared, shard, store_id, &resource) {
        Ok(holder) => AdminReply::json(200, holder_json(&store, &resource, shard, holder)),
        Err(refused) => refused,
    }
}

/// The store and resource id of a lease query, percent-decoded.
fn lease_query(query: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AdminReply> {
    let mut store = None;
    let mut resource = None;
    for pair in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let Some(value) = percent_decode(value) else {
            return Err(AdminReply::error(400, "bad percent-encoding in the query"));
        };
        match name {
            b"store" => store = Some(value),
            b"resourceId" => resource = Some(value),
            _ => {}
        }
    }
    let (Some(store), Some(resource)) = (store, resource) else {
        return Err(AdminReply::error(
            400,
            "store and resourceId are both required",
        ));
    };
    if resource.is_empty() {
        return Err(AdminReply::error(400, "resourceId is empty"));
    }
    Ok((store, resource))
}

/// Asks `shard` who holds (`store`, `resource`), through its inbox, within [`QUERY_TIME`].
fn ask_holder(
    shared: &Shared,
    shard: ShardId,
    store: StoreId,
    resource: &[u8],
) -> Result<Option<Holder>, AdminReply> {
    let (answer, answered) = mpsc::sync_channel(1);
    // A batch of one: messages between threads travel in batches.
    let mut mail = vec![Mail::Holder(HolderQuery {
        store,
        resource: resource.into(),
        answer,
    })];
    let deadline = Instant::now() + QUERY_TIME;
    loop {
        if shared.shutting_down.load(Ordering::SeqCst) {
            return Err(AdminReply::error(503, "shutting down"));
        }
        match shared.inboxes[shard.0].send_requests(mail) {
            Ok(()) => break,
            Err(back) if Instant::now() < deadline => {
                mail = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return Err(AdminReply::error(503, "the shard's inbox stayed full")),
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    answered
        .recv_timeout(left.max(Duration::from_millis(100)))
        .map_err(|_| AdminReply::error(503, "the shard did not answer in time"))
}

/// The JSON answer to a lease query.
fn holder_json(store: &[u8], resource: &[u8], shard: ShardId, holder: Option<Holder>) -> String {
    let mut body = String::from("{\"store\":");
    push_json_string(&mut body, store);
    body.push_str(",\"resourceId\":");
    push_json_string(&mut body, resource);
    let _ = write!(body, ",\"shard\":{},", shard.0);
    match holder {
        Some(h) => {
            body.push_str("\"held\":true,\"lockOwner\":");
            push_json_string(&mut body, &h.owner);
            let _ = write!(body, ",\"remainingMs\":{}", h.remaining_ms);
            if let Some(fence) = h.fence {
                let _ = write!(body, ",\"fence\":{fence}");
            }
            body.push('}');
        }
        None => body.push_str("\"held\":false}"),
    }
    body
}

/// `/debug/lease` for a `lock.redis` store: its leases live in Redis, not in a shard's table, so
/// the table's answer ("not held") would be wrong. The answer says so, names the store's type,
/// and gives the key that holds the lock in Redis (`GET` for the owner, `PTTL` for the time
/// left).
fn redis_store(
    shared: &Shared,
    at: usize,
    redis: &crate::components::RedisSettings,
    resource: &[u8],
) -> AdminReply {
    let name = &shared.config.stores[at];
    let mut key = redis.key_prefix.key_head(&shared.config.app_id, name);
    key.extend_from_slice(resource);
    let message = format!(
        "store {name} is lock.redis ({}): its leases live in Redis, and /debug/lease reads \
         only the lock.in-memory stores' tables; the lock is Redis's key {} (GET for the \
         owner, PTTL for the milliseconds left)",
        redis.host,
        String::from_utf8_lossy(&key)
    );
    let mut body = String::from("{\"error\":");
    push_json_string(&mut body, message.as_bytes());
    body.push_str(",\"store\":");
    push_json_string(&mut body, name.as_bytes());
    body.push_str(",\"type\":\"lock.redis\",\"key\":");
    push_json_string(&mut body, &key);
    body.push('}');
    AdminReply::json(501, body)
}

/// `/debug/lease` for a `lock.etcd` store, as for a Redis one: its key in etcd.
fn etcd_store(
    shared: &Shared,
    at: usize,
    etcd: &crate::components::EtcdSettings,
    resource: &[u8],
) -> AdminReply {
    let name = &shared.config.stores[at];
    let mut key = etcd.key_prefix.key_head(&shared.config.app_id, name);
    key.extend_from_slice(resource);
    let message = format!(
        "store {name} is lock.etcd ({}): its leases live in etcd, and /debug/lease reads \
         only the lock.in-memory stores' tables; the lock is etcd's key {} (its value is the \
         owner, its create revision the fencing token, its lease the time left)",
        etcd.endpoints.join(","),
        String::from_utf8_lossy(&key)
    );
    let mut body = String::from("{\"error\":");
    push_json_string(&mut body, message.as_bytes());
    body.push_str(",\"store\":");
    push_json_string(&mut body, name.as_bytes());
    body.push_str(",\"type\":\"lock.etcd\",\"key\":");
    push_json_string(&mut body, &key);
    body.push('}');
    AdminReply::json(501, body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a query value: `%XX` escapes and `+` for a space, as Go's `url.ParseQuery` does.
fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Appends `bytes` as a JSON string (invalid UTF-8 replaced).
fn push_json_string(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    // Query values decode as Go's url.ParseQuery does; a broken escape is refused.
    #[test]
    fn query_values_decode() {
        assert_eq!(percent_decode(b"a%2Fb+c").as_deref(), Some(&b"a/b c"[..]));
        assert_eq!(percent_decode(b"%zz"), None);
        assert_eq!(percent_decode(b"%4"), None);
        assert_eq!(percent_decode(b"").as_deref(), Some(&b""[..]));
    }

    // Owners and resource ids are arbitrary text: they come out as valid JSON strings.
    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, b"a\"b\\c\n\x01\xff");
        assert_eq!(out, "\"a\\\"b\\\\c\\u000a\\u0001\u{fffd}\"");
    }
}
