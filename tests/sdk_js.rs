//! The official Dapr JavaScript SDK (`@dapr/dapr`, pinned in tests/js/package-lock.json) drives
//! the real `dlockd` binary, over HTTP and over gRPC: the suites under tests/js run with
//! `node --test` against a server started here on free loopback ports, which they find in
//! `DAPR_HTTP_PORT` and `DAPR_GRPC_PORT`, as a Dapr application finds its sidecar. Any failing
//! case fails this test with the suite's output.
//!
//! Needs Node.js 18 or newer (`node` and `npm` on PATH). The first run, and any run after
//! tests/js/package.json or package-lock.json changed, runs `npm ci` in tests/js (it reaches the
//! npm registry); later runs reuse tests/js/node_modules.

#[path = "common/sdk.rs"]
mod sdk;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sdk::{post_once, readme_example, run_bounded, InstallLock, Server};

/// Oldest Node.js the SDK supports (its `engines` field says >= 18).
const NODE_MAJOR_MIN: u32 = 18;
/// Bound on `npm ci`: it downloads about 140 packages.
const NPM_CI_LIMIT: Duration = Duration::from_secs(300);
/// Bound on one `node --test` run; each suite takes 3 to 9 s (less when run alone).
const SUITE_LIMIT: Duration = Duration::from_secs(60);
/// The token the token suites' servers and clients share.
const API_TOKEN: &str = "secret";
/// The app id the gRPC suite's server reports in GetMetadata (tests/js/grpc.test.mjs).
const GRPC_APP_ID: &str = "checkout";
/// Written into node_modules after a successful `npm ci`: the manifest and lock file it
/// installed. node_modules is stale when they no longer match.
const STAMP: &str = "node_modules/.dlockd-npm-ci-stamp";
/// Held (as a directory) while `npm ci` runs.
const INSTALL_LOCK: &str = ".npm-ci.lock";

// Without a token, the lock and unlock outcomes, the error answers, expiry and the race
// (tests/js/lock.test.mjs). The second store's name has a space, so that the SDK's
// percent-encoded store path is exercised.
#[test]
fn sdk_lock_suite() {
    node_modules_ready();
    let server = Server::start(&["--store", "lockstore", "--store", "orders store"], None);
    run_suite("lock.test.mjs", &server, None);
}

// With DAPR_API_TOKEN=secret on both sides, and a client without it (tests/js/token.test.mjs).
#[test]
fn sdk_api_token_suite() {
    node_modules_ready();
    let server = Server::start(&["--store", "lockstore"], Some(API_TOKEN));
    run_suite("token.test.mjs", &server, Some(API_TOKEN));
}

// Over gRPC (the SDK's CommunicationProtocolEnum.GRPC client), without a token: the start-up
// GetMetadata, health and metadata, every lock and unlock outcome, the errors as ConnectError,
// expiry, races, the same locks as an HTTP client, and the SDK's distributed-lock example
// (tests/js/grpc.test.mjs). The stores are those of the HTTP suite; the app id is checked.
#[test]
fn sdk_grpc_lock_suite() {
    node_modules_ready();
    let server = Server::start(
        &[
            "--store",
            "lockstore",
            "--store",
            "orders store",
            "--app-id",
            GRPC_APP_ID,
        ],
        None,
    );
    assert!(server.grpc_port.is_some(), "dlockd started without gRPC");
    run_suite("grpc.test.mjs", &server, None);
}

// Over gRPC with DAPR_API_TOKEN=secret on both sides, and clients without it or with another:
// the start-up failure, and daprd's UNAUTHENTICATED answer with its ErrorInfo
// (tests/js/grpc-token.test.mjs).
#[test]
fn sdk_grpc_token_suite() {
    node_modules_ready();
    let server = Server::start(&["--store", "lockstore"], Some(API_TOKEN));
    assert!(server.grpc_port.is_some(), "dlockd started without gRPC");
    run_suite("grpc-token.test.mjs", &server, Some(API_TOKEN));
}

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

// README's plain-fetch example of acquire, as written there: it waits while another owner
// holds the lock, is granted the moment that owner unlocks, and releases the lock itself.
#[test]
fn readme_fetch_example_waits_for_the_lock() {
    if let Err(why) = check_node() {
        panic!("{why}");
    }
    let server = Server::start(&[], None);
    let lock = |owner: &str| format!(r#"{{"resourceId":"order-42","lockOwner":"{owner}"}}"#);
    let taken = post_once(
        server.port,
        "/v1.0-alpha1/lock/lockstore",
        r#"{"resourceId":"order-42","lockOwner":"worker-a","expiryInSeconds":60}"#,
    );
    assert_eq!(taken, r#"{"success":true}"#);
    let dir = std::env::temp_dir().join(format!("dlockd-readme-js-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let file = dir.join("acquire.mjs");
    std::fs::write(&file, readme_example("acquire-fetch")).expect("the example file");
    let url = format!("http://127.0.0.1:{}", server.port);
    let example = std::thread::spawn(move || {
        let mut node = Command::new("node");
        node.arg(&file).env("DLOCKD_URL", url);
        run_bounded(&mut node, SUITE_LIMIT)
    });
    let holder = "/v1.0-alpha1/lock/lockstore/holder";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !post_once(server.port, holder, &lock("")).ends_with(r#""waiters":1}"#) {
        assert!(Instant::now() < deadline, "the example never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    let released = post_once(
        server.port,
        "/v1.0-alpha1/unlock/lockstore",
        &lock("worker-a"),
    );
    assert_eq!(released, r#"{"status":0}"#);
    let (status, output) = example
        .join()
        .expect("the example's thread")
        .unwrap_or_else(|e| panic!("node: {e}"));
    assert!(status.success(), "the example failed ({status}):\n{output}");
    assert!(output.contains("worker-b holds order-42"), "{output}");
    assert!(output.contains("ownedByCaller: true"), "{output}");
    assert!(output.contains("status: 0"), "{output}");
    assert_eq!(
        post_once(server.port, holder, &lock("")),
        r#"{"locked":false}"#
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks node and npm, then runs `npm ci` once per process if node_modules is missing or
/// stale. Both tests call it; the first does the work, the other waits for it.
fn node_modules_ready() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = READY.get_or_init(prepare_node_modules) {
        panic!("{why}");
    }
}

fn prepare_node_modules() -> Result<(), String> {
    check_node()?;
    let dir = js_dir();
    let mut wanted = Vec::new();
    for file in ["package.json", "package-lock.json"] {
        wanted.extend(
            std::fs::read(dir.join(file))
                .map_err(|e| format!("cannot read tests/js/{file}: {e}"))?,
        );
    }
    let fresh = || {
        dir.join("node_modules/@dapr/dapr/package.json").exists()
            && std::fs::read(dir.join(STAMP)).ok().as_deref() == Some(wanted.as_slice())
    };
    if fresh() {
        return Ok(());
    }
    // Several `cargo test` runs may share this checkout: one installs, the others wait for it
    // and then find node_modules fresh.
    let _lock = InstallLock::acquire(dir.join(INSTALL_LOCK), NPM_CI_LIMIT)?;
    if fresh() {
        return Ok(());
    }
    eprintln!("tests/js/node_modules is missing or stale: running npm ci in tests/js");
    // --ignore-scripts: no dependency needs an install script (protobufjs's postinstall only
    // prints a version warning), and none should run on a test machine.
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&dir);
    let (status, output) = run_bounded(&mut npm, NPM_CI_LIMIT)
        .map_err(|e| format!("npm ci in tests/js: {e}{}", install_node_hint()))?;
    if !status.success() {
        return Err(format!(
            "npm ci in tests/js failed ({status}); it needs the npm registry:\n{output}"
        ));
    }
    std::fs::write(dir.join(STAMP), &wanted).map_err(|e| format!("writing {STAMP}: {e}"))?;
    Ok(())
}

fn install_node_hint() -> String {
    format!(
        "\nThe JavaScript SDK suite needs Node.js {NODE_MAJOR_MIN} or newer with npm on PATH: \
         install it (https://nodejs.org/ or the distribution's nodejs and npm packages)."
    )
}

/// Fails with a message saying what to install when node or npm is absent or node too old.
fn check_node() -> Result<(), String> {
    let version = |tool: &str| -> Result<String, String> {
        let out = Command::new(tool).arg("--version").output().map_err(|e| {
            format!(
                "`{tool} --version` could not run: {e}{}",
                install_node_hint()
            )
        })?;
        if !out.status.success() {
            return Err(format!("`{tool} --version` failed{}", install_node_hint()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let node = version("node")?;
    version("npm")?;
    let major: Option<u32> = node
        .strip_prefix('v')
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok());
    match major {
        Some(m) if m >= NODE_MAJOR_MIN => Ok(()),
        _ => Err(format!("node {node} is too old{}", install_node_hint())),
    }
}

/// Runs one suite file against `server`; fails with its output if any case fails.
fn run_suite(file: &str, server: &Server, api_token: Option<&str>) {
    let mut node = Command::new("node");
    node.args(["--test", "--test-reporter=spec", file])
        .current_dir(js_dir())
        .env("DAPR_HTTP_PORT", server.port.to_string())
        // The SDK prefers DAPR_HTTP_ENDPOINT and DAPR_GRPC_ENDPOINT to the ports when set.
        .env_remove("DAPR_HTTP_ENDPOINT")
        .env_remove("DAPR_GRPC_ENDPOINT")
        .env_remove("DAPR_GRPC_PORT")
        .env_remove("DAPR_API_TOKEN");
    if let Some(grpc_port) = server.grpc_port {
        node.env("DAPR_GRPC_PORT", grpc_port.to_string());
    }
    if let Some(token) = api_token {
        node.env("DAPR_API_TOKEN", token);
    }
    let started = Instant::now();
    let (status, output) =
        run_bounded(&mut node, SUITE_LIMIT).unwrap_or_else(|e| panic!("node --test {file}: {e}"));
    assert!(
        status.success(),
        "the JS SDK suite {file} failed ({status}):\n{output}\n-- dlockd's output:\n{}",
        server.log.lock().unwrap()
    );
    println!("{output}\n{file}: {:.1} s", started.elapsed().as_secs_f64());
}
