//! One session of the stream, run by its own thread on its own control connection (the
//! reference opens one per session, two at a time): connect, Request-Session with the
//! start time the stream asks for, the local endpoint (the engine's receiver, or with
//! `-t` its sender), Start-Sessions, then wait without polling for the first of the
//! server's Stop-Sessions, our endpoint's end, or a request to stop. Meanwhile every
//! `-N` sub-session that is due goes to the stream as a sample of the data so far
//! (with `-t` fetched from the server over a second connection, as the reference does).
//! At the end the Stop-Sessions exchange (protocol.md §2.5) and the session's `.owp` file,
//! built in memory, go to the stream in a [`Event::Finished`].
//!
//! The thread reports everything as [`Event`]s; only the stream's thread writes files
//! and prints.

use super::log::Logger;
use super::opts::PowOpts;
use crate::control::{ConnectParams, Control, ControlError};
use crate::endpoints::{
    BoundedRecords, CLOCK_STATUS, RecvResult, SessionSetup, make_sid, spawn_receiver_into,
    spawn_sender, start_time, unrecorded_duplicates,
};
use crate::net::{Family, bind_test_socket, resolve};
use crate::output::SessionData;
use crate::ping::{StopExchange, exchange_stop};
use crate::recvdata::{apply_incomplete, finish_from, session_fields, write_receive_file};
use crate::signals::Request;
use owamp::addr::{link_scope, with_scope};
use owamp::engine::{RecordSink, SessionControl, StopFlag};
use owamp::owp::{FINISHED_INCOMPLETE, FINISHED_NORMAL, SessionHeader};
use owamp::schedule::Schedule;
use owamp::time::{Clock, num64_to_duration};
use owamp::wire::{RequestSession, StopLimits};
use owamp::{AcceptCode, Num64, PacketRecord, Sid, SkipRange, Timestamp};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What every session thread shares: the options and the connection parameters (the
/// pass-phrase is read once, at startup).
pub struct Config {
    pub opts: PowOpts,
    pub params: ConnectParams,
    pub debug_offset: f64,
    pub log: Arc<Logger>,
}

/// When a session should start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// As soon as it can be set up, plus this much (`-z` for the first session).
    Asap { extra: Num64 },
    /// At this time (the end of the previous session), or as soon as possible after it
    /// if it is too near.
    At(Timestamp),
}

/// A session the server accepted and started.
#[derive(Clone, Debug)]
pub struct Started {
    pub sid: Sid,
    pub start: Timestamp,
    /// The start that was asked for, when it could not be kept (too near).
    pub wanted: Option<Timestamp>,
    /// The scheduled send time of the last packet: the next session's start.
    pub end: Timestamp,
    /// The times in each `-N` sub-session's file name: from the previous sub-session's
    /// last packet (the session's start for the first) to its own last packet.
    pub subs: Vec<(Timestamp, Timestamp)>,
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every packet's fate is known: the whole session is saved.
    Complete,
    /// Stopped early at the stream's request: what came so far is saved.
    Interrupted,
    /// The control connection failed before the end: what came so far is saved (only
    /// when we were the receiver; with `-t` the data stays on the server).
    Lost(String),
    /// The server (or our endpoint) reports the session failed: nothing is saved.
    Failed(String),
}

/// A finished session's file.
pub struct SavedSession {
    /// The `.owp` file as it will be written.
    pub owp: Vec<u8>,
    /// The same data, read back.
    pub data: SessionData,
    /// The end time in the file names.
    pub end: Timestamp,
}

/// What session threads tell the stream.
pub enum Event {
    Signal(Request),
    /// The session could not be set up; the next attempt waits for `-I`.
    SetupFailed {
        id: u64,
        attempt: Timestamp,
        error: String,
    },
    Started {
        id: u64,
        info: Started,
    },
    /// Sub-session `index` is due: the data so far.
    Sample {
        id: u64,
        index: u32,
        data: SessionData,
    },
    Finished {
        id: u64,
        ending: Ending,
        saved: Option<SavedSession>,
    },
}

/// Starts the thread of session `id`; `cancel` asks it to stop early.
pub fn spawn(
    cfg: Arc<Config>,
    id: u64,
    at: StartAt,
    cancel: StopFlag,
    events: Sender<Event>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("session-{id}"))
        .spawn(move || {
            let clock = Clock::new(CLOCK_STATUS, cfg.debug_offset);
            let mut w = Worker {
                cfg: &cfg,
                id,
                clock,
                cancel,
                events: &events,
            };
            let last = w.run(at);
            // The stream may be gone already (it does not wait for sessions that had
            // not started when it exits).
            let _ = events.send(last);
        })
}

/// The receive records, shared between the receiver thread and the session's thread
/// (which samples them for sub-session summaries), bounded as owping's are.
#[derive(Clone)]
struct SharedRecords(Arc<Mutex<BoundedRecords>>);

impl SharedRecords {
    fn new(count: u32) -> SharedRecords {
        SharedRecords(Arc::new(Mutex::new(BoundedRecords::new(count))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoundedRecords> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot(&self) -> Vec<PacketRecord> {
        self.lock().recs.clone()
    }

    fn take(self) -> Vec<PacketRecord> {
        std::mem::take(&mut self.lock().recs)
    }
}

impl RecordSink for SharedRecords {
    fn record(&mut self, r: &PacketRecord) -> std::io::Result<()> {
        self.lock().record(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The schedule's times that name files: the session's end (`sched(count − 1)`) and
/// each sub-session's (start, end) as powstream.c computes them.
pub fn schedule_times(
    sid: Sid,
    start: Timestamp,
    opts: &PowOpts,
) -> (Timestamp, Vec<(Timestamp, Timestamp)>) {
    let mut sched = Schedule::new(sid, start, &opts.slots(), opts.count);
    let mut subs = Vec::new();
    let n = opts.sub_session;
    if let Some(nsubs) = opts.count.checked_div(n) {
        let mut from = start;
        for k in 0..nsubs {
            let to = sched.send_time((k + 1) * n - 1).unwrap_or(start);
            subs.push((from, to));
            from = to;
        }
    }
    let end = sched.send_time(opts.count - 1).unwrap_or(start);
    (end, subs)
}

/// The end time of a session cut short (powstream.c `write_session` with a new end):
/// the scheduled send time of the highest seqno in the records, not counting those
/// inside a skip range (past its first seqno, as the reference's test reads), 0 when
/// there is none. `None` when there are no records: nothing is saved then.
pub fn cut_short_end(
    session: &SessionHeader,
    records: &[PacketRecord],
    skips: &[SkipRange],
) -> Option<Timestamp> {
    if records.is_empty() {
        return None;
    }
    let skipped = |seq: u32| skips.iter().any(|s| seq > s.first && seq <= s.last);
    let highest = records
        .iter()
        .map(|r| r.seq)
        .filter(|&s| !skipped(s))
        .max()
        .unwrap_or(0);
    let f = session.fields();
    let mut sched = Schedule::new(f.sid, f.start_time, &f.slots, f.npackets);
    Some(sched.send_time(highest).unwrap_or(f.start_time))
}

/// What ended the wait.
enum Woken {
    /// The server's Stop-Sessions (or its close) is on the connection.
    Server,
    /// Our endpoint is done.
    Local,
    /// The stream asked us to stop.
    Cancelled,
}

struct Worker<'a> {
    cfg: &'a Config,
    id: u64,
    clock: Clock,
    cancel: StopFlag,
    events: &'a Sender<Event>,
}

/// Everything about a running session the wait and the end need.
struct Running {
    ctl: Control,
    req: RequestSession,
    sid: Sid,
    header: SessionHeader,
    started: Started,
    ep_stop: StopFlag,
    done: StopFlag,
    rx: Option<(JoinHandle<RecvResult>, SharedRecords)>,
    tx: Option<JoinHandle<std::io::Result<owamp::engine::SenderReport>>>,
}

impl Worker<'_> {
    fn opts(&self) -> &PowOpts {
        &self.cfg.opts
    }

    fn run(&mut self, at: StartAt) -> Event {
        let attempt = self.clock.now().0;
        let running = match self.setup(at) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Event::Finished {
                    id: self.id,
                    ending: Ending::Interrupted,
                    saved: None,
                };
            }
            Err(error) => {
                return Event::SetupFailed {
                    id: self.id,
                    attempt,
                    error,
                };
            }
        };
        let _ = self.events.send(Event::Started {
            id: self.id,
            info: running.started.clone(),
        });
        self.wait_and_finish(running)
    }

    /// Connect, request, start. `Ok(None)`: cancelled before the session started.
    fn setup(&mut self, at: StartAt) -> Result<Option<Running>, String> {
        let o = self.opts();
        let mut ctl = Control::connect(&self.cfg.params).map_err(|e| match e {
            // The connect error already names the server.
            ControlError::Net(n @ crate::net::NetError::Connect { .. }) => n.to_string(),
            e => format!("control connection to {}: {e}", self.cfg.params.server),
        })?;
        if self.cancel.is_stopped() {
            return Ok(None);
        }
        let now = self.clock.now().0;
        let earliest = start_time(now, ctl.rtt_bound, 1, 0.0);
        let (start, wanted) = match at {
            StartAt::Asap { extra } => (earliest.wrapping_add(extra), None),
            StartAt::At(t) if t >= earliest => (t, None),
            StartAt::At(t) => (earliest, Some(t)),
        };
        let local_ip = ctl.local.ip();
        // Link-local test addresses go through the control connection's interface.
        let scope = link_scope(&ctl.local);
        let peer_ip = if o.testaddr == o.servaddr {
            ctl.peer.ip()
        } else {
            let fam = if local_ip.is_ipv4() {
                Family::V4
            } else {
                Family::V6
            };
            resolve(&o.testaddr, 0, fam)
                .map_err(|e| e.to_string())?
                .first()
                .map_or(ctl.peer.ip(), |a| a.ip())
        };
        let device = self.cfg.params.bind_device.as_deref();
        let udp = bind_test_socket(local_ip, scope, o.ports, device).map_err(|e| e.to_string())?;
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
        let timeout = Num64::from_secs_f64(o.loss_timeout);
        let base = RequestSession {
            conf_sender: !o.sender,
            conf_receiver: o.sender,
            num_packets: o.count,
            sender_port: 0,
            receiver_port: 0,
            sender_addr: peer_ip,
            receiver_addr: local_ip,
            sid: Sid([0; 16]),
            padding: o.padding,
            start_time: start,
            timeout,
            type_p: o.dscp.map_or(0, |d| u32::from(d) << 24),
            slots: o.slots(),
        };
        let req = if o.sender {
            RequestSession {
                sender_port: port,
                sender_addr: local_ip,
                receiver_addr: peer_ip,
                ..base
            }
        } else {
            // As receiver we choose the SID (protocol.md §2.1.4).
            RequestSession {
                receiver_port: port,
                sid: make_sid(local_ip, now),
                ..base
            }
        };
        req.validate_in_mode(Some(ctl.mode))
            .map_err(|p| format!("Invalid test specification: {p}"))?;
        let acc = ctl.request_session(&req).map_err(|e| e.to_string())?;
        let (sid, req) = if o.sender {
            (
                acc.sid,
                RequestSession {
                    receiver_port: acc.port,
                    sid: acc.sid,
                    ..req
                },
            )
        } else {
            let sid = req.sid;
            (
                sid,
                RequestSession {
                    sender_port: acc.port,
                    ..req
                },
            )
        };
        let header =
            SessionHeader::from_fields(&session_fields(&req, sid)).map_err(|e| e.to_string())?;
        let peer = with_scope(SocketAddr::new(peer_ip, acc.port), scope);
        let setup = SessionSetup {
            sid,
            mode: ctl.mode,
            keys: ctl.test_keys(sid),
            padding: o.padding,
            start,
            slots: o.slots(),
            count: o.count,
            timeout,
            debug_offset: self.cfg.debug_offset,
            dscp: o.dscp,
        };
        let (end, subs) = schedule_times(sid, start, o);
        let ep_stop = StopFlag::new();
        let done = StopFlag::new();
        let mut running = Running {
            ctl,
            req,
            sid,
            header,
            started: Started {
                sid,
                start,
                wanted,
                end,
                subs,
            },
            ep_stop,
            done,
            rx: None,
            tx: None,
        };
        if o.sender {
            running.ctl.start_sessions().map_err(|e| e.to_string())?;
            let end_delay = crate::ping::secs(o.end_delay.unwrap_or(1.0));
            running.tx = Some(
                spawn_sender(
                    setup,
                    udp,
                    peer,
                    end_delay,
                    running.ep_stop.clone(),
                    Some(running.done.clone()),
                )
                .map_err(|e| format!("starting the sender thread: {e}"))?,
            );
        } else {
            // Our receiver is ready before Start-Sessions (protocol.md §2.3).
            let sink = SharedRecords::new(o.count);
            let h = spawn_receiver_into(
                setup,
                udp,
                peer,
                running.ep_stop.clone(),
                sink.clone(),
                Some(running.done.clone()),
                SharedRecords::take,
            )
            .map_err(|e| format!("starting the receiver thread: {e}"))?;
            running.rx = Some((h, sink));
            if let Err(e) = running.ctl.start_sessions() {
                running.ep_stop.stop();
                if let Some((h, _)) = running.rx.take() {
                    let _ = h.join();
                }
                return Err(e.to_string());
            }
        }
        Ok(Some(running))
    }

    /// When sub-session `k` is summarised: its last packet's loss timeout plus a margin
    /// for the records to be written (ours within the engine's read interval, at most a
    /// second at low rates; the server's, with `-t`, within about a second, as the
    /// reference allows for).
    fn sample_due(&self, started: &Started, k: usize) -> Option<Timestamp> {
        let (_, last) = started.subs.get(k)?;
        let o = self.opts();
        let margin = if o.sender {
            o.mean_wait.max(1.0) + 2.0
        } else {
            1.5
        };
        Some(
            last.wrapping_add(Num64::from_secs_f64(o.loss_timeout))
                .wrapping_add(Num64::from_secs_f64(margin)),
        )
    }

    fn wait(&mut self, r: &mut Running, fetch: &mut Option<Control>) -> Woken {
        let mut next_sub = 0usize;
        loop {
            if self.cancel.is_stopped() {
                return Woken::Cancelled;
            }
            let now = self.clock.now().0;
            if let Some(due) = self.sample_due(&r.started, next_sub)
                && now >= due
            {
                self.sample(r, next_sub, fetch);
                next_sub += 1;
                continue;
            }
            let timeout = self
                .sample_due(&r.started, next_sub)
                .map(|due| num64_to_duration(due.saturating_sub(now)));
            let (ctl_ready, cancel_ready, done_ready) =
                match wait_readable(&r.ctl, &self.cancel, &r.done, timeout) {
                    Ok(v) => v,
                    // Nothing to wait on: the connection is unusable.
                    Err(_) => return Woken::Server,
                };
            if cancel_ready {
                return Woken::Cancelled;
            }
            if ctl_ready {
                return Woken::Server;
            }
            if done_ready || r.done.is_stopped() {
                return Woken::Local;
            }
        }
    }

    /// Sends sub-session `k`'s data so far to the stream.
    fn sample(&self, r: &Running, k: usize, fetch: &mut Option<Control>) {
        let o = self.opts();
        let n = o.sub_session;
        let k32 = k as u32;
        let data = if let Some((_, sink)) = &r.rx {
            SessionData {
                label: format!("session {}", r.sid.to_hex()),
                session: r.header.clone(),
                finished: 0,
                records: sink.snapshot(),
                skips: Vec::new(),
            }
        } else {
            match self.fetch_range(r.sid, k32 * n, (k32 + 1) * n - 1, fetch) {
                Ok(d) => d,
                Err(e) => {
                    // As the reference: the sub-session is skipped, the session goes on.
                    self.cfg.log.warn(format!(
                        "sub-session {k} of session {}: fetching its records: {e}",
                        r.sid.to_hex()
                    ));
                    *fetch = None;
                    return;
                }
            }
        };
        let _ = self.events.send(Event::Sample {
            id: self.id,
            index: k32,
            data,
        });
    }

    /// Fetch-Session for seqnos `first..=last` over the second connection.
    fn fetch_range(
        &self,
        sid: Sid,
        first: u32,
        last: u32,
        fetch: &mut Option<Control>,
    ) -> Result<SessionData, String> {
        if fetch.is_none() {
            *fetch = Some(Control::connect(&self.cfg.params).map_err(|e| e.to_string())?);
        }
        let Some(ctl) = fetch.as_mut() else {
            return Err("no fetch connection".into());
        };
        let label = format!("session {}", sid.to_hex());
        let mut buf = Vec::new();
        ctl.fetch_range_to(sid, first, last, &mut buf, Path::new(&label))
            .map_err(|e| e.to_string())?;
        SessionData::read(Cursor::new(buf), Path::new(&label)).map_err(|e| e.to_string())
    }

    fn wait_and_finish(&mut self, mut r: Running) -> Event {
        let mut fetch = None;
        let woken = self.wait(&mut r, &mut fetch);
        drop(fetch);
        let o = self.opts();
        let cancelled = matches!(woken, Woken::Cancelled);
        let limits = StopLimits {
            max_sessions: u32::from(!o.sender),
            max_skips: o.count,
        };
        let to_sid = o.sender.then_some(r.sid);
        let ex = exchange_stop(
            &mut r.ctl,
            &self.clock,
            matches!(woken, Woken::Server),
            cancelled,
            &r.ep_stop,
            r.tx.take(),
            to_sid,
            limits,
            o.loss_timeout,
        );
        let (ending, saved) = if o.sender {
            self.finish_sender(&mut r, ex, cancelled)
        } else {
            self.finish_receiver(&mut r, ex, cancelled)
        };
        Event::Finished {
            id: self.id,
            ending,
            saved,
        }
    }

    fn finish_receiver(
        &self,
        r: &mut Running,
        ex: Result<StopExchange, ControlError>,
        cancelled: bool,
    ) -> (Ending, Option<SavedSession>) {
        let o = self.opts();
        let Some((h, _)) = r.rx.take() else {
            return (Ending::Failed("no receiver".into()), None);
        };
        let rx = h.join();
        if let Some(m) = unrecorded_duplicates(Some(&rx)) {
            self.cfg.log.warn(m);
        }
        let (theirs, stoptime) = match ex {
            Ok(ex) => (ex.theirs, ex.stoptime),
            Err(e) => (Err(e), self.clock.now().0),
        };
        let label = format!("session {}", r.sid.to_hex());
        match theirs {
            Ok(theirs) if theirs.accept == AcceptCode::Ok => {
                let next = theirs
                    .sessions
                    .iter()
                    .find(|s| s.sid == r.sid)
                    .map_or(o.count, |s| {
                        if s.next_seqno == u32::MAX {
                            o.count
                        } else {
                            s.next_seqno
                        }
                    });
                let data = match finish_from(
                    &theirs,
                    r.sid,
                    &r.req,
                    Some(rx),
                    stoptime,
                    r.req.timeout,
                    None,
                ) {
                    Ok(d) => d,
                    Err(e) => return (Ending::Failed(e), None),
                };
                let ending = if cancelled {
                    Ending::Interrupted
                } else {
                    Ending::Complete
                };
                let end = if cancelled {
                    match cut_short_end(&data.session, &data.records, &data.skips) {
                        Some(e) => e,
                        None => return (ending, None),
                    }
                } else {
                    r.started.end
                };
                let owp = match write_receive_file(
                    Vec::new(),
                    Path::new(&label),
                    &data.session,
                    FINISHED_NORMAL,
                    next,
                    &data.records,
                    &data.skips,
                ) {
                    Ok(b) => b,
                    Err(e) => return (Ending::Failed(e), None),
                };
                (ending, Some(SavedSession { owp, data, end }))
            }
            Ok(theirs) => (
                Ending::Failed(format!(
                    "the server reports the session failed: {}",
                    theirs.accept
                )),
                None,
            ),
            Err(e) => {
                // No Stop-Sessions: keep what the §7.8 rule for a lost connection keeps.
                let why = e.to_string();
                let records = match rx {
                    Ok(Ok((_, recs))) => recs,
                    Ok(Err(e)) => return (Ending::Failed(format!("local receiver: {e}")), None),
                    Err(_) => return (Ending::Failed("local receiver thread failed".into()), None),
                };
                let records = apply_incomplete(records, o.count, stoptime, r.req.timeout);
                let Some(end) = cut_short_end(&r.header, &records, &[]) else {
                    return (Ending::Lost(why), None);
                };
                let data = SessionData {
                    label: label.clone(),
                    session: r.header.clone(),
                    finished: FINISHED_INCOMPLETE,
                    records,
                    skips: Vec::new(),
                };
                match write_receive_file(
                    Vec::new(),
                    Path::new(&label),
                    &data.session,
                    FINISHED_INCOMPLETE,
                    0,
                    &data.records,
                    &[],
                ) {
                    Ok(owp) => (Ending::Lost(why), Some(SavedSession { owp, data, end })),
                    Err(e) => (Ending::Failed(e), None),
                }
            }
        }
    }

    fn finish_sender(
        &self,
        r: &mut Running,
        ex: Result<StopExchange, ControlError>,
        cancelled: bool,
    ) -> (Ending, Option<SavedSession>) {
        let ex = match ex {
            Ok(ex) => ex,
            Err(e) => return (Ending::Lost(e.to_string()), None),
        };
        if let Some(Err(e)) = &ex.tx_report {
            return (Ending::Failed(format!("local sender: {e}")), None);
        }
        let theirs = match ex.theirs {
            Ok(t) => t,
            // The data is on the server, which we can no longer ask.
            Err(e) => return (Ending::Lost(e.to_string()), None),
        };
        if theirs.accept != AcceptCode::Ok {
            return (
                Ending::Failed(format!(
                    "the server reports the session failed: {}",
                    theirs.accept
                )),
                None,
            );
        }
        let label = format!("session {}", r.sid.to_hex());
        let mut owp = Vec::new();
        if let Err(e) = r.ctl.fetch_to(r.sid, &mut owp, Path::new(&label)) {
            return (
                Ending::Failed(format!("fetching the session's records: {e}")),
                None,
            );
        }
        let data = match SessionData::read(Cursor::new(&owp), Path::new(&label)) {
            Ok(d) => d,
            Err(e) => return (Ending::Failed(e.to_string()), None),
        };
        let ending = if cancelled {
            Ending::Interrupted
        } else {
            Ending::Complete
        };
        let end = if cancelled {
            match cut_short_end(&data.session, &data.records, &data.skips) {
                Some(e) => e,
                None => return (ending, None),
            }
        } else {
            r.started.end
        };
        (ending, Some(SavedSession { owp, data, end }))
    }
}

/// Waits (no timeout: `None`) until the control connection, the cancel flag or the
/// endpoint's done flag is readable. Returns which are.
fn wait_readable(
    ctl: &Control,
    cancel: &StopFlag,
    done: &StopFlag,
    timeout: Option<Duration>,
) -> Result<(bool, bool, bool), nix::Error> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    // Without a pipe (out of descriptors) a flag is asked every 200 ms instead.
    let fallback = Duration::from_millis(200);
    let mut limit = timeout;
    let ctl_fd = ctl.as_fd();
    let cancel_fd = cancel.wait_fd();
    let done_fd = done.wait_fd();
    if cancel_fd.is_none() || done_fd.is_none() {
        limit = Some(limit.map_or(fallback, |t| t.min(fallback)));
    }
    let ms = limit.map_or(PollTimeout::NONE, |d| {
        // Rounded up, so a wake-up is never early for the deadline it serves.
        let ms = d.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
    });
    let mut fds = vec![PollFd::new(ctl_fd, PollFlags::POLLIN)];
    if let Some(fd) = cancel_fd {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    if let Some(fd) = done_fd {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    loop {
        match poll(&mut fds, ms) {
            Ok(_) => break,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    let ready = |i: usize| {
        fds.get(i)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty())
    };
    let ctl_ready = ready(0);
    let mut i = 1;
    let cancel_ready = if cancel_fd.is_some() {
        i += 1;
        ready(i - 1)
    } else {
        cancel.is_stopped()
    };
    let done_ready = if done_fd.is_some() {
        ready(i)
    } else {
        done.is_stopped()
    };
    Ok((ctl_ready, cancel_ready, done_ready))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powstream::opts::{Command, parse};

    fn opts(args: &[&str]) -> PowOpts {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&a).unwrap() {
            Command::Run(o) => *o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sub_session_times_chain_and_end_at_the_last_packet() {
        let o = opts(&["-c", "12", "-N", "4", "-i", "0.5", "h"]);
        let sid = Sid([7; 16]);
        let start = Num64(1000 << 32);
        let (end, subs) = schedule_times(sid, start, &o);
        let mut sched = Schedule::new(sid, start, &o.slots(), 12);
        assert_eq!(end, sched.send_time(11).unwrap());
        assert_eq!(subs.len(), 3);
        assert_eq!(subs[0], (start, sched.send_time(3).unwrap()));
        assert_eq!(subs[1].0, subs[0].1);
        assert_eq!(subs[2], (sched.send_time(7).unwrap(), end));
        // Without -N: no sub-sessions.
        let o = opts(&["-c", "12", "h"]);
        assert!(schedule_times(sid, start, &o).1.is_empty());
    }

    #[test]
    fn a_cut_short_session_ends_at_its_highest_seqno() {
        let o = opts(&["-c", "10", "h"]);
        let sid = Sid([3; 16]);
        let start = Num64(500 << 32);
        let req = RequestSession {
            conf_sender: true,
            conf_receiver: false,
            num_packets: 10,
            sender_port: 1,
            receiver_port: 2,
            sender_addr: "127.0.0.1".parse().unwrap(),
            receiver_addr: "127.0.0.1".parse().unwrap(),
            sid,
            padding: 0,
            start_time: start,
            timeout: Num64(1 << 32),
            type_p: 0,
            slots: o.slots(),
        };
        let header = SessionHeader::from_fields(&session_fields(&req, sid)).unwrap();
        let rec = |seq| PacketRecord {
            seq,
            send_err: owamp::ErrorEstimate::UNSYNC,
            recv_err: owamp::ErrorEstimate::UNSYNC,
            send_ts: Num64(1),
            recv_ts: Num64(2),
            ttl: 255,
        };
        let mut sched = Schedule::new(sid, start, &o.slots(), 10);
        assert_eq!(cut_short_end(&header, &[], &[]), None);
        let recs = [rec(2), rec(6), rec(4)];
        assert_eq!(
            cut_short_end(&header, &recs, &[]),
            Some(sched.send_time(6).unwrap())
        );
        // Seqno 6 lies inside a skip range (past its first seqno): 4 is the end.
        let skips = [SkipRange { first: 5, last: 7 }];
        assert_eq!(
            cut_short_end(&header, &recs, &skips),
            Some(sched.send_time(4).unwrap())
        );
    }
}
