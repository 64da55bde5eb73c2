//! The master's loop: accept → pass the fd to control → close our copy; supervise
//! control; stop on TERM/INT/HUP (docs/processes.md "Shutdown", protocol.md §7.1). It never reads a
//! byte from a client.

use ipc::spawn::SpawnedChild as Child;
use std::collections::VecDeque;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use config::LogLevel;
use ipc::master::{
    ControlSettings, ControlToMaster, MasterToControl, PROTOCOL_VERSION, check_hello,
};
use ipc::{Channel, IpcError};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::logging::Log;

/// Restart policy for a control process that died: every connection it held is lost,
/// and no new one is served until another runs, so it comes back after `RESTART_DELAY`
/// (the pause keeps a crash loop from spinning). Only a control that dies more than
/// `RESTART_BURST` times within `RESTART_WINDOW` (it crashes at once: a broken
/// installation or a poison input) is restarted every `RESTART_THROTTLED` instead, with a
/// warning that says so, until the window holds fewer deaths again.
const RESTART_DELAY: Duration = Duration::from_millis(500);
const RESTART_BURST: usize = 10;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
const RESTART_THROTTLED: Duration = Duration::from_secs(5);
/// Accepts per wakeup, so a flood cannot starve signals and control's messages.
const ACCEPT_BATCH: usize = 64;
/// How long listeners rest after an accept error (EMFILE, ENFILE, ENOBUFS).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long the first control may take to be ready (sandbox, data store scan) before
/// the daemon's start counts as failed.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// Signals that stop the daemon (protocol.md §7.1; SIGUSR1/2 as the reference).
const STOP_SIGNALS: [Signal; 5] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("signals: {0}")]
    Signals(nix::Error),
    #[error("poll: {0}")]
    Poll(nix::Error),
    #[error("owampd-control speaks another IPC version: {0}")]
    Version(IpcError),
    /// The daemon's first control never became ready: the start failed.
    #[error("{0}")]
    ControlStart(String),
}

/// Block the signals we handle and read them from a signalfd, so that the poll loop
/// sees them in order with everything else (no async handlers). Children get a clean
/// mask and default dispositions from `ipc::spawn`. SIGPIPE is already ignored by the
/// Rust runtime.
pub fn signal_fd() -> Result<SignalFd, SuperviseError> {
    let mut mask = SigSet::empty();
    for s in STOP_SIGNALS {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(SuperviseError::Signals)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(SuperviseError::Signals)
}

/// When to start the next control: fast, unless control died more than `RESTART_BURST`
/// times within `RESTART_WINDOW`.
#[derive(Debug, Default)]
struct RestartLimiter {
    /// The latest deaths, oldest first: at most `RESTART_BURST + 1` within the window.
    deaths: VecDeque<Instant>,
}

/// The delay before the next start, and how many deaths the window holds when the
/// restarts are throttled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restart {
    Fast(Duration),
    Throttled { delay: Duration, deaths: usize },
}

impl RestartLimiter {
    fn after_exit(&mut self, now: Instant) -> Restart {
        while let Some(&first) = self.deaths.front() {
            if now.saturating_duration_since(first) >= RESTART_WINDOW
                || self.deaths.len() > RESTART_BURST
            {
                self.deaths.pop_front();
            } else {
                break;
            }
        }
        self.deaths.push_back(now);
        if self.deaths.len() > RESTART_BURST {
            Restart::Throttled {
                delay: RESTART_THROTTLED,
                deaths: self.deaths.len(),
            }
        } else {
            Restart::Fast(RESTART_DELAY)
        }
    }
}

/// One running control process.
struct Control {
    child: Child,
    /// `None` once control closed its end.
    chan: Option<Channel>,
    hello: bool,
    /// Connections passed and not yet reported done (for `maxcontrolsessions`).
    active: u32,
}

pub struct Master {
    pub log: Log,
    pub listeners: Vec<TcpListener>,
    pub sigfd: SignalFd,
    pub control_path: PathBuf,
    pub settings: ControlSettings,
    control: Option<Control>,
    respawn_at: Option<Instant>,
    restarts: RestartLimiter,
    /// Set on a stop signal: the moment to SIGKILL control.
    kill_at: Option<Instant>,
    /// After an accept error such as EMFILE, listeners rest until then: the pending
    /// connection would make poll return at once, forever.
    accept_pause_until: Option<Instant>,
    /// Until the first control is ready, the daemon is starting: a control that fails
    /// then ends the start instead of being restarted (its reason goes to the
    /// launcher), and this is when waiting for it gives up.
    starting_until: Option<Instant>,
    /// Why the start failed, for [`Master::run`] to return.
    start_failure: Option<String>,
    /// The first control just said `Ready`: [`Master::run`] tells its caller once.
    just_ready: bool,
}

impl Master {
    pub fn new(
        log: Log,
        listeners: Vec<TcpListener>,
        sigfd: SignalFd,
        control_path: PathBuf,
        settings: ControlSettings,
    ) -> Master {
        Master {
            log,
            listeners,
            sigfd,
            control_path,
            settings,
            control: None,
            respawn_at: None,
            restarts: RestartLimiter::default(),
            kill_at: None,
            accept_pause_until: None,
            starting_until: Some(Instant::now() + STARTUP_LIMIT),
            start_failure: None,
            just_ready: false,
        }
    }

    /// Start control: fd 3 is its end of a fresh channel; then Hello and Configure.
    pub fn spawn_control(&mut self) {
        self.respawn_at = None;
        let started = (|| -> Result<Control, String> {
            let (ours, theirs) = Channel::pair().map_err(|e| e.to_string())?;
            let child = ipc::spawn::spawn_child(
                &self.control_path,
                "owampd-control",
                &[],
                &[],
                vec![(theirs.into_owned(), ipc::fds::IPC_FD)],
            )
            .map_err(|e| format!("cannot start {}: {e}", self.control_path.display()))?;
            let mut control = Control {
                child,
                chan: None,
                hello: false,
                active: 0,
            };
            // Non-blocking: a stuck control must never stall the master.
            let sent = ours.set_nonblocking(true).and_then(|()| {
                ours.send(
                    &MasterToControl::Hello {
                        version: PROTOCOL_VERSION,
                    },
                    &[],
                )?;
                ours.send(
                    &MasterToControl::Configure(Box::new(self.settings.clone())),
                    &[],
                )
            });
            match sent {
                Ok(()) => control.chan = Some(ours),
                // It will be reaped and restarted on SIGCHLD.
                Err(e) => {
                    let _ = control.child.kill();
                    self.log
                        .master(LogLevel::Warning, format!("configuring control: {e}"));
                    if self.starting_until.is_some() {
                        self.start_failure
                            .get_or_insert(format!("configuring owampd-control: {e}"));
                    }
                }
            }
            Ok(control)
        })();
        match started {
            Ok(c) => {
                self.log.master(
                    LogLevel::Info,
                    format!("started owampd-control, pid {}", c.child.id()),
                );
                self.control = Some(c);
            }
            Err(e) => {
                self.log.master(LogLevel::Warning, &e);
                self.schedule_respawn(&e);
            }
        }
    }

    /// Control is gone (`why`): start another after the restart delay, unless we are
    /// stopping, or still starting, when the daemon's start has failed.
    fn schedule_respawn(&mut self, why: &str) {
        if self.kill_at.is_some() {
            return;
        }
        if self.starting_until.is_some() {
            self.start_failure.get_or_insert_with(|| why.to_string());
            return;
        }
        let delay = match self.restarts.after_exit(Instant::now()) {
            Restart::Fast(delay) => {
                self.log.master(
                    LogLevel::Warning,
                    format!("restarting owampd-control in {} ms", delay.as_millis()),
                );
                delay
            }
            Restart::Throttled { delay, deaths } => {
                self.log.master(
                    LogLevel::Warning,
                    format!(
                        "owampd-control died {deaths} times within {} s: restarts slowed, \
                         restarting it in {} ms",
                        RESTART_WINDOW.as_secs(),
                        delay.as_millis()
                    ),
                );
                delay
            }
        };
        self.respawn_at = Some(Instant::now() + delay);
    }

    /// Run until stopped. `on_ready` is called once, when the first control is ready
    /// (its data store open): the daemon's start is then complete. `Err` only for what
    /// must end the daemon: an IPC version mismatch (the installation is broken,
    /// respawning cannot help), or a first control that failed to start.
    pub fn run(&mut self, mut on_ready: impl FnMut(&mut Log)) -> Result<(), SuperviseError> {
        loop {
            if let Some(why) = self.start_failure.take() {
                return Err(SuperviseError::ControlStart(why));
            }
            if std::mem::take(&mut self.just_ready) {
                on_ready(&mut self.log);
            }
            let now = Instant::now();
            if self.starting_until.is_some_and(|t| now >= t) && self.kill_at.is_none() {
                self.kill_control("not ready in time");
                return Err(SuperviseError::ControlStart(format!(
                    "owampd-control was not ready within {} s",
                    STARTUP_LIMIT.as_secs()
                )));
            }
            if let Some(kill_at) = self.kill_at {
                if self.control.is_none() {
                    return Ok(());
                }
                if now >= kill_at {
                    self.kill_control("did not stop within dieby");
                    return Ok(());
                }
            } else if self.control.is_none() && self.respawn_at.is_some_and(|t| now >= t) {
                self.spawn_control();
            }
            if self.accept_pause_until.is_some_and(|t| now >= t) {
                self.accept_pause_until = None;
            }
            let deadline = [
                self.kill_at,
                self.respawn_at,
                self.accept_pause_until,
                self.starting_until,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = match deadline {
                Some(t) => PollTimeout::try_from(t.saturating_duration_since(now))
                    .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };

            let (sig_ready, chan_ready, ready_listeners) = {
                let mut fds = vec![PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN)];
                let chan = self.control.as_ref().and_then(|c| c.chan.as_ref());
                if let Some(ch) = chan {
                    fds.push(PollFd::new(ch.as_fd(), PollFlags::POLLIN));
                }
                // Connections wait in the backlog while control is down or stopping.
                let accepting =
                    chan.is_some() && self.kill_at.is_none() && self.accept_pause_until.is_none();
                let first_listener = fds.len();
                if accepting {
                    for l in &self.listeners {
                        fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                    }
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => return Err(SuperviseError::Poll(e)),
                }
                let hit = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                let sig = fds.first().is_some_and(hit);
                let ch = chan.is_some() && fds.get(1).is_some_and(hit);
                let ls: Vec<usize> = (0..self.listeners.len())
                    .filter(|i| fds.get(first_listener + i).is_some_and(hit) && accepting)
                    .collect();
                (sig, ch, ls)
            };
            if sig_ready {
                self.handle_signals();
            }
            if chan_ready {
                self.handle_control_messages()?;
            }
            for i in ready_listeners {
                self.accept_from(i);
            }
        }
    }

    fn handle_signals(&mut self) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
            match Signal::try_from(signo) {
                Ok(Signal::SIGCHLD) => self.reap_control(),
                Ok(s) if STOP_SIGNALS.contains(&s) => self.begin_stop(s),
                _ => {}
            }
        }
    }

    fn begin_stop(&mut self, sig: Signal) {
        if self.kill_at.is_some() {
            return;
        }
        self.log
            .master(LogLevel::Info, format!("{sig}: shutting down"));
        self.kill_at = Some(Instant::now() + Duration::from_secs(u64::from(self.settings.dieby_s)));
        self.respawn_at = None;
        // New connections are refused from now on.
        self.listeners.clear();
        if let Some(ch) = self.control.as_ref().and_then(|c| c.chan.as_ref()) {
            let _ = ch.send(&MasterToControl::Shutdown, &[]);
        }
    }

    fn reap_control(&mut self) {
        let Some(c) = self.control.as_mut() else {
            return;
        };
        match c.child.try_wait() {
            Ok(Some(status)) => {
                if self.starting_until.is_some() {
                    // What it said before exiting (StartFailed, log lines) comes first.
                    let _ = self.handle_control_messages();
                }
                self.control = None;
                if self.kill_at.is_some() {
                    self.log
                        .master(LogLevel::Info, format!("owampd-control stopped ({status})"));
                } else {
                    self.log.master(
                        LogLevel::Warning,
                        format!(
                            "owampd-control died ({status}); its open control connections are lost"
                        ),
                    );
                    self.schedule_respawn(&format!(
                        "owampd-control exited during start-up ({status})"
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => self
                .log
                .master(LogLevel::Warning, format!("waitpid(owampd-control): {e}")),
        }
    }

    fn kill_control(&mut self, why: &str) {
        if let Some(mut c) = self.control.take() {
            self.log
                .master(LogLevel::Warning, format!("killing owampd-control: {why}"));
            let _ = c.child.kill();
            let _ = c.child.wait();
            self.schedule_respawn(&format!("owampd-control killed: {why}"));
        }
    }

    fn handle_control_messages(&mut self) -> Result<(), SuperviseError> {
        loop {
            let Some(c) = self.control.as_mut() else {
                return Ok(());
            };
            let Some(ch) = c.chan.as_ref() else {
                return Ok(());
            };
            // Any fds control sends are closed right here: it has nothing to give us.
            let msg = match ch.try_recv::<ControlToMaster>() {
                Ok(Some(r)) => r.msg,
                Ok(None) => return Ok(()),
                Err(IpcError::Closed) => {
                    // Its exit arrives as SIGCHLD.
                    c.chan = None;
                    return Ok(());
                }
                Err(e) => {
                    self.kill_control(&format!("bad message: {e}"));
                    return Ok(());
                }
            };
            match (c.hello, msg) {
                (false, ControlToMaster::Hello { version }) => {
                    if let Err(e) = check_hello(version) {
                        // Logged by the caller as it ends the daemon.
                        if let Some(mut c) = self.control.take() {
                            let _ = c.child.kill();
                            let _ = c.child.wait();
                        }
                        return Err(SuperviseError::Version(e));
                    }
                    c.hello = true;
                }
                (false, other) => {
                    self.kill_control(&format!("{other:?} before Hello"));
                    return Ok(());
                }
                (true, ControlToMaster::Hello { .. }) => {
                    self.kill_control("second Hello");
                    return Ok(());
                }
                (true, ControlToMaster::Ready) => {
                    self.log.master(LogLevel::Info, "owampd-control ready");
                    if self.starting_until.take().is_some() {
                        self.just_ready = true;
                    }
                }
                (true, ControlToMaster::StartFailed { reason }) => {
                    // It exits next; its SIGCHLD restarts it, or ends a start.
                    self.log.master(LogLevel::Fatal, &reason);
                    if self.starting_until.is_some() {
                        self.start_failure.get_or_insert(reason);
                    }
                }
                (true, ControlToMaster::Log(rec)) => self.log.write(rec.level, &rec.message),
                (true, ControlToMaster::ConnectionDone) => {
                    c.active = c.active.saturating_sub(1);
                }
            }
        }
    }

    /// Accept what is waiting and pass each connection to control with its addresses.
    fn accept_from(&mut self, idx: usize) {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = self.listeners.get(idx) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    self.log.master(LogLevel::Warning, format!("accept: {e}"));
                    self.accept_pause_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            };
            let Some(c) = self.control.as_mut() else {
                return;
            };
            let max = self.settings.maxcontrolsessions;
            if max != 0 && c.active >= max {
                // protocol.md §7.1: over maxcontrolsessions, closed at once without a greeting.
                self.log.master(
                    LogLevel::Info,
                    format!("{peer}: refused, maxcontrolsessions ({max}) reached"),
                );
                continue;
            }
            let Some(ch) = c.chan.as_ref() else {
                return;
            };
            let local = match stream.local_addr() {
                Ok(a) => a,
                Err(e) => {
                    self.log.master(LogLevel::Warning, format!("{peer}: {e}"));
                    continue;
                }
            };
            match ch.send(
                &MasterToControl::Connection { peer, local },
                &[stream.as_fd()],
            ) {
                Ok(()) => c.active = c.active.saturating_add(1),
                Err(e) => {
                    self.log.master(
                        LogLevel::Warning,
                        format!("{peer}: cannot pass to owampd-control: {e}"),
                    );
                }
            }
            // Our copy of the connection closes here (drop of `stream`).
        }
    }

    /// Every fd the loop needs (listeners, signalfd, channel), for the sandbox's fd sweep.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.listeners.iter().map(AsRawFd::as_raw_fd).collect();
        fds.push(self.sigfd.as_raw_fd());
        if let Some(ch) = self.control.as_ref().and_then(|c| c.chan.as_ref()) {
            fds.push(ch.as_raw_fd());
        }
        fds
    }

    /// After the loop: make sure no control is left behind.
    pub fn finish(&mut self) {
        if let Some(mut c) = self.control.take() {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_fast_until_a_burst_then_throttled_until_the_window_clears() {
        let mut r = RestartLimiter::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Control dying every 600 ms: the first RESTART_BURST restarts are fast.
        for i in 0..RESTART_BURST as u64 {
            assert_eq!(
                r.after_exit(at(i * 600)),
                Restart::Fast(RESTART_DELAY),
                "death {i}"
            );
        }
        let next = RESTART_BURST as u64 * 600;
        assert_eq!(
            r.after_exit(at(next)),
            Restart::Throttled {
                delay: RESTART_THROTTLED,
                deaths: RESTART_BURST + 1
            }
        );
        // Still crashing every 5.5 s: throttled while the window holds the burst.
        assert!(matches!(
            r.after_exit(at(next + 5_500)),
            Restart::Throttled { .. }
        ));
        // A quiet minute: fast again.
        let later = next + 5_500 + RESTART_WINDOW.as_millis() as u64;
        assert_eq!(r.after_exit(at(later)), Restart::Fast(RESTART_DELAY));
    }

    #[test]
    fn deaths_far_apart_are_always_restarted_fast() {
        let mut r = RestartLimiter::default();
        let t0 = Instant::now();
        for i in 0..100u64 {
            let when = t0 + Duration::from_secs(i * 7);
            assert_eq!(
                r.after_exit(when),
                Restart::Fast(RESTART_DELAY),
                "death {i}"
            );
            assert!(r.deaths.len() <= RESTART_BURST + 1);
        }
    }
}
