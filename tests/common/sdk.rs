//! What the official-SDK suites share (tests/sdk_js.rs, tests/sdk_python.rs): the real binary
//! on free loopback ports, a bounded run of a suite with its output, and a lock around a
//! one-time install of the SDK.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bound on the server's start-up lines.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A directory whose creation is the lock around an install, removed when dropped. One older
/// than `limit` was left by a killed run and is taken over.
pub struct InstallLock(PathBuf);

impl InstallLock {
    pub fn acquire(path: PathBuf, limit: Duration) -> Result<InstallLock, String> {
        let deadline = Instant::now() + limit + Duration::from_secs(10);
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(InstallLock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default());
                    if matches!(age, Ok(age) if age > limit) {
                        let _ = std::fs::remove_dir(&path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(format!("{} is still held", path.display()));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(format!("creating {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The real binary on a free loopback port, killed when dropped so that a failing test
/// leaves nothing behind. Its output is kept for the failure message.
pub struct Server {
    child: Child,
    /// The HTTP port; 0 when the HTTP API is on a Unix socket (see `http_socket`).
    pub port: u16,
    /// The gRPC port from the start-up lines, unless gRPC is off or on a Unix socket.
    pub grpc_port: Option<u16>,
    /// With `--unix-domain-socket`: the HTTP and gRPC sockets the start-up lines name.
    pub http_socket: Option<PathBuf>,
    pub grpc_socket: Option<PathBuf>,
    /// The admin listener's port, unless it is off.
    pub metrics_port: Option<u16>,
    pub log: Arc<Mutex<String>>,
    drains: Vec<JoinHandle<()>>,
}

impl Server {
    pub fn start(args: &[&str], api_token: Option<&str>) -> Server {
        Server::spawn(&["--listen", "127.0.0.1:0"], args, api_token)
    }

    /// Serves the HTTP and gRPC APIs on Unix sockets in `dir`, as app `app_id`, with the
    /// admin listener on an ephemeral port.
    pub fn start_unix(dir: &Path, app_id: &str, args: &[&str]) -> Server {
        let dir = dir.to_str().expect("a UTF-8 path");
        Server::spawn(
            &[
                "--unix-domain-socket",
                dir,
                "--app-id",
                app_id,
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            args,
            None,
        )
    }

    fn spawn(listen: &[&str], args: &[&str], api_token: Option<&str>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlockd"));
        cmd.args(listen)
            .args(["--workers", "2"])
            .args(args)
            .env_remove("DAPR_API_TOKEN")
            .env_remove("DAPR_HTTP_PORT")
            .env_remove("DAPR_GRPC_PORT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = api_token {
            cmd.env("DAPR_API_TOKEN", token);
        }
        let mut child = cmd.spawn().expect("spawn dlockd");
        let log = Arc::new(Mutex::new(String::new()));
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        // Both pipes are drained for the server's whole life: a full pipe would block it.
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let stdout_log = Arc::clone(&log);
        let mut drains = vec![std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = line_tx.send(line.clone());
                stdout_log.lock().unwrap().push_str(&(line + "\n"));
            }
        })];
        drains.push(drain(
            child.stderr.take().expect("stderr"),
            Arc::clone(&log),
        ));
        // Four lines: the address, metrics, restart safety, gRPC.
        let mut lines = Vec::new();
        while lines.len() < 4 {
            match line_rx.recv_timeout(START_LIMIT) {
                Ok(line) => lines.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("dlockd printed no start-up lines: {}", log.lock().unwrap());
                }
            }
        }
        let after = |line: &str, marker: &str| -> Option<String> {
            let rest = line.split(marker).nth(1)?;
            rest.split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .map(str::to_string)
        };
        let path_after = |line: &str, marker: &str| -> Option<PathBuf> {
            let rest = line.split(marker).nth(1)?;
            rest.split_whitespace().next().map(PathBuf::from)
        };
        let http_socket = path_after(&lines[0], "listening on unix:");
        let port = match &http_socket {
            Some(_) => 0,
            None => after(&lines[0], "http://127.0.0.1:")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no port in the start-up line: {}", lines[0])),
        };
        Server {
            child,
            port,
            grpc_port: after(&lines[3], "gRPC on 127.0.0.1:").and_then(|p| p.parse().ok()),
            http_socket,
            grpc_socket: path_after(&lines[3], "gRPC on unix:"),
            metrics_port: after(&lines[1], "metrics on http://127.0.0.1:")
                .and_then(|p| p.parse().ok()),
            log,
            drains,
        }
    }

    /// The process id, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for handle in self.drains.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Runs `cmd` to completion with its stdout and stderr captured together, killing it if it
/// outlives `limit`. It runs in its own process group, so that the kill also reaches what it
/// started (`node --test` runs each file in a child process, npm runs node), which would
/// otherwise hold the pipes open. (So a Ctrl-C does not reach it either; it ends by itself
/// within its own bounds.)
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<(ExitStatus, String), String> {
    let mut child = cmd
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    let output = Arc::new(Mutex::new(String::new()));
    let drains = [
        drain(child.stdout.take().expect("stdout"), Arc::clone(&output)),
        drain(child.stderr.take().expect("stderr"), Arc::clone(&output)),
    ];
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            let output = output.lock().unwrap();
            return Err(format!("killed after {limit:?}; its output:\n{output}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for handle in drains {
        let _ = handle.join();
    }
    let output = output.lock().unwrap().clone();
    Ok((status, output))
}

/// Copies `pipe` into `sink` until it closes.
pub fn drain(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

/// The code block of README.md that follows `<!-- example: NAME -->`: the examples users copy
/// are the ones the tests run.
pub fn readme_example(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let marker = format!("<!-- example: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"))
        .1;
    let fence_open = after.find("```").expect("a code block after the marker");
    let body_start = fence_open + after[fence_open..].find('\n').expect("a fence line") + 1;
    let body_len = after[body_start..]
        .find("\n```")
        .expect("the code block's end");
    after[body_start..body_start + body_len + 1].to_string()
}

/// One POST on a fresh connection to the server's HTTP port; the answer's body.
pub fn post_once(port: u16, path: &str, body: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}
