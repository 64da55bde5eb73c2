//! Test-session endpoints as seen from a control connection: one `owampd-tester`
//! process per session (design.md "Processes"), behind a small trait so the connection
//! state machine can be tested with in-process fakes.
//!
//! A launcher starts the tester, completes the `Hello`/`Setup`/`Ready` exchange, and
//! from then on forwards every message the tester sends (or its death) as a
//! [`TesterEvent`] tagged with the session's index, into the connection's one event
//! queue. A dead tester ends only its own session (design.md "Processes").

use ipc::tester::{ControlToTester, TesterSetup, TesterToControl};
use std::fs::File;
use std::future::Future;
use std::net::UdpSocket;
use std::pin::Pin;
use thiserror::Error;
use tokio::sync::mpsc;

#[derive(Debug, Error)]
pub enum TesterError {
    #[error("cannot start owampd-tester: {0}")]
    Spawn(String),
    #[error("owampd-tester: {0}")]
    Protocol(String),
    #[error("owampd-tester is gone: {0}")]
    Gone(String),
}

/// Something a tester said or did, after `Ready`.
#[derive(Debug)]
pub enum TesterEvent {
    Msg(TesterToControl),
    /// The channel closed or failed: the process exited or was killed.
    Gone(String),
}

pub type EventTx = mpsc::UnboundedSender<(usize, TesterEvent)>;
pub type EventRx = mpsc::UnboundedReceiver<(usize, TesterEvent)>;

/// Control's handle on a running tester.
pub trait TesterLink: Send + Sync {
    fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError>;
    /// Kill the process now (the session is abandoned).
    fn kill(&mut self);
}

pub type LaunchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn TesterLink>, TesterError>> + Send + 'a>>;

pub trait TesterLauncher: Send + Sync {
    /// Start a tester for `setup` with its bound `socket` (fd 4) and, for a receiver,
    /// its data `file` (fd 5); return once it said `Ready`.
    fn launch(
        &self,
        setup: TesterSetup,
        socket: UdpSocket,
        file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> LaunchFuture<'_>;
}

/// The real thing: fork+exec `owampd-tester` with fds 3 (IPC), 4 (socket), 5 (file).
pub struct ProcessLauncher {
    pub tester_path: std::path::PathBuf,
    /// Passed as `OWAMPD_SECCOMP_LOG=1`: the tester enters its sandbox before it
    /// reads its first message, so this cannot wait for `Setup`.
    pub seccomp_log_only: bool,
}

pub mod process {
    use super::*;
    use ipc::Channel;
    use ipc::fds::{DATA_FILE_FD, IPC_FD, TEST_SOCKET_FD};
    use ipc::tester::PROTOCOL_VERSION;
    use std::ffi::OsString;
    use std::os::fd::OwnedFd;
    use std::process::Child;
    use std::sync::{Arc, Mutex};
    use tokio::io::unix::AsyncFd;

    pub(super) struct ProcessLink {
        chan: Arc<AsyncFd<Channel>>,
        child: Arc<Mutex<Option<Child>>>,
    }

    impl TesterLink for ProcessLink {
        fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError> {
            self.chan
                .get_ref()
                .send(msg, &[])
                .map_err(|e| TesterError::Gone(e.to_string()))
        }
        fn kill(&mut self) {
            if let Some(c) = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                let _ = c.kill();
            }
        }
    }

    impl Drop for ProcessLink {
        fn drop(&mut self) {
            // Closing our end makes a live tester see EOF and exit; reap it off-thread.
            let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(mut c) = child
                && let Ok(None) = c.try_wait()
            {
                let _ = std::thread::Builder::new()
                    .name("reap-tester".into())
                    .spawn(move || {
                        // Give it a moment to finish on its own, then insist.
                        for _ in 0..50 {
                            if let Ok(Some(_)) = c.try_wait() {
                                return;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        let _ = c.kill();
                        let _ = c.wait();
                    });
            }
        }
    }

    /// Register a channel with the runtime.
    // `AsyncFd::new` is deprecated in favour of the `unsafe` `register` (tokio #8587: a
    // type that can swap or close its fd behind the reactor's back is unsound). Channel
    // owns its fd (an OwnedFd it never replaces), so `new` is sound for it, and this
    // crate forbids `unsafe`.
    #[allow(deprecated)]
    pub fn async_channel(c: Channel) -> std::io::Result<AsyncFd<Channel>> {
        AsyncFd::new(c)
    }

    /// One message from an async channel (with any fds that came with it).
    pub async fn recv_any<T: serde::de::DeserializeOwned>(
        chan: &AsyncFd<Channel>,
    ) -> Result<ipc::Received<T>, ipc::IpcError> {
        loop {
            let mut guard = chan.readable().await.map_err(|e| ipc::IpcError::Sys {
                op: "poll",
                source: nix_errno(&e),
            })?;
            match chan.get_ref().try_recv::<T>() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => guard.clear_ready(),
                Err(e) => return Err(e),
            }
        }
    }

    fn nix_errno(e: &std::io::Error) -> nix::errno::Errno {
        nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
    }

    async fn recv(chan: &AsyncFd<Channel>) -> Result<TesterToControl, TesterError> {
        match recv_any::<TesterToControl>(chan).await {
            Ok(r) => Ok(r.msg),
            Err(ipc::IpcError::Closed) => Err(TesterError::Gone("channel closed".into())),
            Err(e) => Err(TesterError::Protocol(e.to_string())),
        }
    }

    pub(super) async fn launch(
        l: &ProcessLauncher,
        setup: TesterSetup,
        socket: UdpSocket,
        file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> Result<Box<dyn TesterLink>, TesterError> {
        let spawn_err = |e: &dyn std::fmt::Display| TesterError::Spawn(e.to_string());
        let (ours, theirs) = Channel::pair().map_err(|e| spawn_err(&e))?;
        let mut fds: Vec<(OwnedFd, i32)> = vec![
            (theirs.into_owned(), IPC_FD),
            (OwnedFd::from(socket), TEST_SOCKET_FD),
        ];
        if let Some(f) = file {
            fds.push((OwnedFd::from(f), DATA_FILE_FD));
        }
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        if l.seccomp_log_only {
            env.push(("OWAMPD_SECCOMP_LOG".into(), "1".into()));
        }
        let child = ipc::spawn::spawn_child(&l.tester_path, "owampd-tester", &[], &env, fds)
            .map_err(|e| TesterError::Spawn(format!("{}: {e}", l.tester_path.display())))?;
        let child = Arc::new(Mutex::new(Some(child)));
        ours.set_nonblocking(true).map_err(|e| spawn_err(&e))?;
        let chan = Arc::new(async_channel(ours).map_err(|e| spawn_err(&e))?);
        let mut link = ProcessLink {
            chan: chan.clone(),
            child,
        };
        link.send(&ControlToTester::Hello {
            version: PROTOCOL_VERSION,
        })?;
        link.send(&ControlToTester::Setup(Box::new(setup)))?;
        match recv(&chan).await? {
            TesterToControl::Hello { version } if version == PROTOCOL_VERSION => {}
            TesterToControl::Hello { version } => {
                link.kill();
                return Err(TesterError::Protocol(format!(
                    "IPC version {version}, ours {PROTOCOL_VERSION}"
                )));
            }
            other => {
                link.kill();
                return Err(TesterError::Protocol(format!(
                    "expected Hello, got {other:?}"
                )));
            }
        }
        loop {
            match recv(&chan).await? {
                TesterToControl::Ready => break,
                TesterToControl::Log(l) => {
                    let _ = events.send((index, TesterEvent::Msg(TesterToControl::Log(l))));
                }
                TesterToControl::Finished(rep) => {
                    // It could not set up the session.
                    link.kill();
                    return Err(TesterError::Protocol(format!("{:?}", rep.outcome)));
                }
                other => {
                    link.kill();
                    return Err(TesterError::Protocol(format!(
                        "expected Ready, got {other:?}"
                    )));
                }
            }
        }
        // From now on every message is an event of this session.
        tokio::spawn(async move {
            loop {
                match recv(&chan).await {
                    Ok(m) => {
                        if events.send((index, TesterEvent::Msg(m))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = events.send((index, TesterEvent::Gone(e.to_string())));
                        return;
                    }
                }
            }
        });
        Ok(Box::new(link))
    }
}

impl TesterLauncher for ProcessLauncher {
    fn launch(
        &self,
        setup: TesterSetup,
        socket: UdpSocket,
        file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> LaunchFuture<'_> {
        Box::pin(process::launch(self, setup, socket, file, index, events))
    }
}
