//! A real `redis-server` for a test, on a free loopback port, stopped when dropped; and the
//! Dapr component files that point dlockd at it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running `redis-server` (installed from the distribution; `.ci/run` installs it).
pub struct TestRedis {
    pub port: u16,
    child: Option<Child>,
    /// Its working directory: a replica's full sync writes an RDB file there, which must not
    /// land in (and be loaded from) the test's own directory.
    dir: Components,
    /// Extra `redis-server` arguments, and the password they set, if any.
    extra: Vec<String>,
    password: Option<String>,
    /// With TLS on `port` (and no plain port): the CA that signed its certificate.
    tls_ca: Option<PathBuf>,
}

impl TestRedis {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> TestRedis {
        TestRedis::start_with(&[], None)
    }

    /// Starts one with extra server arguments; `password` is what `--requirepass` asks for.
    pub fn start_with(extra: &[&str], password: Option<&str>) -> TestRedis {
        let port = free_port();
        let mut redis = TestRedis {
            port,
            child: None,
            dir: Components::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            password: password.map(str::to_string),
            tls_ca: None,
        };
        redis.launch(true);
        redis
    }

    /// Starts one serving TLS only, with a certificate for `localhost` signed by a CA made
    /// here (with the `openssl` command); the CA's file is [`TestRedis::tls_ca`].
    pub fn start_tls() -> TestRedis {
        let port = free_port();
        let dir = Components::new();
        let d = dir.dir.clone();
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
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(d.join("ext.cnf"), "subjectAltName=DNS:localhost\n").expect("ext.cnf");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ]);
        let path = |f: &str| d.join(f).to_string_lossy().into_owned();
        let mut redis = TestRedis {
            port,
            child: None,
            extra: vec![
                "--tls-cert-file".into(),
                path("server.crt"),
                "--tls-key-file".into(),
                path("server.key"),
                "--tls-ca-cert-file".into(),
                path("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            dir,
            password: None,
            tls_ca: Some(d.join("ca.crt")),
        };
        redis.launch(true);
        redis
    }

    /// The CA file of a TLS server.
    pub fn tls_ca(&self) -> Option<&std::path::Path> {
        self.tls_ca.as_deref()
    }

    /// Starts the server and waits until it answers PING. A server that exits before it
    /// answers (most often: another process took its port between [`free_port`] and its bind)
    /// is started again on a new port, at first start only; a restart keeps its port. Fails
    /// with the server's own log.
    fn launch(&mut self, may_move: bool) {
        const ATTEMPTS: usize = 5;
        let log_path = self.dir.dir.join("redis-server.log");
        for attempt in 1..=ATTEMPTS {
            let log = std::fs::File::create(&log_path).expect("a log file in the redis dir");
            let child = Command::new("redis-server")
                .args(&self.extra)
                .arg("--dir")
                .arg(&self.dir.dir)
                .args(if self.tls_ca.is_some() {
                    vec!["--port".to_string(), "0".into(), "--tls-port".into()]
                } else {
                    vec!["--port".to_string()]
                })
                .args([
                    &self.port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(log.try_clone().expect("the log file opens twice"))
                .stderr(log)
                .spawn()
                .expect("redis-server runs (apt-get install redis-server; .ci/run installs it)");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if self.try_cmd(&["PING"]).as_deref() == Some("+PONG") {
                    return;
                }
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|child| child.try_wait().ok().flatten());
                if exited.is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    self.kill();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("redis-server did not answer PING in 10 s; its log:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            self.child = None;
            if !may_move || attempt == ATTEMPTS {
                panic!(
                    "redis-server exited on port {} before answering; its log:\n{log}",
                    self.port
                );
            }
            self.port = free_port();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops the server (SIGKILL: as abrupt as a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch(false);
    }

    /// Sends a signal (`-STOP`, `-CONT`) to the server process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill {sig} {pid}");
    }

    /// One command; its reply's first line (`+OK`, `$-1`, `:1`, or a bulk string's text).
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args)
            .unwrap_or_else(|| panic!("redis did not answer {args:?}"))
    }

    fn try_cmd(&self, args: &[&str]) -> Option<String> {
        if let Some(ca) = &self.tls_ca {
            // Through redis-cli, which speaks TLS; it prints PONG, a value, or (nil).
            let out = Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(ca)
                .args(["-h", "localhost", "-p", &self.port.to_string()])
                .args(args)
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            return match text.as_str() {
                "PONG" => Some("+PONG".into()),
                "" => None,
                _ => Some(text),
            };
        }
        let mut s = TcpStream::connect(self.addr()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let encode = |args: &[&str]| {
            let mut req = format!("*{}\r\n", args.len());
            for a in args {
                req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            req
        };
        if let Some(password) = &self.password {
            s.write_all(encode(&["AUTH", password]).as_bytes()).ok()?;
        }
        s.write_all(encode(args).as_bytes()).ok()?;
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        if self.password.is_some() {
            reader.read_line(&mut line).ok()?; // +OK to AUTH
            line.clear();
        }
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end().to_string();
        if let Some(len) = line.strip_prefix('$') {
            let Ok(len) = len.parse::<usize>() else {
                return Some(line); // $-1: nil
            };
            let mut body = vec![0u8; len + 2];
            reader.read_exact(&mut body).ok()?;
            body.truncate(len);
            return Some(String::from_utf8_lossy(&body).into_owned());
        }
        Some(line)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped server cannot die of SIGKILL until it runs again.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A directory of component files, removed when dropped.
pub struct Components {
    pub dir: PathBuf,
}

impl Components {
    pub fn new() -> Components {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dlockd-components-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Components { dir }
    }

    /// Adds a `lock.redis` component `name` on `host` with extra metadata pairs.
    pub fn redis(self, name: &str, host: &str, extra: &[(&str, &str)]) -> Components {
        let mut text = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  \
             type: lock.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \
             \"{host}\"\n"
        );
        for (k, v) in extra {
            text.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
        }
        self.file(&format!("{name}.yaml"), &text)
    }

    pub fn file(self, file: &str, text: &str) -> Components {
        std::fs::write(self.dir.join(file), text).expect("write a component file");
        self
    }

    pub fn arg(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for Components {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server --sentinel` watching one master (`mymaster`, a quorum of one), stopped when
/// dropped. It calls the master down after 3 s without an answer: shorter, a busy machine's
/// slow answer can start a failover while the master lives (seen at 1.5 s with a whole test
/// suite running on 2 cores), and the old master, turned replica, drops what the test wrote
/// to it.
pub struct TestSentinel {
    pub port: u16,
    child: std::process::Child,
    _dir: Components,
}

impl TestSentinel {
    /// Starts it, and returns once it names the master on `master_port`.
    pub fn start(master_port: u16) -> TestSentinel {
        let port = free_port();
        let dir = Components::new();
        let conf = dir.dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 3000\n\
                 sentinel failover-timeout mymaster 6000\n",
                dir.arg()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel runs");
        let sentinel = TestSentinel {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sentinel.master() != Some(format!("127.0.0.1:{master_port}")) {
            assert!(Instant::now() < deadline, "the sentinel did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    /// The master it names now, as `ip:port`.
    pub fn master(&self) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"SENTINEL get-master-addr-by-name mymaster\r\n")
            .ok()?;
        let mut reply = [0u8; 256];
        let n = s.read(&mut reply).ok()?;
        let text = String::from_utf8_lossy(&reply[..n]).into_owned();
        let lines: Vec<&str> = text.split("\r\n").collect();
        // *2 / $len / ip / $len / port
        (lines.len() >= 5).then(|| format!("{}:{}", lines[2], lines[4]))
    }
}

impl Drop for TestSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
