//! `--unix-domain-socket` on the real binary: both APIs on daprd's socket names, the files'
//! mode, curl's `--unix-socket` as a user's check, the files removed on a clean stop and
//! replaced after a kill, and the refusals: a socket another process listens on, a second
//! dlockd on the same directory, no app id. (The contract suite runs over a socket in
//! tests/contract.rs; the Python SDK's gRPC client in tests/sdk_python.rs.)

mod common;
#[path = "common/sdk.rs"]
mod sdk;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{temp_dir, Client};
use sdk::Server;

/// Bound on a stop or a refused start.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn mode_of(path: &Path) -> u32 {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        meta.file_type().is_socket(),
        "{} is a socket",
        path.display()
    );
    meta.permissions().mode() & 0o777
}

fn signal(server: &Server, sig: i32) {
    let pid = i32::try_from(server.pid()).expect("a pid");
    // SAFETY: kill(2) with a pid this test spawned and has not reaped.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Runs the binary with `args` to its (refused) exit: its status code and stderr.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dlockd"))
        .args(args)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env_remove("APP_ID")
        .output()
        .expect("run dlockd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Both APIs on the sockets daprd would name, mode 0660 unless told, answering the lock API
// (by curl --unix-socket, as a user checks it); SIGTERM removes both files.
#[test]
fn both_apis_on_daprds_socket_names_until_a_clean_stop() {
    let dir = temp_dir("uds-bin");
    let mut server = Server::start_unix(&dir, "orders", &["--store", "lockstore"]);
    let http = dir.join("dapr-orders-http.socket");
    let grpc = dir.join("dapr-orders-grpc.socket");
    assert_eq!(server.http_socket.as_deref(), Some(http.as_path()));
    assert_eq!(server.grpc_socket.as_deref(), Some(grpc.as_path()));
    assert_eq!(server.port, 0, "no HTTP port on TCP");
    assert_eq!(server.grpc_port, None, "no gRPC port on TCP");
    assert_eq!(mode_of(&http), 0o660);
    assert_eq!(mode_of(&grpc), 0o660);

    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--unix-socket"])
        .arg(&http)
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"resourceId":"order-1","lockOwner":"worker-a","expiryInSeconds":30}"#,
            "http://localhost/v1.0-alpha1/lock/lockstore",
        ])
        .output()
        .expect("curl runs");
    assert!(curl.status.success(), "{curl:?}");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), r#"{"success":true}"#);
    // The same lock is held for a client of the same socket.
    let mut c = Client::connect_unix(&http);
    assert_eq!(
        c.lock("lockstore", "order-1", "worker-b", 30).body_str(),
        r#"{"success":false}"#
    );
    assert_eq!(
        c.unlock("lockstore", "order-1", "worker-a").body_str(),
        r#"{"status":0}"#
    );
    drop(c);

    signal(&server, libc::SIGTERM);
    let status = server.wait_exit(EXIT_LIMIT).expect("stops on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        !http.exists() && !grpc.exists(),
        "a clean stop removes both sockets"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// After a kill -9 the files stay; the next start finds nothing listening on them, replaces
// them, and serves (with the mode it is told).
#[test]
fn sockets_left_by_a_killed_server_are_replaced() {
    let dir = temp_dir("uds-stale");
    let mut first = Server::start_unix(&dir, "app", &[]);
    let http = first.http_socket.clone().expect("an HTTP socket");
    signal(&first, libc::SIGKILL);
    first.wait_exit(EXIT_LIMIT).expect("killed");
    assert!(http.exists(), "a killed server leaves its socket file");
    assert!(
        std::os::unix::net::UnixStream::connect(&http).is_err(),
        "nothing listens there"
    );
    let second = Server::start_unix(&dir, "app", &["--unix-socket-mode", "0600"]);
    assert_eq!(second.http_socket.as_deref(), Some(http.as_path()));
    assert_eq!(mode_of(&http), 0o600);
    let mut c = Client::connect_unix(&http);
    assert_eq!(c.lock("lockstore", "r", "o", 10).status, 200);
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

// A socket another process listens on stops the start (exit 1) with the path and "address
// in use", and is left alone; so does a second dlockd on the same directory; and an app id
// is required to name the sockets (exit 2).
#[test]
fn a_live_socket_or_a_missing_app_id_stops_the_start() {
    let dir = temp_dir("uds-live");
    let dir_arg = dir.to_str().expect("UTF-8");
    let http = dir.join("dapr-app-http.socket");
    let theirs = std::os::unix::net::UnixListener::bind(&http).expect("bind");
    let (code, stderr) = refused_start(&["-u", dir_arg, "--app-id", "app"]);
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!(
        "--unix-domain-socket {}: address in use (another process listens there)",
        http.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    assert!(
        std::os::unix::net::UnixStream::connect(&http).is_ok(),
        "theirs still listens"
    );
    drop(theirs);
    std::fs::remove_file(&http).expect("rm");

    let running = Server::start_unix(&dir, "app", &[]);
    let (code, stderr) = refused_start(&["-u", dir_arg, "--app-id", "app"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&want), "{stderr}");
    let mut c = Client::connect_unix(&http);
    assert_eq!(
        c.lock("lockstore", "r", "o", 10).status,
        200,
        "the first serves on"
    );
    drop(running);

    // A configuration refused exits 2, as every bad flag does.
    let (code, stderr) = refused_start(&["-u", dir_arg]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs an app id"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
