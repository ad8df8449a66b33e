//! A real etcd for a test: one member, or a cluster of three, on free loopback ports in a
//! temporary data dir, killed when dropped; and the `lock.etcd` component files that point
//! dlockd at it. `etcd` and `etcdctl` come from Debian's etcd-server and etcd-client
//! (`.ci/run` installs them).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a member may take to answer its first health check.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One member's ports and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// Stopped with SIGSTOP by [`TestEtcd::stop`], until [`TestEtcd::resume`].
    stopped: bool,
}

/// A running etcd cluster (one member unless started with [`TestEtcd::cluster`]).
pub struct TestEtcd {
    members: Vec<Member>,
    dir: PathBuf,
    /// `USER:PASSWORD` for etcdctl once authentication is on.
    user: Option<String>,
    /// With TLS: the directory of `ca.crt`, `server.{crt,key}` and `client.{crt,key}`; the
    /// members then serve TLS only and ask clients for a certificate signed by the CA.
    tls: Option<PathBuf>,
}

impl TestEtcd {
    /// One member on free ports, answering before this returns.
    pub fn start() -> TestEtcd {
        TestEtcd::with_members(1)
    }

    /// Three members on free ports, with a leader before this returns.
    pub fn cluster() -> TestEtcd {
        TestEtcd::with_members(3)
    }

    /// One member serving TLS only, with a certificate for `localhost` and 127.0.0.1 and
    /// client certificates required, all signed by a CA made here (with `openssl`).
    pub fn start_tls() -> TestEtcd {
        TestEtcd::with(1, true)
    }

    /// The file `name` of a TLS member's certificates (`ca.crt`, `client.key`, ...).
    pub fn tls_file(&self, name: &str) -> String {
        let dir = self.tls.as_ref().expect("a TLS member");
        dir.join(name).to_string_lossy().into_owned()
    }

    fn with_members(n: usize) -> TestEtcd {
        TestEtcd::with(n, false)
    }

    fn with(n: usize, tls: bool) -> TestEtcd {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dlockd-etcd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir for etcd");
        // Every port is held open until all are chosen, so that no two are the same.
        let held: Vec<TcpListener> = (0..2 * n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().expect("a bound port").port())
            .collect();
        drop(held);
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                child: None,
                stopped: false,
            })
            .collect();
        let tls = tls.then(|| make_certificates(&dir));
        let mut etcd = TestEtcd {
            members,
            dir,
            user: None,
            tls,
        };
        for i in 0..n {
            etcd.launch(i);
        }
        etcd.wait_healthy();
        etcd
    }

    /// `name=http://127.0.0.1:PEER,...` of every member.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn launch(&mut self, i: usize) {
        let cluster = self.initial_cluster();
        let dir = self.dir.clone();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", m.name)))
            .expect("a log file for etcd");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut command = Command::new("etcd");
        if let Some(certs) = &self.tls {
            let file = |f: &str| certs.join(f).to_string_lossy().into_owned();
            command
                .args(["--cert-file", &file("server.crt")])
                .args(["--key-file", &file("server.key")])
                .args(["--trusted-ca-file", &file("ca.crt")])
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &m.name, "--data-dir"])
            .arg(dir.join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-token", "dlockd-test"])
            // Quick elections, so that a cluster without a member has a leader again soon.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd runs (apt-get install etcd-server etcd-client; .ci/run installs them)");
        m.child = Some(child);
    }

    /// Waits until every running member (not stopped) says it is healthy (which needs a
    /// leader).
    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        for i in 0..self.members.len() {
            if !self.answers(i) {
                continue;
            }
            let endpoint = self.ctl_endpoint(i);
            loop {
                let healthy = Command::new("etcdctl")
                    .args(["--endpoints", &endpoint, "--command-timeout", "1s"])
                    .args(self.ctl_tls())
                    .args(["endpoint", "health"])
                    .env("ETCDCTL_API", "3")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if healthy {
                    break;
                }
                let exited = self.members[i]
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if exited.is_some() || Instant::now() >= deadline {
                    let log = self.log(i);
                    self.kill_all();
                    panic!("etcd member {i} is not healthy ({exited:?}); its log:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Member `i`'s log (its standard error), for a failure message.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.members[i].name)))
            .unwrap_or_default()
    }

    /// `127.0.0.1:PORT` of member `i`'s clients.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client endpoint, comma-separated, as the `endpoints` metadata takes it.
    pub fn endpoints(&self) -> String {
        (0..self.members.len())
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` (SIGKILL: as abrupt as a crash), and waits until it is gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            if self.members[i].stopped {
                // A stopped member cannot die of SIGKILL until it runs again.
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[i].stopped = false;
    }

    /// Whether member `i` runs (it was not killed, or was restarted since).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Whether member `i` runs and is not stopped: whether it can answer.
    pub fn answers(&self, i: usize) -> bool {
        self.is_running(i) && !self.members[i].stopped
    }

    /// Freezes member `i` with SIGSTOP: it keeps its sockets and answers nothing.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.members[i].stopped = true;
    }

    /// Lets member `i` run again after [`TestEtcd::stop`] (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.members[i].stopped = false;
    }

    /// Member `i`'s status from `etcdctl endpoint status -w json`: its own member id and the
    /// leader it knows (0 for none); `None` if it does not answer within a second.
    pub fn status(&self, i: usize) -> Option<(u64, u64)> {
        if !self.answers(i) {
            return None;
        }
        let out = Command::new("etcdctl")
            .args(["--endpoints", &self.ctl_endpoint(i)])
            .args(["--command-timeout", "1s", "--dial-timeout", "1s"])
            .args(self.ctl_tls())
            .args(["endpoint", "status", "-w", "json"])
            .env("ETCDCTL_API", "3")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let status = &v.as_array()?.first()?["Status"];
        Some((
            status["header"]["member_id"].as_u64()?,
            status["leader"].as_u64()?,
        ))
    }

    /// The member that leads now: one that names itself the leader, named so by a majority
    /// of all the members; `None` while there is none (an election, or no quorum).
    pub fn leader(&self) -> Option<usize> {
        let known: Vec<(usize, u64, u64)> = (0..self.members.len())
            .filter_map(|i| self.status(i).map(|(id, leader)| (i, id, leader)))
            .collect();
        let (i, id, _) = known.iter().find(|(_, id, leader)| id == leader)?;
        let votes = known.iter().filter(|(_, _, leader)| leader == id).count();
        (2 * votes > self.members.len()).then_some(*i)
    }

    /// Waits up to `within` for a leader ([`TestEtcd::leader`]) and returns it.
    pub fn wait_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no etcd leader within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts member `i` again on its ports and data dir, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
        self.wait_healthy();
    }

    /// Sends a signal (`-STOP`, `-CONT`) to member `i`.
    pub fn signal(&self, i: usize, sig: &str) {
        let pid = self.members[i].child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill {sig} {pid}");
    }

    /// Member `i`'s endpoint for etcdctl: with the scheme when it serves TLS.
    fn ctl_endpoint(&self, i: usize) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.endpoint(i)),
            None => self.endpoint(i),
        }
    }

    /// etcdctl's certificate flags for a TLS member.
    fn ctl_tls(&self) -> Vec<String> {
        match &self.tls {
            None => Vec::new(),
            Some(_) => vec![
                format!("--cacert={}", self.tls_file("ca.crt")),
                format!("--cert={}", self.tls_file("client.crt")),
                format!("--key={}", self.tls_file("client.key")),
            ],
        }
    }

    /// `etcdctl ARGS` against every member that answers (running, not stopped); its standard
    /// output, or its error.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let running: Vec<String> = (0..self.members.len())
            .filter(|&i| self.answers(i))
            .map(|i| self.ctl_endpoint(i))
            .collect();
        let mut command = Command::new("etcdctl");
        command.args(["--endpoints", &running.join(","), "--command-timeout", "5s"]);
        command.args(self.ctl_tls());
        if let Some(user) = &self.user {
            command.args(["--user", user]);
        }
        let out = command
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .map_err(|e| format!("etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Turns authentication on, with user `root` and `password`.
    pub fn enable_auth(&mut self, password: &str) {
        self.ctl(&["user", "add", &format!("root:{password}")])
            .expect("etcdctl user add root");
        self.ctl(&["auth", "enable"]).expect("etcdctl auth enable");
        self.user = Some(format!("root:{password}"));
    }

    /// The value of `key`, or `None` if it is absent.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self
            .ctl(&["get", key, "--print-value-only"])
            .unwrap_or_else(|e| panic!("etcdctl get {key}: {e}"));
        let value = out.strip_suffix('\n').unwrap_or(&out);
        (!out.is_empty()).then(|| value.to_string())
    }

    /// `key`'s create revision and lease, from `etcdctl get -w json`.
    pub fn revisions(&self, key: &str) -> Option<(u64, u64)> {
        let out = self
            .ctl(&["get", key, "-w", "json"])
            .unwrap_or_else(|e| panic!("etcdctl get {key}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl's JSON");
        let kv = v["kvs"].as_array()?.first()?;
        Some((kv["create_revision"].as_u64()?, kv["lease"].as_u64()?))
    }

    /// The number of leases etcd holds.
    pub fn leases(&self) -> usize {
        let out = self.ctl(&["lease", "list"]).expect("etcdctl lease list");
        out.lines().skip(1).filter(|l| !l.trim().is_empty()).count()
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        for m in &self.members {
            if let Some(child) = &m.child {
                // A stopped member cannot die of SIGKILL until it runs again.
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
        }
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The text of a `lock.etcd` component `name` on `endpoints`, with extra metadata pairs.
pub fn component(name: &str, endpoints: &str, extra: &[(&str, &str)]) -> String {
    let mut text = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  \
         type: lock.etcd\n  version: v1\n  metadata:\n  - name: endpoints\n    value: \
         \"{endpoints}\"\n"
    );
    for (k, v) in extra {
        text.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    text
}

/// A CA, a server certificate for `localhost` and 127.0.0.1, and a client certificate, made
/// with `openssl` in `dir/certs`; returns that directory.
fn make_certificates(dir: &std::path::Path) -> PathBuf {
    let d = dir.join("certs");
    std::fs::create_dir_all(&d).expect("a certificates dir");
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(&d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs (apt-get install openssl)");
        assert!(ok.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=dlockd test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    for (name, cn, ext) in [
        (
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "root", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(d.join(format!("{name}.cnf")), ext).expect("an extensions file");
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.cnf"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }
    d
}
