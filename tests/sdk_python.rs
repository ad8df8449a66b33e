//! The official Dapr Python SDK (`dapr` from PyPI, pinned in tests/py/requirements.txt) drives
//! the real `dlockd` binary over gRPC: tests/py/lock_test.py runs against a server started here
//! on free loopback ports, found through `DAPR_HTTP_PORT` (the SDK's start-up wait on
//! `/v1.0/healthz/outbound`) and `DAPR_GRPC_PORT`, as a Dapr application finds its sidecar.
//! Any failing case fails this test with the suite's output.
//!
//! Needs python3 with pip. The first run, and any run after requirements.txt changed, installs
//! the pinned packages into tests/py/.deps (`pip install --target`, from PyPI); later runs reuse
//! them.

#[path = "common/sdk.rs"]
mod sdk;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sdk::{readme_example, run_bounded, InstallLock, Server};

/// Bound on the install: grpcio and protobuf are wheels of a few MB.
const PIP_LIMIT: Duration = Duration::from_secs(300);
/// Bound on one suite run.
const SUITE_LIMIT: Duration = Duration::from_secs(120);
const API_TOKEN: &str = "secret";
/// Written into .deps after a successful install: the requirements it installed.
const STAMP: &str = ".deps/.dlockd-pip-stamp";
const INSTALL_LOCK: &str = ".pip.lock";

// Start-up, every lock and unlock outcome, the context-manager form, errors with daprd's
// gRPC codes, expiry, races with one winner, and HTTP and gRPC clients contending for the same
// locks (tests/py/lock_test.py, LockSuite).
#[test]
fn python_sdk_lock_suite() {
    deps_ready();
    let server = Server::start(&["--store", "lockstore"], None);
    run_suite("lock", &server, None);
}

// DAPR_API_TOKEN on both sides, a client without it or with another, and fencing tokens in
// the response metadata with a data dir (TokenSuite).
#[test]
fn python_sdk_token_suite() {
    deps_ready();
    let dir = std::env::temp_dir().join(format!("dlockd-sdk-python-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().expect("a UTF-8 temp path").to_string();
    let server = Server::start(
        &["--store", "lockstore", "--data-dir", &dir_arg],
        Some(API_TOKEN),
    );
    run_suite("token", &server, Some(API_TOKEN));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

// The lock suite again with dlockd's APIs on Unix sockets (--unix-domain-socket): the SDK's
// gRPC client on DAPR_GRPC_ENDPOINT=unix:///path, its start-up wait on the admin listener's
// health probe, the mixed race's HTTP requests on the HTTP socket.
#[test]
fn python_sdk_lock_suite_over_unix_sockets() {
    deps_ready();
    let dir = std::env::temp_dir().join(format!("dlockd-sdk-python-uds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let server = Server::start_unix(&dir, "pyapp", &["--store", "lockstore"]);
    let grpc = server
        .grpc_socket
        .clone()
        .expect("a gRPC socket in the start-up lines");
    let http = server
        .http_socket
        .clone()
        .expect("an HTTP socket in the start-up lines");
    let metrics = server.metrics_port.expect("the admin listener's port");
    let mut python = suite_command("unix", None);
    python
        .env("DAPR_GRPC_ENDPOINT", format!("unix://{}", grpc.display()))
        .env("DAPR_HTTP_ENDPOINT", format!("http://127.0.0.1:{metrics}"))
        .env("DLOCKD_HTTP_SOCKET", &http);
    run_command(python, "unix", &server);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

// README's Python example of dlockd.v1.LockExtensions, as written there, on stubs generated
// from the shipped proto/dlockd/v1/lock_extensions.proto with grpc_tools.protoc.
#[test]
fn readme_grpc_example_runs_on_stubs_from_the_shipped_proto() {
    deps_ready();
    let server = Server::start(&[], None);
    let grpc_port = server.grpc_port.expect("a gRPC port in the start-up lines");
    let dir = std::env::temp_dir().join(format!("dlockd-readme-py-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut protoc = Command::new("python3");
    protoc
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repo.join("proto"))
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(repo.join("proto/dlockd/v1/lock_extensions.proto"))
        .env("PYTHONPATH", py_dir().join(".deps"));
    let (status, output) = run_bounded(&mut protoc, SUITE_LIMIT).expect("grpc_tools.protoc");
    assert!(status.success(), "protoc failed ({status}):\n{output}");
    let file = dir.join("example.py");
    std::fs::write(&file, readme_example("acquire-grpc-python")).expect("the example file");
    let mut python = Command::new("python3");
    let path = std::env::join_paths([py_dir().join(".deps"), dir.clone()]).expect("a PYTHONPATH");
    python
        .arg(&file)
        .env("PYTHONPATH", path)
        .env("DLOCKD_GRPC", format!("127.0.0.1:{grpc_port}"));
    let (status, output) = run_bounded(&mut python, SUITE_LIMIT).expect("python3 example.py");
    assert!(status.success(), "the example failed ({status}):\n{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines, ["granted", "SUCCESS", "True True True"], "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn py_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py")
}

fn deps_ready() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = READY.get_or_init(install_deps) {
        panic!("{why}");
    }
}

fn install_deps() -> Result<(), String> {
    let dir = py_dir();
    let wanted = std::fs::read(dir.join("requirements.txt"))
        .map_err(|e| format!("cannot read tests/py/requirements.txt: {e}"))?;
    let fresh = || std::fs::read(dir.join(STAMP)).ok().as_deref() == Some(wanted.as_slice());
    if fresh() {
        return Ok(());
    }
    let _lock = InstallLock::acquire(dir.join(INSTALL_LOCK), PIP_LIMIT)?;
    if fresh() {
        return Ok(());
    }
    eprintln!("tests/py/.deps is missing or stale: installing tests/py/requirements.txt");
    let _ = std::fs::remove_dir_all(dir.join(".deps"));
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        ".deps",
        "-r",
        "requirements.txt",
    ])
    .current_dir(&dir);
    let (status, output) = run_bounded(&mut pip, PIP_LIMIT).map_err(|e| {
        format!("pip install in tests/py: {e}; the Python SDK suite needs python3 with pip")
    })?;
    if !status.success() {
        return Err(format!(
            "pip install in tests/py failed ({status}); it needs PyPI:\n{output}"
        ));
    }
    std::fs::write(dir.join(STAMP), &wanted).map_err(|e| format!("writing {STAMP}: {e}"))?;
    Ok(())
}

fn run_suite(suite: &str, server: &Server, api_token: Option<&str>) {
    let grpc_port = server
        .grpc_port
        .unwrap_or_else(|| panic!("no gRPC port in the start-up lines"));
    let mut python = suite_command(suite, api_token);
    python
        .env("DAPR_HTTP_PORT", server.port.to_string())
        .env("DAPR_GRPC_PORT", grpc_port.to_string());
    run_command(python, suite, server);
}

/// `python3 lock_test.py` for `suite`, with none of the SDK's address variables set.
fn suite_command(suite: &str, api_token: Option<&str>) -> Command {
    let mut python = Command::new("python3");
    python
        .arg("lock_test.py")
        .current_dir(py_dir())
        .env("PYTHONPATH", py_dir().join(".deps"))
        .env("DLOCKD_SUITE", suite)
        .env("DAPR_HEALTH_TIMEOUT", "10")
        // The SDK prefers these to the ports when set.
        .env_remove("DAPR_GRPC_ENDPOINT")
        .env_remove("DAPR_HTTP_ENDPOINT")
        .env_remove("DAPR_RUNTIME_HOST")
        .env_remove("DAPR_HTTP_PORT")
        .env_remove("DAPR_GRPC_PORT")
        .env_remove("DAPR_API_TOKEN");
    if let Some(token) = api_token {
        python.env("DAPR_API_TOKEN", token);
    }
    python
}

/// Runs a suite's command; any failing case fails the test with its output and the server's.
fn run_command(mut python: Command, suite: &str, server: &Server) {
    let started = Instant::now();
    let (status, output) = run_bounded(&mut python, SUITE_LIMIT)
        .unwrap_or_else(|e| panic!("python3 lock_test.py ({suite}): {e}"));
    assert!(
        status.success(),
        "the Python SDK suite ({suite}) failed ({status}):\n{output}\n-- dlockd's output:\n{}",
        server.log.lock().unwrap()
    );
    println!(
        "{output}\n{suite}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
