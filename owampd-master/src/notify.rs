//! systemd's readiness protocol (sd_notify(3)), without libsystemd: when the service
//! manager sets `NOTIFY_SOCKET`, the master sends one datagram `READY=1` (with
//! `MAINPID=`) once it listens, has written its pid file and is confined, and
//! `STOPPING=1` when it starts to shut down. A `Type=notify` unit then knows the
//! daemon is ready without a pid file or a fork.
//!
//! The socket is connected at start, before the sandbox, so that afterwards only a
//! `send` on an open descriptor is needed (the master's seccomp filter allows it, as it
//! does for the syslog socket).

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{NOTIFY_SOCKET_ENV}={value:?}: not an absolute path nor an @abstract name")]
    BadAddress { value: String },
    #[error("{NOTIFY_SOCKET_ENV}={value:?}: {source}")]
    Connect {
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sending {what} to the service manager: {source}")]
    Send {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A datagram socket connected to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
}

/// `NOTIFY_SOCKET`'s value as a socket address: a file system path, or `@name` for
/// Linux's abstract namespace (sd_notify(3) accepts both).
fn address(value: &OsStr) -> Option<SocketAddr> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value).ok(),
        Some(b'@') if bytes.len() > 1 => SocketAddr::from_abstract_name(&bytes[1..]).ok(),
        _ => None,
    }
}

/// The `READY=1` datagram for the process `pid` (the one the manager should watch).
fn ready_message(pid: u32) -> String {
    format!("READY=1\nMAINPID={pid}\n")
}

impl Notifier {
    /// `None` when no service manager asked for notifications.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        let Some(value) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
            return Ok(None);
        };
        let shown = value.to_string_lossy().into_owned();
        let addr = address(&value).ok_or_else(|| NotifyError::BadAddress {
            value: shown.clone(),
        })?;
        let connect = || {
            let socket = UnixDatagram::unbound()?;
            socket.connect_addr(&addr)?;
            Ok(socket)
        };
        connect()
            .map(|socket| Some(Notifier { socket }))
            .map_err(|source| NotifyError::Connect {
                value: shown,
                source,
            })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Start-up is complete.
    pub fn ready(&self, pid: u32) -> Result<(), NotifyError> {
        self.send("READY=1", ready_message(pid).as_bytes())
    }

    /// Shutdown has begun (the manager then waits for the exit, not for a restart).
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send("STOPPING=1", b"STOPPING=1\n")
    }

    fn send(&self, what: &'static str, msg: &[u8]) -> Result<(), NotifyError> {
        self.socket
            .send(msg)
            .map(|_| ())
            .map_err(|source| NotifyError::Send { what, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        let p = address(OsStr::new("/run/systemd/notify")).expect("a path");
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let a = address(OsStr::new("@sd-notify/42")).expect("an abstract name");
        assert_eq!(a.as_abstract_name(), Some(&b"sd-notify/42"[..]));
        for bad in ["", "@", "relative/path", "notify"] {
            assert!(address(OsStr::new(bad)).is_none(), "{bad:?}");
        }
        assert!(
            address(&OsString::from("/".repeat(200))).is_none(),
            "too long for sun_path"
        );
    }

    #[test]
    fn ready_names_the_main_pid() {
        assert_eq!(ready_message(4242), "READY=1\nMAINPID=4242\n");
    }

    #[test]
    fn datagrams_reach_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let addr = address(path.as_os_str()).unwrap();
        let socket = UnixDatagram::unbound().unwrap();
        socket.connect_addr(&addr).unwrap();
        let n = Notifier { socket };
        n.ready(7).unwrap();
        n.stopping().unwrap();
        let mut buf = [0u8; 64];
        let len = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nMAINPID=7\n");
        let len = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\n");
    }
}
