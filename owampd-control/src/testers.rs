//! Test-session endpoints as seen from a control connection: one `owampd-tester`
//! process per session (docs/processes.md), behind a small trait so the connection state
//! machine can be tested with in-process fakes.
//!
//! Testers are started by the spawner ([`SpawnerClient`], `ipc::spawner`), the small
//! process control forks before it reads any client byte: a spawn then costs the same
//! whatever control holds, and happens on the spawner's core while control goes on.
//!
//! A launcher returns once the tester is started; the `Hello`/`Setup`/`Ready` exchange
//! completes in the background, and the link reports its outcome through
//! [`TesterLink::take_ready`]. Accept-Session therefore does not wait for the tester to
//! exec and enter its sandbox: its socket is already bound, so nothing it should receive
//! is lost, and Start-Sessions waits for every tester to be ready before it answers (a
//! tester that failed makes Start-Ack non-zero). After `Ready`, every message the tester
//! sends (or its death) is forwarded as a [`TesterEvent`] tagged with the session's
//! index, into the connection's one event queue. A dead tester ends only its own session.

use crate::admission::StartingTesters;
use ipc::Channel;
use ipc::spawner::{Request, SpawnReply};
use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::net::UdpSocket;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tester_ipc::{ControlToTester, MAX_SLOTS_PER_MESSAGE, Setup, TesterToControl, chunks};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

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
pub type ReadyRx = oneshot::Receiver<Result<(), TesterError>>;

/// Control's handle on a running tester.
pub trait TesterLink: Send + Sync {
    /// Sends now; a full channel is an error (for the few small messages of a session).
    fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError>;
    /// Sends, waiting while the channel is full: for a stream of messages (skip
    /// ranges as a peer sends them), so that the tester's pace bounds what control
    /// holds.
    fn send_wait(&mut self, msg: ControlToTester) -> SendFuture<'_> {
        let sent = self.send(&msg);
        Box::pin(std::future::ready(sent))
    }
    /// Kill the process now (the session is abandoned).
    fn kill(&mut self);
    /// The pending start-up outcome, once: `None` when the link was ready at launch
    /// (or the outcome was already taken).
    fn take_ready(&mut self) -> Option<ReadyRx> {
        None
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), TesterError>> + Send + 'a>>;

pub type LaunchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn TesterLink>, TesterError>> + Send + 'a>>;

pub trait TesterLauncher: Send + Sync {
    /// Start a tester for `setup` (its request with every slot: the launcher sends them
    /// in chunks) with its bound `socket` (fd 4) and, for a receiver, its data `file`
    /// (fd 5). Returns once it is started; whether it got as far as `Ready` comes
    /// later, through [`TesterLink::take_ready`].
    fn launch(
        &self,
        setup: Setup,
        socket: UdpSocket,
        file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> LaunchFuture<'_>;

    /// Waits until a new connection may be greeted (see `admission`): while too many
    /// testers are starting, new clients wait before choosing their Start Time. By
    /// default nobody waits.
    fn admit(&self) -> AdmitFuture<'_> {
        Box::pin(std::future::ready(Admitted {
            place: None,
            waited: false,
        }))
    }
}

/// A connection's admission to its greeting.
#[derive(Debug)]
pub struct Admitted {
    /// Its place among the connections about to start testers: held until its first
    /// request has been answered (`None` when the launcher paces nothing).
    pub place: Option<crate::admission::Greeted>,
    /// It had to wait.
    pub waited: bool,
}

/// Resolves once a new connection may be greeted.
pub type AdmitFuture<'a> = Pin<Box<dyn Future<Output = Admitted> + Send + 'a>>;

/// Most messages control takes from one tester over its life (Hello and Ready aside),
/// besides a sender's skip ranges: a well-behaved one sends a few log lines, ReceiveDone,
/// Finished. Each message is at most `ipc::channel::MAX_MESSAGE` (64 KiB).
pub const MAX_TESTER_MESSAGES: usize = 64;

/// How long a tester whose link was dropped may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Register a channel with the runtime.
// `AsyncFd::new` is deprecated in favour of the `unsafe` `register` (tokio #8587: a type
// that can swap or close its fd behind the reactor's back is unsound). Channel owns its
// fd (an OwnedFd it never replaces), so `new` is sound for it, and this crate forbids
// `unsafe`.
#[allow(deprecated)]
pub fn async_channel(c: Channel) -> std::io::Result<AsyncFd<Channel>> {
    AsyncFd::new(c)
}

#[allow(deprecated)]
fn async_pidfd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::new(fd)
}

fn errno_of(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// One message from an async channel (with any fds that came with it).
pub async fn recv_any<T: serde::de::DeserializeOwned>(
    chan: &AsyncFd<Channel>,
) -> Result<ipc::Received<T>, ipc::IpcError> {
    loop {
        let mut guard = chan.readable().await.map_err(|e| ipc::IpcError::Sys {
            op: "poll",
            source: errno_of(&e),
        })?;
        match chan.get_ref().try_recv::<T>() {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => guard.clear_ready(),
            Err(e) => return Err(e),
        }
    }
}

/// One message to an async (non-blocking) channel, waiting while its buffer is full.
pub async fn send_any<T: serde::Serialize>(
    chan: &AsyncFd<Channel>,
    msg: &T,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<(), ipc::IpcError> {
    loop {
        match chan.get_ref().send(msg, fds) {
            Err(ipc::IpcError::Sys {
                source: nix::errno::Errno::EAGAIN,
                ..
            }) => {
                let mut guard = chan.writable().await.map_err(|e| ipc::IpcError::Sys {
                    op: "poll",
                    source: errno_of(&e),
                })?;
                guard.clear_ready();
            }
            other => return other,
        }
    }
}

/// A started process: its pid and a pidfd (pollable: readable once it has exited).
type Spawned = (u32, OwnedFd);

/// Control's end of the channel to its spawner. Requests are sent in order under one
/// lock and the spawner answers them in order, so each reply goes to the oldest
/// request still waiting.
pub struct SpawnerClient {
    chan: Arc<AsyncFd<Channel>>,
    waiting: Mutex<VecDeque<oneshot::Sender<Result<Spawned, String>>>>,
    send_lock: tokio::sync::Mutex<()>,
}

impl SpawnerClient {
    /// Takes over control's end of the spawner's channel (made non-blocking here) and
    /// starts the task that reads the replies. `on_loss` runs once if the spawner goes
    /// away: control cannot start testers without it.
    pub fn start(
        chan: Channel,
        on_loss: impl FnOnce(String) + Send + 'static,
    ) -> std::io::Result<Arc<SpawnerClient>> {
        chan.set_nonblocking(true)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let client = Arc::new(SpawnerClient {
            chan: Arc::new(async_channel(chan)?),
            waiting: Mutex::new(VecDeque::new()),
            send_lock: tokio::sync::Mutex::new(()),
        });
        let reader = client.clone();
        tokio::spawn(async move {
            let why = loop {
                match recv_any::<SpawnReply>(&reader.chan).await {
                    Ok(r) => {
                        let result = match (r.msg, r.fds.into_iter().next()) {
                            (SpawnReply::Spawned { pid }, Some(pidfd)) => Ok((pid, pidfd)),
                            (SpawnReply::Spawned { pid }, None) => {
                                Err(format!("the spawner sent no pidfd for {pid}"))
                            }
                            (SpawnReply::Failed { reason }, _) => Err(reason),
                        };
                        let next = reader.lock_waiting().pop_front();
                        if let Some(tx) = next {
                            let _ = tx.send(result);
                        }
                    }
                    Err(e) => break e.to_string(),
                }
            };
            for tx in reader.lock_waiting().drain(..) {
                let _ = tx.send(Err(format!("the spawner is gone: {why}")));
            }
            on_loss(why);
        });
        Ok(client)
    }

    fn lock_waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, VecDeque<oneshot::Sender<Result<Spawned, String>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the tester with `argv0`, `env` and each `(fd, target)` of `fds`.
    pub async fn spawn(
        &self,
        argv0: String,
        env: Vec<(String, String)>,
        fds: Vec<(OwnedFd, RawFd)>,
    ) -> Result<Spawned, TesterError> {
        let (tx, rx) = oneshot::channel();
        {
            let _order = self.send_lock.lock().await;
            let targets = fds.iter().map(|(_, t)| *t).collect();
            let borrowed: Vec<_> = fds.iter().map(|(f, _)| f.as_fd()).collect();
            self.lock_waiting().push_back(tx);
            let req = Request::Spawn {
                argv0,
                env,
                targets,
            };
            if let Err(e) = send_any(&self.chan, &req, &borrowed).await {
                // Ours is the newest entry: take it back, nobody will answer it.
                self.lock_waiting().pop_back();
                return Err(TesterError::Spawn(format!("spawner: {e}")));
            }
        }
        // Our copies go now; the child has its own.
        drop(fds);
        match rx.await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(why)) => Err(TesterError::Spawn(why)),
            Err(_) => Err(TesterError::Spawn("the spawner is gone".into())),
        }
    }

    /// Asks the spawner to SIGKILL the process behind `pidfd` (control may not signal
    /// a tester itself: Landlock's signal scope, `ipc::spawner`). Best effort.
    pub fn kill(&self, pidfd: &OwnedFd) {
        let _ = self.chan.get_ref().send(&Request::Kill, &[pidfd.as_fd()]);
    }
}

/// The real thing: `owampd-tester` started by the spawner with fds 3 (IPC), 4 (socket),
/// 5 (file).
pub struct ProcessLauncher {
    pub spawner: Arc<SpawnerClient>,
    /// Passed as `OWAMPD_SECCOMP_LOG=1`: the tester enters its sandbox before it
    /// reads its first message, so this cannot wait for `Setup`.
    pub seccomp_log_only: bool,
    /// Testers between spawn and `Ready`: new greetings wait while there are too many.
    pub starting: Arc<StartingTesters>,
}

struct ProcessLink {
    chan: Arc<AsyncFd<Channel>>,
    pidfd: Arc<OwnedFd>,
    spawner: Arc<SpawnerClient>,
    ready: Option<ReadyRx>,
}

impl TesterLink for ProcessLink {
    fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError> {
        self.chan
            .get_ref()
            .send(msg, &[])
            .map_err(|e| TesterError::Gone(e.to_string()))
    }
    fn send_wait(&mut self, msg: ControlToTester) -> SendFuture<'_> {
        Box::pin(async move {
            send_any(&self.chan, &msg, &[])
                .await
                .map_err(|e| TesterError::Gone(e.to_string()))
        })
    }
    fn kill(&mut self) {
        self.spawner.kill(&self.pidfd);
    }
    fn take_ready(&mut self) -> Option<ReadyRx> {
        self.ready.take()
    }
}

impl Drop for ProcessLink {
    fn drop(&mut self) {
        // Closing our end (when the last reference to it goes) makes a live tester see
        // EOF and exit. One that does not within the grace time is killed; its pidfd
        // becomes readable when it exits.
        let pidfd = self.pidfd.clone();
        let spawner = self.spawner.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let Ok(owned) = pidfd.try_clone() else {
                    spawner.kill(&pidfd);
                    return;
                };
                let Ok(fd) = async_pidfd(owned) else {
                    spawner.kill(&pidfd);
                    return;
                };
                if tokio::time::timeout(EXIT_GRACE, fd.readable())
                    .await
                    .is_err()
                {
                    spawner.kill(&pidfd);
                }
            });
        }
    }
}

/// The SID in hex, for `ps` (argv[0]).
fn sid_hex(setup: &Setup) -> String {
    setup.request.sid.to_hex()
}

/// RLIMIT_FSIZE for a receiving tester: the v3 header, the records of every packet
/// four times over (duplicates are recorded again, RFC 4656 §4.2) and a skip range per
/// packet, plus 64 KiB. The kernel's backstop: the tester itself writes at most four
/// records per packet plus 1024 (the engine, at most two plus 1024: it only counts
/// duplicates past its bound), so its file never reaches this and is never failed with
/// EFBIG.
fn receive_file_bound(setup: &Setup) -> u64 {
    let stored = 112 + 16 * u64::from(setup.num_slots) + 16;
    let npackets = u64::from(setup.request.num_packets);
    (40 + stored)
        .saturating_add(npackets.saturating_mul(25 * 4 + 8))
        .saturating_add(64 * 1024)
}

async fn launch(
    l: &ProcessLauncher,
    mut setup: Setup,
    socket: UdpSocket,
    file: Option<File>,
    index: usize,
    events: EventTx,
) -> Result<Box<dyn TesterLink>, TesterError> {
    use ipc::fds::{DATA_FILE_FD, IPC_FD, TEST_SOCKET_FD};
    let spawn_err = |e: &dyn std::fmt::Display| TesterError::Spawn(e.to_string());
    let (ours, theirs) = Channel::pair().map_err(|e| spawn_err(&e))?;
    let mut fds: Vec<(OwnedFd, RawFd)> = vec![
        (theirs.into_owned(), IPC_FD),
        (OwnedFd::from(socket), TEST_SOCKET_FD),
    ];
    let max_file = match file {
        Some(f) => {
            fds.push((OwnedFd::from(f), DATA_FILE_FD));
            receive_file_bound(&setup)
        }
        None => 0,
    };
    let mut env = vec![(
        "OWAMPD_TESTER_MAX_FILE_BYTES".to_owned(),
        max_file.to_string(),
    )];
    if l.seccomp_log_only {
        env.push(("OWAMPD_SECCOMP_LOG".into(), "1".into()));
    }
    // `ps` shows which session a tester runs: argv[0] carries the SID; PR_SET_NAME
    // (15 bytes) keeps its short `owtest-` form.
    let argv0 = format!("owampd-tester [sid={}]", sid_hex(&setup));
    ours.set_nonblocking(true).map_err(|e| spawn_err(&e))?;
    let chan = Arc::new(async_channel(ours).map_err(|e| spawn_err(&e))?);
    // Counted from the spawn request until it is ready or has failed.
    let starting = l.starting.begin();
    let (_pid, pidfd) = l.spawner.spawn(argv0, env, fds).await?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut link = ProcessLink {
        chan: chan.clone(),
        pidfd: Arc::new(pidfd),
        spawner: l.spawner.clone(),
        ready: Some(ready_rx),
    };
    // Queued on the socket pair before the tester reads anything: it answers once its
    // sandbox is up. The slots beyond the first chunk follow the Setup.
    let num_packets = setup.request.num_packets;
    let slots = std::mem::take(&mut setup.request.slots);
    let mut parts = chunks(&slots, MAX_SLOTS_PER_MESSAGE);
    setup.request.slots = parts.next().unwrap_or_default();
    link.send(&ControlToTester::Hello {
        version: tester_ipc::PROTOCOL_VERSION,
    })?;
    send_all(&chan, ControlToTester::Setup(Box::new(setup))).await?;
    for part in parts {
        send_all(&chan, ControlToTester::Slots(part)).await?;
    }
    // A sender skips at most every packet.
    let max_skips = u64::from(num_packets);
    let killer = link.spawner.clone();
    let pidfd = link.pidfd.clone();
    tokio::spawn(async move {
        let started = start_up(&chan, index, &events).await;
        drop(starting);
        match started {
            Ok(left) => {
                let _ = ready_tx.send(Ok(()));
                // From now on every message is an event of this session.
                forward(chan, index, events, left, max_skips).await;
            }
            Err(e) => {
                killer.kill(&pidfd);
                let _ = ready_tx.send(Err(e));
            }
        }
    });
    Ok(Box::new(link))
}

async fn send_all(chan: &AsyncFd<Channel>, msg: ControlToTester) -> Result<(), TesterError> {
    send_any(chan, &msg, &[])
        .await
        .map_err(|e| TesterError::Gone(e.to_string()))
}

async fn recv(chan: &AsyncFd<Channel>) -> Result<TesterToControl, TesterError> {
    match recv_any::<TesterToControl>(chan).await {
        Ok(r) => Ok(r.msg),
        Err(ipc::IpcError::Closed) => Err(TesterError::Gone("channel closed".into())),
        Err(e) => Err(TesterError::Protocol(e.to_string())),
    }
}

/// The tester's side of the start-up exchange: `Hello` with our version, any log lines,
/// then `Ready`. Returns what is left of the message budget.
async fn start_up(
    chan: &AsyncFd<Channel>,
    index: usize,
    events: &EventTx,
) -> Result<usize, TesterError> {
    match recv(chan).await? {
        TesterToControl::Hello { version } if version == tester_ipc::PROTOCOL_VERSION => {}
        TesterToControl::Hello { version } => {
            return Err(TesterError::Protocol(format!(
                "IPC version {version}, ours {}",
                tester_ipc::PROTOCOL_VERSION
            )));
        }
        // It could not set up the session (its sandbox, say).
        TesterToControl::Finished(rep) => {
            return Err(TesterError::Protocol(format!("{:?}", rep.outcome)));
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

/// Forward a tester's messages as events of session `index`: at most `budget` of them,
/// besides a sender's skip ranges, of which at most `max_skips` in all (one per packet
/// at most). The event queue is unbounded and, between Request-Session and
/// Start-Sessions, nobody drains it: without these bounds a compromised tester could
/// grow control's memory without limit. Past them the tester is reported gone, and the
/// session kills it.
pub(crate) async fn forward(
    chan: Arc<AsyncFd<Channel>>,
    index: usize,
    events: EventTx,
    mut budget: usize,
    max_skips: u64,
) {
    let mut skips = 0u64;
    loop {
        match recv(&chan).await {
            Ok(TesterToControl::SenderSkips(v)) => {
                skips = skips.saturating_add(v.len() as u64);
                if skips > max_skips {
                    let why = format!("sent more than {max_skips} skip ranges");
                    let _ = events.send((index, TesterEvent::Gone(why)));
                    return;
                }
                let m = TesterToControl::SenderSkips(v);
                if events.send((index, TesterEvent::Msg(m))).is_err() {
                    return;
                }
            }
            Ok(_) if budget == 0 => {
                let why = format!("sent more than {MAX_TESTER_MESSAGES} messages");
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

impl TesterLauncher for ProcessLauncher {
    fn launch(
        &self,
        setup: Setup,
        socket: UdpSocket,
        file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> LaunchFuture<'_> {
        Box::pin(launch(self, setup, socket, file, index, events))
    }

    fn admit(&self) -> AdmitFuture<'_> {
        Box::pin(async move {
            let (place, waited) = self.starting.admit().await;
            Admitted {
                place: Some(place),
                waited,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tester_ipc::{LogLevel, LogLine};

    /// A tester that floods its channel gets `budget` messages through, then is
    /// reported gone; control's queue never holds more.
    #[tokio::test]
    async fn a_flooding_tester_is_cut_off_at_its_budget() {
        let (ours, theirs) = Channel::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        let chan = Arc::new(async_channel(ours).expect("register"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let budget = 5;
        let log = TesterToControl::Log(LogLine {
            level: LogLevel::Info,
            message: "spam".into(),
        });
        for _ in 0..budget + 20 {
            theirs.send(&log, &[]).expect("send");
        }
        forward(chan, 7, tx, budget, 100).await;
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

    /// Skip ranges pass beside the budget, up to the session's packet count.
    #[tokio::test]
    async fn skip_ranges_are_bounded_by_the_packet_count() {
        let (ours, theirs) = Channel::pair().expect("pair");
        ours.set_nonblocking(true).expect("nonblocking");
        let chan = Arc::new(async_channel(ours).expect("register"));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let range = owamp::SkipRange { first: 0, last: 0 };
        for _ in 0..3 {
            theirs
                .send(&TesterToControl::SenderSkips(vec![range; 40]), &[])
                .expect("send");
        }
        forward(chan, 2, tx, 0, 100).await;
        let mut chunks = 0;
        let mut gone = None;
        while let Ok((_, ev)) = rx.try_recv() {
            match ev {
                TesterEvent::Msg(TesterToControl::SenderSkips(_)) => chunks += 1,
                TesterEvent::Gone(why) => gone = Some(why),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            chunks, 2,
            "80 ranges pass, the next 40 would make 120 > 100"
        );
        assert!(gone.expect("a Gone event").contains("skip ranges"));
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
        forward(chan, 1, tx, 5, 100).await;
        assert!(matches!(
            rx.try_recv(),
            Ok((1, TesterEvent::Msg(TesterToControl::ReceiveDone)))
        ));
        assert!(matches!(rx.try_recv(), Ok((1, TesterEvent::Gone(_)))));
        assert!(rx.try_recv().is_err());
    }
}
