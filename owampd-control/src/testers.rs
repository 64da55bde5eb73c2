//! Test-session endpoints as seen from a control connection: one `owampd-tester`
//! process per session (design.md "Processes"), behind a small trait so the connection
//! state machine can be tested with in-process fakes.
//!
//! A launcher starts the tester and returns at once; the `Hello`/`Setup`/`Ready`
//! exchange completes in the background, and the link reports its outcome through
//! [`TesterLink::take_ready`]. Accept-Session therefore does not wait for the tester to
//! exec and enter its sandbox (about 1 ms, most of an open-mode setup): its socket is
//! already bound, so nothing it should receive is lost, and Start-Sessions waits for
//! every tester to be ready before it answers (a tester that failed makes Start-Ack
//! non-zero). After `Ready`, every message the tester sends (or its death) is forwarded
//! as a [`TesterEvent`] tagged with the session's index, into the connection's one
//! event queue. A dead tester ends only its own session (design.md "Processes").

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

/// Resolves with the outcome of a tester's start-up exchange (`Ready`, or why not).
pub type ReadyRx = tokio::sync::oneshot::Receiver<Result<(), TesterError>>;

/// Control's handle on a running tester.
pub trait TesterLink: Send + Sync {
    fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError>;
    /// Kill the process now (the session is abandoned).
    fn kill(&mut self);
    /// The pending start-up outcome, once: `None` when the link was ready at launch
    /// (or the outcome was already taken).
    fn take_ready(&mut self) -> Option<ReadyRx> {
        None
    }
}

pub type LaunchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn TesterLink>, TesterError>> + Send + 'a>>;

pub trait TesterLauncher: Send + Sync {
    /// Start a tester for `setup` with its bound `socket` (fd 4) and, for a receiver,
    /// its data `file` (fd 5). Returns once it is started; whether it got as far as
    /// `Ready` comes later, through [`TesterLink::take_ready`].
    fn launch(
        &self,
        setup: TesterSetup,
        socket: UdpSocket,
        file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> LaunchFuture<'_>;
}

/// Most messages control takes from one tester over its life (Hello and Ready aside).
/// A well-behaved one sends a few: some log lines, ReceiveDone, Finished. Each message
/// is at most `ipc::channel::MAX_MESSAGE` (64 KiB), so this bounds what one tester can queue in
/// control to 4 MiB.
pub const MAX_TESTER_MESSAGES: usize = 64;

/// The real thing: `owampd-tester` started with posix_spawn (no copy of control's page
/// tables) with fds 3 (IPC), 4 (socket), 5 (file).
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
    use ipc::spawn::SpawnedChild as Child;
    use ipc::tester::PROTOCOL_VERSION;
    use std::ffi::OsString;
    use std::os::fd::OwnedFd;
    use std::sync::{Arc, Mutex};
    use tokio::io::unix::AsyncFd;

    pub(super) struct ProcessLink {
        chan: Arc<AsyncFd<Channel>>,
        child: Arc<Mutex<Option<Child>>>,
        ready: Option<ReadyRx>,
    }

    impl TesterLink for ProcessLink {
        fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError> {
            self.chan
                .get_ref()
                .send(msg, &[])
                .map_err(|e| TesterError::Gone(e.to_string()))
        }
        fn kill(&mut self) {
            kill_child(&self.child);
        }
        fn take_ready(&mut self) -> Option<ReadyRx> {
            self.ready.take()
        }
    }

    /// Kills the child behind `child`, if it is still ours to kill.
    fn kill_child(child: &Mutex<Option<Child>>) {
        if let Some(c) = child.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = c.kill();
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

    /// The SID of a stored Request-Session (octets 48..64, spec §2.1), in hex.
    fn sid_hex_of(request: &[u8]) -> String {
        request
            .get(48..64)
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
            .unwrap_or_default()
    }

    /// RLIMIT_FSIZE for a receiving tester: the v3 header, the records of every packet
    /// four times over (duplicates are recorded again, spec §3.4) and a skip range per
    /// packet, plus 64 KiB. Beyond it writes fail with EFBIG, so a flood of spoofed
    /// duplicates cannot fill the disk.
    fn receive_file_bound(request: &[u8]) -> u64 {
        let npackets = request
            .get(8..12)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0) as u64;
        (40 + request.len() as u64)
            .saturating_add(npackets.saturating_mul(25 * 4 + 8))
            .saturating_add(64 * 1024)
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
        let max_file = if fds.len() > 2 {
            receive_file_bound(&setup.request)
        } else {
            0
        };
        env.push((
            "OWAMPD_TESTER_MAX_FILE_BYTES".into(),
            max_file.to_string().into(),
        ));
        // `ps` shows which session a tester runs (design.md "Habits"): argv[0] carries
        // the SID; PR_SET_NAME (15 bytes) keeps its short `owtest-` form.
        let argv0 = format!("owampd-tester [sid={}]", sid_hex_of(&setup.request));
        // Our end is made ready before the spawn: once the child exists, every error
        // path must go through `link` (whose Drop reaps it), or it stays a zombie.
        ours.set_nonblocking(true).map_err(|e| spawn_err(&e))?;
        let chan = Arc::new(async_channel(ours).map_err(|e| spawn_err(&e))?);
        let child = ipc::spawn::spawn_child(&l.tester_path, &argv0, &[], &env, fds)
            .map_err(|e| TesterError::Spawn(format!("{}: {e}", l.tester_path.display())))?;
        let child = Arc::new(Mutex::new(Some(child)));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut link = ProcessLink {
            chan: chan.clone(),
            child: child.clone(),
            ready: Some(ready_rx),
        };
        // Queued on the socket pair before the tester reads anything: it answers once
        // its sandbox is up.
        link.send(&ControlToTester::Hello {
            version: PROTOCOL_VERSION,
        })?;
        link.send(&ControlToTester::Setup(Box::new(setup)))?;
        tokio::spawn(async move {
            match start_up(&chan, index, &events).await {
                Ok(budget) => {
                    let _ = ready_tx.send(Ok(()));
                    // From now on every message is an event of this session.
                    forward(chan, index, events, child, budget).await;
                }
                Err(e) => {
                    kill_child(&child);
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        Ok(Box::new(link))
    }

    /// The tester's side of the start-up exchange: `Hello` with our version, any log
    /// lines, then `Ready`. Returns what is left of the message budget.
    async fn start_up(
        chan: &AsyncFd<Channel>,
        index: usize,
        events: &EventTx,
    ) -> Result<usize, TesterError> {
        match recv(chan).await? {
            TesterToControl::Hello { version } if version == PROTOCOL_VERSION => {}
            TesterToControl::Hello { version } => {
                return Err(TesterError::Protocol(format!(
                    "IPC version {version}, ours {PROTOCOL_VERSION}"
                )));
            }
            other => {
                return Err(TesterError::Protocol(format!(
                    "expected Hello, got {other:?}"
                )));
            }
        }
        let mut budget = MAX_TESTER_MESSAGES;
        loop {
            match recv(chan).await? {
                TesterToControl::Ready => return Ok(budget),
                TesterToControl::Log(l) => {
                    if budget == 0 {
                        return Err(TesterError::Protocol(format!(
                            "more than {MAX_TESTER_MESSAGES} messages before Ready"
                        )));
                    }
                    budget -= 1;
                    let _ = events.send((index, TesterEvent::Msg(TesterToControl::Log(l))));
                }
                // It could not set up the session.
                TesterToControl::Finished(rep) => {
                    return Err(TesterError::Protocol(format!("{:?}", rep.outcome)));
                }
                other => {
                    return Err(TesterError::Protocol(format!(
                        "expected Ready, got {other:?}"
                    )));
                }
            }
        }
    }

    /// Forward a tester's messages as events of session `index`, at most `budget` of
    /// them. The event queue is unbounded and, between Request-Session and
    /// Start-Sessions, nobody drains it: without the budget a compromised tester could
    /// grow control's memory without limit. Past it the tester is killed and reported
    /// gone (design.md "IPC": a misbehaving tester ends its own session only).
    pub(super) async fn forward(
        chan: Arc<AsyncFd<Channel>>,
        index: usize,
        events: EventTx,
        child: Arc<Mutex<Option<Child>>>,
        mut budget: usize,
    ) {
        loop {
            match recv(&chan).await {
                Ok(_) if budget == 0 => {
                    kill_child(&child);
                    let why = format!("sent more than {MAX_TESTER_MESSAGES} messages: killed");
                    let _ = events.send((index, TesterEvent::Gone(why)));
                    return;
                }
                Ok(m) => {
                    budget -= 1;
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

#[cfg(test)]
mod tests {
    use super::process::{async_channel, forward};
    use super::*;
    use ipc::Channel;
    use ipc::tester::{TesterLog, TesterLogLevel};
    use std::sync::{Arc, Mutex};

    /// A tester that floods its channel gets `budget` messages through, then is
    /// reported gone; control's queue never holds more.
    #[tokio::test]
    async fn a_flooding_tester_is_cut_off_at_its_budget() {
        let (ours, theirs) = Channel::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        let chan = Arc::new(async_channel(ours).expect("register"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let budget = 5;
        let log = TesterToControl::Log(TesterLog {
            level: TesterLogLevel::Info,
            message: "spam".into(),
        });
        for _ in 0..budget + 20 {
            theirs.send(&log, &[]).expect("send");
        }
        forward(chan, 7, tx, Arc::new(Mutex::new(None)), budget).await;
        let mut msgs = 0;
        let mut gone = None;
        while let Ok((index, ev)) = rx.try_recv() {
            assert_eq!(index, 7);
            match ev {
                TesterEvent::Msg(TesterToControl::Log(_)) => msgs += 1,
                TesterEvent::Gone(why) => gone = Some(why),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(msgs, budget);
        let why = gone.expect("a Gone event");
        assert!(why.contains("more than"), "{why}");
    }

    /// Within the budget, messages pass and the channel's close is reported once.
    #[tokio::test]
    async fn a_quiet_tester_is_forwarded_until_it_exits() {
        let (ours, theirs) = Channel::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        let chan = Arc::new(async_channel(ours).expect("register"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        theirs
            .send(&TesterToControl::ReceiveDone, &[])
            .expect("send");
        drop(theirs);
        forward(chan, 1, tx, Arc::new(Mutex::new(None)), 5).await;
        assert!(matches!(
            rx.try_recv(),
            Ok((1, TesterEvent::Msg(TesterToControl::ReceiveDone)))
        ));
        assert!(matches!(rx.try_recv(), Ok((1, TesterEvent::Gone(_)))));
        assert!(rx.try_recv().is_err());
    }
}
