"""Constants: paths, CPUs, defaults, timeouts, the servers and their labels, the
configuration files written for the anchors."""

from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "perf" / "RESULTS.md"
LOADGEN_MANIFEST = ROOT / "perf" / "loadgen" / "Cargo.toml"

APT_PACKAGES = ["redis-server", "redis-tools", "nginx-light", "valgrind"]
# Installed only when an etcd server is in --servers.
ETCD_APT_PACKAGES = ["etcd-server"]

# Placement: the server always runs on CPU 0; "colo" puts the client there too (the steady
# placement on these VMs), "split" gives the client CPU 1.
SERVER_CPU = "0"
CLIENT_CPU = {"colo": "0", "split": "1"}
TWO_WORKER_CPUS = "0,1"

DEFAULT_ROUNDS = 3
DEFAULT_DURATION_S = 10.0
DEFAULT_WARMUP_S = 1.0
QUICK_DURATION_S = 2.0
DEFAULT_CONNECTIONS = 64
DEFAULT_DEPTHS = [1, 16]
DEFAULT_INSTR_REQUESTS = 200_000
QUICK_INSTR_REQUESTS = 20_000
# Requests sent to a server under callgrind before its counters are zeroed.
INSTR_WARMUP_REQUESTS = 20_000

# How long a server may take to accept connections (valgrind start-up is slow).
READY_TIMEOUT_S = 15.0
READY_TIMEOUT_VALGRIND_S = 120.0
# How long a server may take to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT_S = 5.0
# A load-generator run may overrun its duration by this much before it counts as hung.
LOADGEN_SLACK_S = 60.0
# A fixed-count run under callgrind, which slows the server many times over.
LOADGEN_COUNT_TIMEOUT_S = 1800.0
CALLGRIND_CONTROL_TIMEOUT_S = 120.0
REDIS_CLI_TIMEOUT_S = 30.0
# An exact-count run may be answered with more than N if the client rounds up to a whole
# batch; more than this fraction off and the division would be wrong.
INSTR_COUNT_TOLERANCE = 0.01

# Server CPU time comes in clock ticks; a run with fewer than this many is flagged as coarse.
MIN_CPU_TICKS = 100

# --memory: lease counts, and how the leases are put in. A fill is the churn workload (lock
# only, never unlock) over exactly as many resources as requests, so each resource is locked
# once; its expiry outlives the measurement by far.
DEFAULT_MEMORY_LEASES = [1_000_000, 10_000_000]
QUICK_MEMORY_LEASES = [100_000, 1_000_000]
FILL_EXPIRY_S = 3600
# Fill connections: at most this many, and a divisor of the lease count, because the client
# gives each connection an equal share of the requests and a contiguous slice of the
# resources only when the count divides evenly (otherwise a resource could be locked twice
# and another never).
FILL_MAX_CONNECTIONS = 16
FILL_DEPTH = 16
# The fill's client runs on the other CPU: a fill is not a measurement, and the faster it goes
# the closer together an expiry storm's leases end.
FILL_CPU = "1"
# dlockd's default --max-leases; a fill of more than half of it raises the bound to twice the
# fill (the table allocates as it grows, so the bound itself costs no memory).
DLOCKD_DEFAULT_MAX_LEASES = 10_000_000
# Requests of the unmeasured run (on the fill's connections) that precedes the "before"
# memory reading: it touches the connection buffers and the runtime as a fill will, and
# leaves no lease.
MEMORY_WARMUP_REQUESTS = 20_000

# --expiry-storm: leases filled with a short expiry, then a measured open-loop run long
# enough to span the instant they all end and the server's reclamation of them.
DEFAULT_STORM_LEASES = 1_000_000
QUICK_STORM_LEASES = 100_000
DEFAULT_STORM_EXPIRY_S = 5
QUICK_STORM_EXPIRY_S = 2
DEFAULT_STORM_RATE = 50_000
QUICK_STORM_RATE = 20_000
DEFAULT_STORM_DURATION_S = 15.0
QUICK_STORM_DURATION_S = 6.0
STORM_SERVERS = ["dlockd", "redis"]
# How often the server's RSS and CPU time are read during a storm's measured run.
SAMPLE_INTERVAL_S = 0.5

# --open-loop: the servers that are measured at half of redis-server's maximum rate.
OPEN_LOOP_SERVERS = ["dlockd", "ceiling", "redis"]
# The project's target: dlockd's p99 at that rate at most this share of redis-server's.
OPEN_LOOP_TARGET = 0.5

# --handoff: clients contending for one resource. Each run of a round, in alternation order:
# (key, server, client workload, extra client flags, label). The last one is the reference of
# the grants/s target: dlockd's uncontended lock+unlock rate of one connection.
HANDOFF_RUNS = [
    ("acquire", "dlockd", "handoff", (), "dlockd, acquire"),
    ("poll-dlockd", "dlockd", "poll", (), "dlockd, polling try-lock, 50–500 ms backoff"),
    ("poll-redis", "redis", "poll", (), "redis-server, polling SET NX, 50–500 ms backoff"),
    ("greedy-dlockd", "dlockd", "poll", ("--greedy",),
     "dlockd, greedy polling (no backoff after an unlock)"),
    ("greedy-redis", "redis", "poll", ("--greedy",),
     "redis-server, greedy polling (no backoff after an unlock)"),
    ("one-connection", "dlockd", "uncontended", (),
     "dlockd, 1 connection, uncontended lock+unlock"),
]
DEFAULT_HANDOFF_CLIENTS = 8
# The acquire's waitTimeoutMs: far longer than any handoff, within dlockd's --max-wait.
HANDOFF_WAIT_MS = 30_000
# components-contrib#3046's polling loop: a uniformly random sleep in this range (ms).
HANDOFF_BACKOFF_MS = (50, 500)
# The targets: handoff p99 (µs, colo), polling's p99 over acquire's, acquire's grants/s
# over one connection's uncontended lock+unlock pairs/s, max/min grants per client.
HANDOFF_TARGETS = {"p99_us": 100, "polling_ratio": 500, "grants_ratio": 0.9, "fairness": 1.2}

# --parked-waiters: how many acquires wait, spread over this many resources a holder keeps.
DEFAULT_PARKED_WAITERS = 10_000
QUICK_PARKED_WAITERS = 1_000
PARKED_RESOURCES = 100
# Their waitTimeoutMs (dlockd's default --max-wait): longer than the settling and the window.
PARKED_WAIT_MS = 60_000
# After the waiters (or idle connections) are set up, before a window starts.
PARKED_SETTLE_S = 1.0
# How long to wait for dlockd's /metrics to count every waiter.
PARKED_READY_TIMEOUT_S = 30.0
# The target of server CPU with the waiters parked: no more than an idle server's, over
# a window of the same length; the windows of one idle server differ by about this much.
PARKED_CPU_TOLERANCE = 0.10
# The target: bytes of memory a parked waiter may cost beyond its connection.
PARKED_BYTES_TARGET = 1024

# Before a comparison, how long to watch the CPUs for other load, and above what share of
# busy time to warn that the numbers will be noisy.
BUSY_SAMPLE_S = 1.0
BUSY_WARN = 0.10

# The servers --servers may name.
ALL_SERVERS = ["dlockd", "dlockd-uds", "dlockd-datadir", "dlockd-redis", "dlockd-nometrics",
               "dlockd-2w", "ceiling", "ceiling-2w", "redis", "redis-uds", "nginx",
               "dlockd-etcd", "etcd", "dlockd-etcd-3", "etcd-3"]
# The etcd servers: anchors (etcd driven directly with dlockd's transactions) and dlockd on a
# lock.etcd store, each over a cluster of its own that compare starts, one member or three.
# Their runs are seconds of fsync-bound writes and need etcd: only when --servers names them.
ETCD_SERVERS = {"etcd": 1, "etcd-3": 3}
# dlockd on a lock.etcd store -> the anchor whose cluster it is given (started the same way).
ETCD_STORE_SERVERS = {"dlockd-etcd": "etcd", "dlockd-etcd-3": "etcd-3"}
# The default of --servers: all but the etcd ones.
DEFAULT_SERVERS = [s for s in ALL_SERVERS if s not in ETCD_SERVERS and s not in ETCD_STORE_SERVERS]
# --baseline REV: dlockd built from REV, run exactly as the server it is named after (the
# same command line but for the binary, the same CPUs, the same client). Each is measured
# when --baseline is given and its counterpart is in --servers, right after it.
BASE_SERVERS = {"dlockd-base": "dlockd", "dlockd-base-2w": "dlockd-2w"}
# workload -> servers that take part in it (in alternation order)
WORKLOAD_SERVERS = {
    "uncontended": ["dlockd", "dlockd-base", "dlockd-uds", "dlockd-datadir", "dlockd-redis",
                    "dlockd-nometrics", "dlockd-2w", "dlockd-base-2w", "ceiling", "ceiling-2w",
                    "redis", "redis-uds", "nginx", "dlockd-etcd", "etcd", "dlockd-etcd-3",
                    "etcd-3"],
    "contended": ["dlockd", "dlockd-base", "dlockd-2w", "dlockd-base-2w", "redis"],
    "churn": ["dlockd", "dlockd-base", "dlockd-2w", "dlockd-base-2w", "redis"],
}
INSTR_SERVERS = ["dlockd", "dlockd-base", "dlockd-datadir", "dlockd-nometrics", "ceiling",
                 "redis"]
# The dlockd servers: they print a start-up line naming their I/O driver, take --check in
# the warm-up, and get the probe try-lock. Only dlockd-datadir runs with a data dir; only
# dlockd-redis keeps its store in a redis-server of its own (started with it, see new_server).
DLOCKD_SERVERS = ("dlockd", "dlockd-base", "dlockd-uds", "dlockd-datadir", "dlockd-redis",
                  "dlockd-nometrics", "dlockd-2w", "dlockd-base-2w", "dlockd-etcd",
                  "dlockd-etcd-3")
DATADIR_SERVERS = ("dlockd-datadir",)
CEILING_SERVERS = ("ceiling", "ceiling-2w")
REDIS_STORE_SERVERS = ("dlockd-redis",)
# The name of a dlockd-redis's own redis-server (its log file is named after it).
STORE_REDIS_NAME = "store-redis"

# The servers on a Unix domain socket instead of loopback TCP, each with the server it is
# otherwise run exactly as: dlockd-uds is dlockd with `-u DIR --app-id perf` (its HTTP API
# on DIR/dapr-perf-http.socket, its gRPC API on DIR/dapr-perf-grpc.socket, no TCP listener
# but the admin port), redis-uds is the redis anchor with `unixsocket` and `port 0`. The
# client reaches them with --target unix:PATH.
UDS_SERVERS = {"dlockd-uds": "dlockd", "redis-uds": "redis"}
UDS_APP_ID = "perf"
# sun_path holds 108 bytes with its NUL.
MAX_UNIX_PATH_BYTES = 107
# The targets for the Unix socket, colo at UDS_TARGETS_CONNECTIONS connections:
# (key, depth, numerator, denominator, measure, wanted, at most). The figure is
# numerator / denominator of the measure's median over the rounds.
UDS_TARGETS_CONNECTIONS = 64
UDS_TARGETS = [
    ("rps", 1, "dlockd-uds", "dlockd", "req/s", 1.5, False),
    ("rps", 16, "dlockd-uds", "dlockd", "req/s", 1.2, False),
    ("p99", 1, "dlockd-uds", "dlockd", "p99", 0.7, True),
    ("rps", 1, "dlockd-uds", "redis-uds", "req/s", 1.5, False),
]

# --external NAME=ADDR[@PID[,PID...]]: a Dapr-compatible server already running (a daprd
# sidecar, a dlockd started by hand), measured beside the others with the same client. compare
# never starts or stops it. Its client's store is --external-store NAME=STORE, by default:
EXTERNAL_DEFAULT_STORE = "lockstore"

LABELS = {
    "dlockd": "dlockd, 1 worker",
    "dlockd-nometrics": "dlockd, 1 worker, --metrics-listen off",
    "dlockd-datadir": "dlockd, 1 worker, --data-dir (fresh)",
    "dlockd-redis": "dlockd, 1 worker, lock.redis store (+ its redis-server)",
    "dlockd-2w": "dlockd, 2 workers",
    "dlockd-base": "dlockd-base (the baseline), 1 worker",
    "dlockd-base-2w": "dlockd-base (the baseline), 2 workers",
    "ceiling": "ceiling (dlockd-ceiling, 1 worker)",
    "ceiling-2w": "ceiling, 2 workers",
    "dlockd-uds": "dlockd, 1 worker, Unix socket (-u)",
    "redis": "redis-server (RESP, Dapr's lock.redis commands)",
    "redis-uds": "redis-server, Unix socket (RESP, Dapr's lock.redis commands)",
    "nginx": "nginx, 1 worker, fixed answer",
    "dlockd-etcd": "dlockd, 1 worker, lock.etcd store (dlockd's CPU only; its etcd: 1 member)",
    "etcd": "etcd, 1 member (gRPC: dlockd's etcd calls, from the client)",
    "dlockd-etcd-3": "dlockd, 1 worker, lock.etcd store (dlockd's CPU only; its etcd: 3 members)",
    "etcd-3": "etcd, 3 members (gRPC: dlockd's etcd calls, from the client)",
}

# The ratios the project's targets are stated in: dlockd (1 worker) over each anchor; and
# over itself without metrics, the cost of counting.
RATIOS = ["dlockd-nometrics", "ceiling", "redis", "nginx"]

# The probe try-lock's request (see probe_fence): a resource and owner no client run uses.
PROBE_STORE = "lockstore"
PROBE_RESOURCE = "perf-compare-probe"
PROBE_OWNER = "perf-compare"
PROBE_TIMEOUT_S = 10.0
PROBE_TIMEOUT_VALGRIND_S = 120.0
FENCE_HEADER = "dapr-lock-fence"
# The key dlockd-redis's probe try-lock must create in its redis-server: the component keeps
# keyPrefix at its default (appid) and dlockd runs without an app id, which gives
# lock||<resourceId>, the key the load generator's RESP commands use against the redis anchor.
PROBE_REDIS_KEY = "lock||" + PROBE_RESOURCE
PROBE_EXPIRY_S = 10

# The targets for dlockd on etcd, in every table that has a pair (dlockd-etcd and
# the etcd it is set against, one member or three; ETCD_STORE_SERVERS): (key, measure,
# wanted, at most). The figure is the pair's ratio of the measure's medians; for CPU,
# dlockd's own CPU per request (its etcd's apart) over the CPU per request of etcd driven
# directly.
ETCD_TARGETS = [
    ("rps", "req/s", 0.8, False),
    ("cpu", "server CPU per request (dlockd's own / etcd's)", 0.25, True),
]

# The etcd members compare starts: etcd 3.4 as Debian packages it, with its defaults for what
# a production member would keep (fsync of its WAL on every commit, --snapshot-count 100000,
# --quota-backend-bytes 0 = 2 GiB, heartbeat 100 ms, election timeout 1000 ms, no
# auto-compaction), its data dir a new directory in the run's temporary directory, client
# and peer URLs on loopback. Logging at warn level, to its log file.
ETCD_LOG_LEVEL = "warn"
# The lock.etcd component's timeouts: the defaults (dialTimeout 5s, operationTimeout 5s).
# The probe key: keyPrefix appid with no app id gives lock||<resourceId>, the keys the load
# generator's etcd calls use.
PROBE_ETCD_KEY = "lock||" + PROBE_RESOURCE

# dlockd-etcd's component file: the store the load generator names, on its etcd cluster.
ETCD_COMPONENT = """\
# Written by perf/compare: the load generator's store as a lock.etcd store.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {store}
spec:
  type: lock.etcd
  version: v1
  metadata:
  - name: endpoints
    value: "{endpoints}"
"""

# dlockd-redis's component file: the store the load generator names, on its redis-server.
REDIS_COMPONENT = """\
# Written by perf/compare: the load generator's store as a lock.redis store.
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {store}
spec:
  type: lock.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:{port}
  - name: redisPassword
    value: ""
"""

NGINX_CONF = """\
# Written by perf/compare: one worker answering every request with the ceiling's bytes.
{user}worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    # The default of 1000 would close connections in the middle of a run.
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{{"success":true}}';
        }}
    }}
}}
"""
