//! The Unix domain sockets of `--unix-domain-socket`: each path is served by one process.
//!
//! A socket file outlives a process that is killed, so the bind cannot be the check it is for
//! TCP (`listen.rs`): binding a path that exists fails whether or not anything listens there.
//! Each socket is guarded instead by a lock file beside it, `PATH.lock`, which dlockd holds
//! (an exclusive `flock`) for as long as it serves the socket; the kernel lets it go when the
//! process ends, however it ends. Holding it, dlockd knows that no other dlockd binds the
//! path meanwhile, and looks at what is there:
//!
//! - nothing: the path is bound;
//! - a socket something accepts on (a connect is not refused): another server, which may take
//!   no such lock (daprd does not): the start stops, "address in use";
//! - a socket nothing accepts on (a connect is refused): left by a process that ended, so it
//!   is removed and the path bound;
//! - anything else (a file, a directory): the start stops; only sockets are ever removed.
//!
//! The socket gets `--unix-socket-mode` before it listens, so no client connects to it under
//! the umask's mode. A clean stop removes the socket file, if it is still the one bound here;
//! the lock file stays, since removing it would let two starts lock two different files.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions, TryLockError};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::listen::{BindError, BACKLOG};

/// A socket file bound by this process: removed when this is dropped (at a clean stop, or a
/// start that fails later), unless another file has taken its path since.
#[derive(Debug)]
pub(super) struct SocketFile {
    path: PathBuf,
    /// The bound file's device and inode.
    id: (u64, u64),
    /// Held, and locked, for as long as the socket is served.
    _lock: File,
}

impl SocketFile {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            // An inode number is reused once freed: only a socket is ever removed.
            if meta.file_type().is_socket() && (meta.dev(), meta.ino()) == self.id {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds a listening Unix socket at `path` with permission bits `mode`, non-blocking, as
/// the module says: a stale socket file is replaced, a live one or any other file stops the
/// start. `flag` names the knob in a refusal.
pub(super) fn bind_unix(
    flag: &'static str,
    path: &Path,
    mode: u32,
) -> Result<(UnixListener, SocketFile), BindError> {
    let refuse = |error: io::Error| BindError {
        flag,
        addr: path.display().to_string(),
        error,
    };
    let lock = lock(path).map_err(refuse)?;
    clear(path).map_err(refuse)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(refuse)?;
    socket.set_nonblocking(true).map_err(refuse)?;
    socket
        .bind(&SockAddr::unix(path).map_err(refuse)?)
        .map_err(refuse)?;
    let file = || -> io::Result<SocketFile> {
        fs::set_permissions(path, Permissions::from_mode(mode))?;
        let meta = fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            _lock: lock,
        })
    };
    // From here on a failure removes the file it bound (`SocketFile`'s drop).
    let file = file().map_err(|e| {
        let _ = fs::remove_file(path);
        refuse(e)
    })?;
    socket.listen(BACKLOG).map_err(refuse)?;
    Ok((socket.into(), file))
}

/// Opens `PATH.lock` and takes its lock without waiting: held elsewhere, another dlockd
/// serves the path.
fn lock(path: &Path) -> io::Result<File> {
    let mut name = OsString::from(path.as_os_str());
    name.push(".lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&name)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("its lock file {}: {e}", Path::new(&name).display()),
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "in use by another dlockd",
        )),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Makes way for the bind, under the lock: removes a socket file nothing listens on, and
/// refuses a live socket or a file of another kind.
fn clear(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is there; remove it or choose another directory",
        ));
    }
    if listens(path)? {
        return Err(io::ErrorKind::AddrInUse.into());
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether something accepts connections on the socket file at `path`. The connect does not
/// block: a listener whose queue is full is still a listener.
fn listens(path: &Path) -> io::Result<bool> {
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(false),
        // Removed meanwhile: nothing to clear.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dlockd-unix-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    fn connects(path: &Path) -> bool {
        std::os::unix::net::UnixStream::connect(path).is_ok()
    }

    // A bound socket has the mode asked for and accepts; a second bind of its path while it
    // is held is refused as an address in use; once dropped, its file is gone.
    #[test]
    fn a_bound_socket_has_its_mode_and_is_held() {
        let dir = dir("held");
        let path = dir.join("dapr-app-http.socket");
        let (listener, file) = bind_unix("-u", &path, 0o640).expect("bind");
        let meta = fs::symlink_metadata(&path).expect("stat");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert!(connects(&path));
        let err = bind_unix("-u", &path, 0o660).expect_err("held");
        assert_eq!(err.error.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("-u {}: address in use", path.display())),
            "{err}"
        );
        drop(listener);
        drop(file);
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "the socket file is removed"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    // A socket file nothing listens on is replaced; one that another process's socket (here
    // a plain listener, which takes no lock) listens on is refused and left alone; a file of
    // another kind is refused and left alone.
    #[test]
    fn stale_sockets_are_replaced_and_live_ones_refused() {
        let dir = dir("stale");
        let stale = dir.join("stale.socket");
        drop(UnixListener::bind(&stale).expect("bind"));
        assert!(fs::symlink_metadata(&stale).is_ok(), "std leaves the file");
        let (_listener, _file) = bind_unix("-u", &stale, 0o660).expect("stale is replaced");
        assert!(connects(&stale));

        let live = dir.join("live.socket");
        let theirs = UnixListener::bind(&live).expect("bind");
        let err = bind_unix("-u", &live, 0o660).expect_err("live");
        assert_eq!(err.error.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(connects(&live), "their socket is untouched");
        drop(theirs);

        let plain = dir.join("plain.socket");
        fs::write(&plain, b"data").expect("write");
        let err = bind_unix("-u", &plain, 0o660).expect_err("not a socket");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(fs::read(&plain).expect("read"), b"data");
        let _ = fs::remove_dir_all(&dir);
    }

    // A dropped SocketFile leaves alone a file that took its path since.
    #[test]
    fn a_stop_removes_only_its_own_file() {
        let dir = dir("own");
        let path = dir.join("s.socket");
        let (listener, file) = bind_unix("-u", &path, 0o660).expect("bind");
        drop(listener);
        fs::remove_file(&path).expect("rm");
        fs::write(&path, b"someone else's").expect("write");
        drop(file);
        assert_eq!(fs::read(&path).expect("read"), b"someone else's");
        let _ = fs::remove_dir_all(&dir);
    }
}
