"""The servers: their command lines, starting, watching and stopping them."""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import etcdapi
from .common import Fail, log
from .config import (
    BASE_SERVERS, CEILING_SERVERS, DLOCKD_SERVERS, ETCD_COMPONENT, ETCD_LOG_LEVEL, ETCD_SERVERS,
    ETCD_STORE_SERVERS, MAX_UNIX_PATH_BYTES, NGINX_CONF, PROBE_STORE, REDIS_COMPONENT,
    REDIS_STORE_SERVERS, SERVER_CPU, STOP_TIMEOUT_S, STORE_REDIS_NAME, TWO_WORKER_CPUS,
    UDS_APP_ID, UDS_SERVERS,
)
from .procs import cpu_ticks, free_port, voluntary_switches


class Server:
    """One server process, started in its own session so that Ctrl-C reaches only this
    script and its whole process group can be stopped by the group's id. `companions`:
    servers it needs (dlockd-redis's redis-server, dlockd-etcd's etcd cluster), started before
    it and stopped after it; their CPU time is counted with its own if `count_companions`
    (dlockd-redis), else apart (dlockd-etcd: dlockd's own CPU is the figure)."""

    def __init__(self, name, argv, port, workdir, ready_timeout, cpus, companions=(),
                 count_companions=True):
        self.name = name
        self.companions = list(companions)
        self.count_companions = count_companions
        # dlockd and the ceiling print one start-up line naming their I/O driver.
        self.says_driver = name in DLOCKD_SERVERS or name in CEILING_SERVERS
        self.port = port
        # A server on a Unix socket (UDS_SERVERS) listens on no TCP port: `port` only names
        # its files, and the client and the probes reach it at `unix`.
        self.unix = unix_socket_of(name, argv)
        self.argv = ["taskset", "-c", cpus, *argv]
        self.ready_timeout = ready_timeout
        self.log_path = Path(workdir) / f"{name}-{port}.log"
        self.proc = None

    def start(self):
        for companion in self.companions:
            companion.start()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        RUNNING.append(self)
        self.wait_ready()

    @property
    def target(self):
        """The client's --target: unix:PATH or 127.0.0.1:PORT."""
        return f"unix:{self.unix}" if self.unix else f"127.0.0.1:{self.port}"

    @property
    def host(self):
        """The Host header of an HTTP request to it (localhost over a Unix socket)."""
        return "localhost" if self.unix else f"127.0.0.1:{self.port}"

    def connect(self, timeout):
        """A socket connected to the server's client address (the caller closes it)."""
        return connect_to(self.target, timeout)

    def log_tail(self, lines=15):
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def startup_line(self):
        """dlockd's or the ceiling's start-up line, which names its I/O driver, or "".
        The listener accepts before the line is printed, and under valgrind on io_uring the
        main thread may print it only once requests have arrived: read it after a run."""
        if not self.says_driver:
            return ""
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    if " listening on " in line:
                        return line.strip()
        except OSError:
            pass
        return ""

    def wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise Fail(
                    f"{self.name} exited (status {self.proc.returncode}) before it accepted "
                    f"connections: {shlex.join(self.argv)}\n{self.log_tail()}"
                )
            try:
                with self.connect(1.0) as sock:
                    if self.unix is None or answers_ready(self.name, sock):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Fail(
                    f"{self.name} did not accept connections on {self.target} within "
                    f"{self.ready_timeout:.0f} s: {shlex.join(self.argv)}\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def check_alive(self):
        if self.proc.poll() is not None:
            raise Fail(
                f"{self.name} died during the run (status {self.proc.returncode})\n"
                f"{self.log_tail()}"
            )
        for companion in self.companions:
            companion.check_alive()

    def cpu_ticks(self):
        """(counted, companions'): utime + stime of this server's processes, with its
        companions' if it counts them, and of the companions' alone."""
        own = cpu_ticks(self.proc.pid)
        theirs = sum(c.cpu_ticks()[0] for c in self.companions)
        return own + (theirs if self.count_companions else 0), theirs

    def sleeps(self):
        """Voluntary context switches of this server's threads, and of its companions' if it
        counts them."""
        own = voluntary_switches(self.proc.pid)
        if not self.count_companions:
            return own
        return own + sum(c.sleeps() for c in self.companions)

    def stop(self, sig=signal.SIGTERM):
        try:
            self.stop_own(sig)
        finally:
            for companion in self.companions:
                companion.stop()

    def stop_own(self, sig):
        # Not running (never started, or stopped already: a companion is stopped by its
        # server and may still be in stop_all's list).
        if self.proc is None or self not in RUNNING:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        else:
            # The leader is gone; a child (nginx's worker) may outlive it in the group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self in RUNNING:
            RUNNING.remove(self)


# Every server started and not yet stopped, for the clean-up on any way out.
RUNNING = []


class EtcdCluster:
    """An etcd cluster of one or three members on this machine, each a Server (a process
    pinned to the server's CPU), started together and ready once every member says it is
    healthy (it has a leader). As a server of its own (etcd, etcd-3) the client speaks etcd's
    gRPC to all its members; as a companion it is dlockd-etcd's store. Its CPU time and
    sleeps are its members'."""

    says_driver = False
    unix = None

    def __init__(self, name, members, ready_timeout):
        self.name = name
        self.members = members
        self.ready_timeout = ready_timeout
        self.companions = []
        self.count_companions = True
        self.leader_index = None

    @property
    def ports(self):
        """The members' client ports, in order."""
        return [m.port for m in self.members]

    @property
    def port(self):
        return self.members[0].port

    @property
    def argv(self):
        return self.members[0].argv

    @property
    def target(self):
        """The client's --target: every member's client address, comma-separated."""
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def endpoints(self):
        """lock.etcd's `endpoints`: the same list."""
        return self.target

    def start(self):
        # Each member accepts on its client port before the cluster has a leader: start them
        # all, then wait for health.
        for member in self.members:
            member.start()
        deadline = time.monotonic() + self.ready_timeout
        while not all(etcdapi.healthy(p) for p in self.ports):
            self.check_alive()
            if time.monotonic() > deadline:
                raise Fail(f"{self.name}: its members did not all become healthy within "
                           f"{self.ready_timeout:.0f} s\n{self.log_tail()}")
            time.sleep(0.05)
        # Which member leads: dlockd sends all its calls to its first endpoint.
        leading = [i for i, p in enumerate(self.ports) if etcdapi.leads(p)]
        self.leader_index = leading[0] if leading else None

    def log_tail(self, lines=15):
        return "\n".join(f"  {m.name}:\n{m.log_tail(lines)}" for m in self.members)

    def startup_line(self):
        return ""

    def check_alive(self):
        for member in self.members:
            member.check_alive()

    def cpu_ticks(self):
        return sum(m.cpu_ticks()[0] for m in self.members), 0

    def sleeps(self):
        return sum(m.sleeps() for m in self.members)

    def stop(self, sig=signal.SIGTERM):
        for member in self.members:
            try:
                member.stop(sig)
            except Exception as e:  # the other members are stopped all the same
                log(f"compare: stopping {member.name}: {e}")


def connect_to(target, timeout):
    """A socket connected to `target`: unix:PATH or HOST:PORT."""
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(target[len("unix:"):])
        except OSError:
            sock.close()
            raise
        return sock
    host, _, port = target.rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)


def answers_ready(name, sock):
    """Whether a server on a Unix socket answers on `sock`: dlockd its HTTP healthz (GET
    /v1.0/healthz, 204), redis-server a PING. A socket file exists from bind() on, before the
    server listens, so a connect alone says less than over TCP."""
    if name in DLOCKD_SERVERS:
        sock.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(1024)
            if not chunk:
                return False
            head += chunk
        return head.split(b" ", 2)[1:2] == [b"204"]
    sock.sendall(b"PING\r\n")
    answer = b""
    while b"\r\n" not in answer:
        chunk = sock.recv(1024)
        if not chunk:
            return False
        answer += chunk
    return answer.startswith(b"+PONG")


def unix_socket_of(name, argv):
    """The Unix socket a UDS server's client connects to, from its command line; None for a
    server on TCP."""
    if name not in UDS_SERVERS and BASE_SERVERS.get(name) not in UDS_SERVERS:
        return None
    if "-u" in argv:
        # dlockd -u DIR --app-id ID: DIR/dapr-ID-http.socket
        return str(Path(argv[argv.index("-u") + 1]) / f"dapr-{UDS_APP_ID}-http.socket")
    if "--unixsocket" in argv:
        return argv[argv.index("--unixsocket") + 1]
    raise Fail(f"{name}: its command line names no Unix socket: {shlex.join(argv)}")


def socket_dir(workdir, prefix, longest_name):
    """A new directory in `workdir` for a Unix socket named `longest_name` (at most): the
    path must fit in a socket address."""
    d = tempfile.mkdtemp(prefix=prefix, dir=workdir)
    path = str(Path(d) / longest_name)
    if len(os.fsencode(path)) > MAX_UNIX_PATH_BYTES:
        raise Fail(f"the Unix socket path {path} is longer than {MAX_UNIX_PATH_BYTES} bytes: "
                   "set TMPDIR to a shorter directory")
    return d


def stop_all():
    for server in list(RUNNING):
        try:
            server.stop()
        except Exception as e:  # clean-up goes on for the others
            log(f"compare: stopping {server.name}: {e}")


def etcd_member_argv(cluster, index, client_ports, peer_ports, workdir):
    """(argv, cpus) of member `index` of the etcd cluster named `cluster` whose members'
    client and peer ports are `client_ports` and `peer_ports`: a new data dir in `workdir`,
    loopback URLs, etcd's defaults otherwise (see ETCD_LOG_LEVEL in config), pinned to the
    server's CPU as every member."""
    names = [f"m{i}" for i in range(len(client_ports))]
    ddir = tempfile.mkdtemp(prefix=f"{cluster}-{client_ports[0]}-{names[index]}-", dir=workdir)
    client = f"http://127.0.0.1:{client_ports[index]}"
    peer = f"http://127.0.0.1:{peer_ports[index]}"
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer_ports))
    argv = [
        shutil.which("etcd") or "/usr/bin/etcd",
        "--name", names[index],
        "--data-dir", ddir,
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", initial,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", f"{cluster}-{client_ports[0]}",
        "--logger", "zap",
        "--log-level", ETCD_LOG_LEVEL,
    ]
    return argv, SERVER_CPU


def new_etcd_cluster(name, workdir, ready_timeout, first_port=None, avoid=()):
    """An EtcdCluster (not started) with as many members as the anchor `name` has: the
    first member's client port `first_port` (None: a free one), the other ports free ones
    other than those and `avoid`."""
    count = ETCD_SERVERS[name]
    ports = [] if first_port is None else [first_port]
    avoid = set(avoid)
    while len(ports) < 2 * count:
        p = free_port()
        if p not in ports and p not in avoid:
            ports.append(p)
    client_ports, peer_ports = ports[:count], ports[count:]
    members = []
    for i in range(count):
        argv, cpus = etcd_member_argv(name, i, client_ports, peer_ports, workdir)
        members.append(Server(f"{name}-m{i}", argv, client_ports[i], workdir, ready_timeout,
                              cpus))
    return EtcdCluster(name, members, ready_timeout)


def server_argv(name, bins, port, workdir, valgrind=None, io_driver=None, dlockd_flags=(),
                store_port=None, store_endpoints=None):
    """(argv, cpus) for server `name` on `port`. `valgrind` is an argv prefix;
    `dlockd_flags` are added to dlockd's command line (not the ceiling's); `store_port` is
    the port of dlockd-redis's redis-server, `store_endpoints` the client addresses of
    dlockd-etcd's etcd cluster, comma-separated (see new_server). A baseline server
    (BASE_SERVERS) gets its counterpart's command line and CPUs with the baseline's binary,
    bins["dlockd-base"]."""
    if name in BASE_SERVERS:
        if "dlockd-base" not in bins:
            raise Fail(f"{name} needs the baseline's binary (--baseline)")
        return server_argv(BASE_SERVERS[name], {**bins, "dlockd": bins["dlockd-base"]}, port,
                           workdir, valgrind=valgrind, io_driver=io_driver,
                           dlockd_flags=dlockd_flags, store_port=store_port)
    listen = f"127.0.0.1:{port}"
    prefix = valgrind or []
    driver = ["--io-driver", io_driver] if io_driver else []
    # The admin listener on an ephemeral port: Dapr's 9090 may be taken on this machine.
    metrics_on = ["--metrics-listen", "127.0.0.1:0"]
    # dlockd's gRPC face, on as by default, on an ephemeral port too: another process may
    # hold its default 50001.
    grpc = ["--grpc-listen", "127.0.0.1:0"]
    if name == "dlockd":
        argv = [bins["dlockd"], "--listen", listen, "--workers", "1", *metrics_on, *grpc,
                *driver, *dlockd_flags]
        return prefix + argv, SERVER_CPU
    if name == "dlockd-nometrics":
        argv = [bins["dlockd"], "--listen", listen, "--workers", "1", "--metrics-listen", "off",
                *grpc, *driver, *dlockd_flags]
        return prefix + argv, SERVER_CPU
    if name == "dlockd-datadir":
        # dlockd's command line plus a data dir that no start has used: a fresh data dir, so
        # no snapshot to load and no refusal after an unclean stop.
        ddir = tempfile.mkdtemp(prefix=f"datadir-{port}-", dir=workdir)
        argv = [bins["dlockd"], "--listen", listen, "--workers", "1", *metrics_on, *grpc,
                *driver, "--data-dir", ddir, *dlockd_flags]
        return prefix + argv, SERVER_CPU
    if name == "dlockd-redis":
        if store_port is None:
            raise Fail("dlockd-redis needs its redis-server's port (start it with new_server)")
        # A new directory per start with one component file: the client's store as a
        # lock.redis store on this start's redis-server. keyPrefix stays at its default
        # (appid) and the app id is set empty, so that an APP_ID in the environment cannot
        # change the keys: lock||<resourceId>, as the redis anchor's client commands.
        cdir = tempfile.mkdtemp(prefix=f"components-{port}-", dir=workdir)
        (Path(cdir) / f"{PROBE_STORE}.yaml").write_text(
            REDIS_COMPONENT.format(store=PROBE_STORE, port=store_port))
        argv = [bins["dlockd"], "--listen", listen, "--workers", "1", *metrics_on, *grpc,
                *driver, "--resources-path", cdir, "--app-id=", *dlockd_flags]
        return prefix + argv, SERVER_CPU
    if name in ETCD_STORE_SERVERS:
        if store_endpoints is None:
            raise Fail(f"{name} needs its etcd cluster's endpoints (start it with new_server)")
        # As dlockd-redis: a component file making the client's store a lock.etcd store on
        # this start's cluster, all its members in `endpoints` (dlockd sends to the first,
        # the others take over if it fails), keyPrefix at its default and the app id empty:
        # keys lock||<resourceId>, as the etcd anchor's client calls.
        cdir = tempfile.mkdtemp(prefix=f"components-{port}-", dir=workdir)
        (Path(cdir) / f"{PROBE_STORE}.yaml").write_text(
            ETCD_COMPONENT.format(store=PROBE_STORE, endpoints=store_endpoints))
        argv = [bins["dlockd"], "--listen", listen, "--workers", "1", *metrics_on, *grpc,
                *driver, "--resources-path", cdir, "--app-id=", *dlockd_flags]
        return prefix + argv, SERVER_CPU
    if name == "dlockd-uds":
        # dlockd's command line with its HTTP and gRPC APIs on daprd's Unix sockets in a new
        # directory (no socket a previous start left): -u replaces --listen and --grpc-listen.
        udir = socket_dir(workdir, f"uds-{port}-", f"dapr-{UDS_APP_ID}-http.socket.lock")
        argv = [bins["dlockd"], "-u", udir, "--app-id", UDS_APP_ID, "--workers", "1",
                *metrics_on, *driver, *dlockd_flags]
        return prefix + argv, SERVER_CPU
    if name == "dlockd-2w":
        # Its second worker pins itself to CPU 1, so it gets both CPUs.
        argv = [bins["dlockd"], "--listen", listen, "--workers", "2", *metrics_on, *grpc,
                *driver, *dlockd_flags]
        return prefix + argv, TWO_WORKER_CPUS
    if name in CEILING_SERVERS:
        workers = "2" if name == "ceiling-2w" else "1"
        argv = [bins["dlockd-ceiling"], "--listen", listen, "--workers", workers, *metrics_on,
                *driver]
        return prefix + argv, TWO_WORKER_CPUS if workers == "2" else SERVER_CPU
    if name in ("redis", "redis-uds"):
        rdir = Path(workdir) / f"{name}-{port}"
        rdir.mkdir(parents=True, exist_ok=True)
        if name == "redis":
            listen = ["--port", str(port), "--bind", "127.0.0.1"]
        else:
            # No TCP at all (port 0); the socket only for this user.
            sdir = socket_dir(workdir, f"redis-uds-{port}-", "redis.sock")
            listen = ["--port", "0", "--unixsocket", str(Path(sdir) / "redis.sock"),
                      "--unixsocketperm", "700"]
        argv = [
            shutil.which("redis-server") or "redis-server",
            *listen,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(rdir),
            "--logfile", "",
        ]
        return prefix + argv, SERVER_CPU
    if name == "nginx":
        ndir = Path(workdir) / f"nginx-{port}"
        ndir.mkdir(parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = ndir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, dir=ndir, port=port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-p", str(ndir), "-c", str(conf), "-e", str(ndir / "error.log")]
        return prefix + argv, SERVER_CPU
    raise Fail(f"unknown server {name}")


def new_server(name, bins, port, workdir, ready_timeout, **kw):
    """A Server for `name` on `port` (not started). dlockd-redis gets its companion: a fresh
    redis-server on a port of its own, with the redis anchor's command line and pinning (CPU
    0, the server's), started before dlockd (each worker connects to it at start) and stopped
    after it. dlockd-etcd likewise gets a fresh etcd cluster made as its anchor's, whose CPU
    time is kept apart from dlockd's. The etcd anchors are an EtcdCluster whose first member
    listens on `port`. `kw` goes to server_argv."""
    if name in ETCD_SERVERS:
        return new_etcd_cluster(name, workdir, ready_timeout, first_port=port)
    if name in ETCD_STORE_SERVERS:
        cluster = new_etcd_cluster(ETCD_STORE_SERVERS[name], workdir, ready_timeout,
                                   avoid=(port,))
        argv, cpus = server_argv(name, bins, port, workdir, store_endpoints=cluster.endpoints,
                                 **kw)
        return Server(name, argv, port, workdir, ready_timeout, cpus, [cluster],
                      count_companions=False)
    companions = []
    if name in REDIS_STORE_SERVERS:
        rport = free_port()
        while rport == port:
            rport = free_port()
        rargv, rcpus = server_argv("redis", bins, rport, workdir)
        companions.append(Server(STORE_REDIS_NAME, rargv, rport, workdir, ready_timeout,
                                 rcpus))
        kw["store_port"] = rport
    argv, cpus = server_argv(name, bins, port, workdir, **kw)
    return Server(name, argv, port, workdir, ready_timeout, cpus, companions)


def protocol_of(name):
    if name in ETCD_SERVERS:
        return "etcd"
    return "resp" if name in ("redis", "redis-uds") else "http"
