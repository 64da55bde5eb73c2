//! The stream: one session after another with no gap and no overlap, as powstream(1)
//! describes it. Two sessions are in hand at a time, each on its own control connection
//! (double buffering): the running one, and the next, requested as soon as the running
//! one is started, to start at the scheduled send time of the running one's last packet.
//! When the running one ends, the next takes its place and the one after is requested.
//! A session that cannot be set up is tried again `-I` seconds after the failed attempt
//! began; a lost connection costs the sessions it carried, and the next attempt is
//! immediate.
//!
//! This thread owns every file and every line on stdout; the sessions' threads report
//! to it over one channel, which the signal thread shares (SIGINT/SIGTERM: finish the
//! sessions in hand, save what they have, exit 0; SIGHUP: the same, then start again).
//! Nothing here polls: the thread sleeps on the channel, with a timeout only while a
//! retry is pending.

use super::files::{OutputDir, file_name};
use super::log::Logger;
use super::opts::PowOpts;
use super::session::{self, Config, Ending, Event, SavedSession, StartAt, Started};
use super::summary::{HostNames, Part, summarize};
use crate::endpoints::CLOCK_STATUS;
use crate::output::{SampleCursor, SessionData};
use crate::signals::{self, Request};
use owamp::engine::StopFlag;
use owamp::time::{Clock, num64_to_duration};
use owamp::{Num64, Timestamp};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// A session in hand.
struct Slot {
    id: u64,
    cancel: StopFlag,
    handle: Option<JoinHandle<()>>,
    started: Option<Started>,
    /// As receiver: the sub-session summaries' running state (one per session, as
    /// stats.c keeps one `OWPStats` per file) and the finished word it first saw.
    samples: Option<(SampleCursor, u32)>,
    /// The next sub-session to summarise.
    next_sub: u32,
}

impl Slot {
    fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Something that means powstream cannot go on (stdout gone, files cannot be written).
struct Fatal(String);

/// Writes the files and prints their names and JSON documents.
struct Publisher {
    cfg: Arc<Config>,
    dir: OutputDir,
    names: HostNames,
}

impl Publisher {
    fn opts(&self) -> &PowOpts {
        &self.cfg.opts
    }

    /// One line on stdout, flushed (pScheduler reads it at once).
    fn line(&self, text: &str) -> Result<(), Fatal> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(|e| Fatal(format!("standard output: {e}")))
    }

    /// Writes `name`; `Ok(None)` when a temporary shortage made us skip it.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<Option<String>, Fatal> {
        match self.dir.write_atomically(name, bytes) {
            Ok(p) => Ok(Some(p.display().to_string())),
            Err(e) if e.is_temporary() => {
                self.cfg.log.warn(format!("{e}; skipping this file"));
                Ok(None)
            }
            Err(e) => Err(Fatal(e.to_string())),
        }
    }

    fn print_path(&self, path: &Option<String>) -> Result<(), Fatal> {
        match path {
            Some(p) if self.opts().print_files => self.line(p),
            _ => Ok(()),
        }
    }

    fn print_json(&self, mut doc: Value, paths: &[(&str, &Option<String>)]) -> Result<(), Fatal> {
        if !self.opts().json {
            return Ok(());
        }
        if let Some(obj) = doc.as_object_mut() {
            for (k, p) in paths {
                obj.insert((*k).into(), json!(p));
            }
        }
        self.line(&doc.to_string())
    }

    /// Sub-session `index` of the session in `slot`, from `data`.
    fn sub_session(
        &mut self,
        slot: &mut Slot,
        index: u32,
        data: &SessionData,
    ) -> Result<(), Fatal> {
        let Some(started) = &slot.started else {
            return Ok(());
        };
        let Some(&(start, end)) = started.subs.get(index as usize) else {
            return Ok(());
        };
        let n = self.opts().sub_session;
        let (bw, unix_ts) = (self.opts().bucket_width, self.opts().unix_ts);
        // As receiver the summaries read one growing data set in turn; with -t each
        // sample is a fresh fetch (the reference starts its statistics over for it).
        let mut fresh = (SampleCursor::new(&data.session), data.finished);
        let (cursor, finished) = if self.opts().sender {
            (&mut fresh.0, fresh.1)
        } else {
            let s = slot
                .samples
                .get_or_insert_with(|| (SampleCursor::new(&data.session), data.finished));
            (&mut s.0, s.1)
        };
        let part = Part::SubSession(index);
        let first = index.saturating_mul(n);
        let sum = match summarize(
            cursor,
            data,
            &mut self.names,
            first,
            first.saturating_add(n),
            bw,
            unix_ts,
            finished,
            part,
        ) {
            Ok(s) => s,
            Err(e) => {
                self.cfg.log.warn(format!("sub-session {index}: {e}"));
                slot.next_sub = index + 1;
                return Ok(());
            }
        };
        slot.next_sub = index + 1;
        let path = self.write(&file_name(start, end, ".sum"), sum.text.as_bytes())?;
        self.print_path(&path)?;
        self.print_json(sum.json, &[("sum", &path)])
    }

    /// A finished session: the sub-sessions not summarised yet (when it ran to its
    /// end, as the reference), its `.owp`, its `.sum`.
    fn session(
        &mut self,
        slot: &mut Slot,
        ending: &Ending,
        saved: SavedSession,
    ) -> Result<(), Fatal> {
        let Some(started) = slot.started.clone() else {
            return Ok(());
        };
        if *ending == Ending::Complete {
            for index in slot.next_sub..started.subs.len() as u32 {
                self.sub_session(slot, index, &saved.data)?;
            }
        }
        let owp = self.write(&file_name(started.start, saved.end, ".owp"), &saved.owp)?;
        let (bw, unix_ts, count) = (
            self.opts().bucket_width,
            self.opts().unix_ts,
            self.opts().count,
        );
        let mut cursor = SampleCursor::new(&saved.data.session);
        let sum = summarize(
            &mut cursor,
            &saved.data,
            &mut self.names,
            0,
            count,
            bw,
            unix_ts,
            saved.data.finished,
            Part::Session,
        );
        self.print_path(&owp)?;
        match sum {
            Ok(sum) => {
                let path = self.write(
                    &file_name(started.start, saved.end, ".sum"),
                    sum.text.as_bytes(),
                )?;
                self.print_path(&path)?;
                self.print_json(sum.json, &[("owp", &owp), ("sum", &path)])
            }
            Err(e) => {
                self.cfg
                    .log
                    .warn(format!("session {}: {e}", started.sid.to_hex()));
                Ok(())
            }
        }
    }
}

struct Stream {
    cfg: Arc<Config>,
    log: Arc<Logger>,
    clock: Clock,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    publisher: Publisher,
    current: Option<Slot>,
    next: Option<Slot>,
    next_id: u64,
    /// No session is set up before this (`-I` after a failed attempt).
    retry_at: Option<Timestamp>,
    first: bool,
    finishing: Option<Request>,
}

/// powstream after its options: lock the directory, then stream until a signal.
pub fn run(opts: PowOpts) -> i32 {
    let log = Arc::new(Logger::open(
        opts.facility,
        opts.log_level,
        !opts.syslog_only,
    ));
    let clock = match config::debug_time_offset() {
        Ok(offset) => Clock::new(CLOCK_STATUS, offset),
        Err(e) => {
            log.fatal(e.to_string());
            return 1;
        }
    };
    let dir = OutputDir::new(opts.savedir.clone());
    let _lock = match dir.lock() {
        Ok(f) => f,
        Err(e) => {
            log.fatal(e.to_string());
            return 1;
        }
    };
    let (tx, rx) = mpsc::channel();
    // Before any other thread, so that every thread inherits the blocked signals.
    if let Err(e) = signals::forward(tx.clone(), Event::Signal) {
        log.fatal(format!("cannot take the signals: {e}"));
        return 1;
    }
    let params = crate::connect_params_for("powstream", &opts.conn, &opts.servaddr);
    let secs = opts.session_secs();
    if secs < opts.loss_timeout + 2.0 {
        log.warn(format!(
            "holes in the data are likely: sessions of about {secs:.1} s leave too little time \
             after the loss timeout ({} s) to set up the next one; use a larger -c or -i",
            opts.loss_timeout
        ));
    }
    let cfg = Arc::new(Config {
        opts,
        params,
        debug_offset: clock.debug_offset(),
        log: log.clone(),
    });
    let mut stream = Stream {
        publisher: Publisher {
            cfg: cfg.clone(),
            dir,
            names: HostNames::default(),
        },
        cfg,
        log,
        clock,
        tx,
        rx,
        current: None,
        next: None,
        next_id: 1,
        retry_at: None,
        first: true,
        finishing: None,
    };
    stream.run()
}

impl Stream {
    fn run(&mut self) -> i32 {
        loop {
            if let Some(code) = self.finished() {
                return code;
            }
            self.spawn_due();
            let Some(ev) = self.next_event() else {
                continue;
            };
            if let Err(Fatal(msg)) = self.handle(ev) {
                self.log.fatal(format!("{msg}; exiting"));
                return 1;
            }
        }
    }

    fn verbose(&self, msg: String) {
        if self.cfg.opts.verbose > 0 {
            self.log.info(msg);
        } else {
            self.log.debug(msg);
        }
    }

    /// Whether a new session is wanted now (one missing, and no retry pending).
    fn wants_session(&self) -> bool {
        self.finishing.is_none()
            && (self.current.is_none()
                || (self.next.is_none()
                    && self.current.as_ref().is_some_and(|c| c.started.is_some())))
    }

    fn spawn_due(&mut self) {
        if !self.wants_session() {
            return;
        }
        let now = self.clock.now().0;
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        let at = match &self.current {
            None => {
                let extra = if self.first {
                    Num64::from_secs_f64(self.cfg.opts.delay_start)
                } else {
                    Num64::ZERO
                };
                StartAt::Asap { extra }
            }
            Some(c) => match &c.started {
                Some(s) => StartAt::At(s.end),
                None => return,
            },
        };
        let id = self.next_id;
        self.next_id += 1;
        let cancel = StopFlag::new();
        match session::spawn(self.cfg.clone(), id, at, cancel.clone(), self.tx.clone()) {
            Ok(h) => {
                self.first = false;
                let slot = Slot {
                    id,
                    cancel,
                    handle: Some(h),
                    started: None,
                    samples: None,
                    next_sub: 0,
                };
                if self.current.is_none() {
                    self.current = Some(slot);
                } else {
                    self.next = Some(slot);
                }
            }
            Err(e) => {
                self.log.warn(format!("cannot start a session thread: {e}"));
                self.retry_at = Some(now.wrapping_add(self.retry_delay()));
            }
        }
    }

    fn retry_delay(&self) -> Num64 {
        Num64(self.cfg.opts.retry_secs() << 32)
    }

    fn next_event(&mut self) -> Option<Event> {
        let now = self.clock.now().0;
        let wait = match self.retry_at {
            Some(t) if self.wants_session() && t > now => {
                Some(num64_to_duration(t.saturating_sub(now)))
            }
            _ => None,
        };
        match wait {
            None => self.rx.recv().ok(),
            Some(d) => self.rx.recv_timeout(d).ok(),
        }
    }

    /// After a signal, once the sessions that had started are saved: the exit status
    /// (SIGINT/SIGTERM), or a fresh start (SIGHUP).
    fn finished(&mut self) -> Option<i32> {
        let req = self.finishing?;
        let started = |s: &Option<Slot>| s.as_ref().is_some_and(|s| s.started.is_some());
        if started(&self.current) || started(&self.next) {
            return None;
        }
        match req {
            Request::Finish => {
                self.log.info("SIGTERM/SIGINT: sessions saved, exiting");
                Some(0)
            }
            Request::Reopen => {
                self.log
                    .info("SIGHUP: sessions saved, opening new connections");
                // Sessions still being set up were told to stop; they need no waiting.
                self.current = None;
                self.next = None;
                self.finishing = None;
                self.retry_at = None;
                None
            }
        }
    }

    /// The slot of session `id`, taken out of the stream.
    fn take(&mut self, id: u64) -> Option<(Slot, bool)> {
        if self.current.as_ref().is_some_and(|s| s.id == id) {
            return self.current.take().map(|s| (s, true));
        }
        if self.next.as_ref().is_some_and(|s| s.id == id) {
            return self.next.take().map(|s| (s, false));
        }
        None
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        [self.current.as_mut(), self.next.as_mut()]
            .into_iter()
            .flatten()
            .find(|s| s.id == id)
    }

    fn handle(&mut self, ev: Event) -> Result<(), Fatal> {
        match ev {
            Event::Signal(req) => {
                self.finishing = match (self.finishing, req) {
                    (Some(Request::Finish), _) => Some(Request::Finish),
                    (_, r) => Some(r),
                };
                for s in [self.current.as_ref(), self.next.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    s.cancel.stop();
                }
            }
            Event::SetupFailed { id, attempt, error } => {
                let Some((mut slot, _)) = self.take(id) else {
                    return Ok(());
                };
                slot.join();
                let at = attempt.wrapping_add(self.retry_delay());
                self.retry_at = Some(at);
                if self.finishing.is_none() {
                    let wait = at.diff_secs(self.clock.now().0).max(0.0);
                    self.log.warn(format!("{error}; retrying in {wait:.1} s"));
                }
            }
            Event::Started { id, info } => {
                let prev_end = self
                    .current
                    .as_ref()
                    .filter(|c| c.id != id)
                    .and_then(|c| c.started.as_ref())
                    .map(|s| s.end);
                if let (Some(w), Some(end)) = (info.wanted, prev_end)
                    && w == end
                {
                    self.log.warn(format!(
                        "gap of {:.3} s after the previous session: the next one could not be set up in time",
                        info.start.diff_secs(w)
                    ));
                }
                self.verbose(format!(
                    "session {} accepted: {:020} to {:020}",
                    info.sid.to_hex(),
                    info.start.0,
                    info.end.0
                ));
                if let Some(slot) = self.slot_mut(id) {
                    slot.started = Some(info);
                }
            }
            Event::Sample { id, index, data } => {
                // Taken out while it is written, so the publisher can borrow both.
                let Some((mut slot, is_current)) = self.take(id) else {
                    return Ok(());
                };
                let r = self.publisher.sub_session(&mut slot, index, &data);
                self.put_back(slot, is_current);
                r?;
            }
            Event::Finished { id, ending, saved } => {
                let Some((mut slot, is_current)) = self.take(id) else {
                    return Ok(());
                };
                slot.join();
                let sid = slot
                    .started
                    .as_ref()
                    .map_or_else(|| "(not started)".to_string(), |s| s.sid.to_hex());
                match &ending {
                    Ending::Complete => self.verbose(format!("session {sid} complete")),
                    Ending::Interrupted => self.verbose(format!("session {sid} stopped early")),
                    Ending::Lost(e) => self.log.warn(format!("session {sid}: {e}")),
                    Ending::Failed(e) => self.log.warn(format!("session {sid} not saved: {e}")),
                }
                if let Some(saved) = saved {
                    self.publisher.session(&mut slot, &ending, saved)?;
                }
                if is_current {
                    self.current = self.next.take();
                }
            }
        }
        Ok(())
    }

    fn put_back(&mut self, slot: Slot, is_current: bool) {
        if is_current {
            self.current = Some(slot);
        } else {
            self.next = Some(slot);
        }
    }
}
