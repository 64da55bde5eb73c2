//! Start-Sessions, the test period and the Stop-Sessions exchange (RFC 4656 §3.7–3.8,
//! spec §2.3–2.5, §7.2, §7.8), and what happens to the data afterwards.

use super::*;

impl Connection<'_> {
    /// Start-Sessions (spec §2.3, §2.4), then the test period and the Stop-Sessions
    /// exchange (§2.5); back to Idle afterwards.
    pub(super) async fn handle_start_sessions<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<(), SessionError> {
        // Testers finish starting in the background after Accept-Session (testers.rs):
        // every one must be ready before any is started.
        let mut accept = AcceptCode::Ok;
        for s in &mut self.sessions {
            let Some(ready) = s.link.take_ready() else {
                continue;
            };
            let why = match tokio::time::timeout(TESTER_REPLY_TIMEOUT, ready).await {
                Ok(Ok(Ok(()))) => continue,
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(_)) => "owampd-tester ended before it was ready".to_string(),
                Err(_) => format!(
                    "owampd-tester not ready within {} s",
                    TESTER_REPLY_TIMEOUT.as_secs()
                ),
            };
            s.log.warn(format!("cannot start: {why}"));
            accept = AcceptCode::InternalError;
        }
        if accept == AcceptCode::Ok {
            for s in &mut self.sessions {
                if let Err(e) = s.link.send(&ControlToTester::Start) {
                    s.log.warn(format!("cannot start: {e}"));
                    accept = AcceptCode::InternalError;
                }
            }
        }
        conn.send(&[&StartAck { accept }.encode()]).await?;
        if accept != AcceptCode::Ok {
            return Err(SessionError::Protocol(
                "a test endpoint could not be started".into(),
            ));
        }
        self.log.debug(format!(
            "Start-Sessions: {} session(s) running",
            self.sessions.len()
        ));
        self.test_period(conn).await
    }

    fn all_done(&self) -> bool {
        self.sessions.iter().all(|s| s.done)
    }

    fn apply_event(&mut self, id: usize, ev: TesterEvent) {
        let Some(s) = self.sessions.iter_mut().find(|s| s.id == id) else {
            return;
        };
        match ev {
            TesterEvent::Msg(TesterToControl::Log(l)) => {
                s.log.log(
                    match l.level {
                        tester_ipc::LogLevel::Error => crate::log::Level::Error,
                        tester_ipc::LogLevel::Warning => crate::log::Level::Warning,
                        tester_ipc::LogLevel::Info => crate::log::Level::Info,
                        tester_ipc::LogLevel::Debug => crate::log::Level::Debug,
                    },
                    format!("tester: {}", l.message),
                );
            }
            TesterEvent::Msg(TesterToControl::ReceiveDone) if s.role == TesterRole::Receiver => {
                if !s.stop_sent {
                    s.done = true;
                }
            }
            TesterEvent::Msg(TesterToControl::SenderSkips(v)) if s.role == TesterRole::Sender => {
                s.sender_skips.extend(v);
            }
            TesterEvent::Msg(TesterToControl::Finished(rep)) => {
                if !rep.drops.is_empty() {
                    let d: Vec<String> = rep
                        .drops
                        .iter()
                        .map(|d| format!("{}={}", d.reason, d.count))
                        .collect();
                    s.log.info(format!("dropped packets: {}", d.join(", ")));
                }
                match rep.outcome {
                    Outcome::Sender {
                        next_seqno,
                        num_skips,
                    } if s.role == TesterRole::Sender
                        && num_skips as usize == s.sender_skips.len() =>
                    {
                        s.sender_result = Some((next_seqno, std::mem::take(&mut s.sender_skips)));
                    }
                    Outcome::Receiver {
                        finished,
                        records,
                        lost,
                    } if s.role == TesterRole::Receiver => {
                        s.log.info(format!(
                            "receive session finalised: finished={finished}, {records} records, {lost} lost"
                        ));
                        s.receiver_result = Some(finished);
                    }
                    Outcome::Failed { reason } => {
                        // It reported: its data is bad (e.g. a received record at or
                        // past Next Seqno, RFC 4656 §3.8), not merely cut short.
                        s.log.warn(format!("session failed: {reason}"));
                        s.gone = true;
                        s.failed = true;
                    }
                    other => {
                        s.log.warn(format!(
                            "tester sent a report that does not fit its session ({other:?}): killed"
                        ));
                        s.link.kill();
                        s.gone = true;
                    }
                }
                s.done = true;
            }
            TesterEvent::Msg(other) => {
                // A message not allowed now ends that tester, never control.
                s.log.warn(format!(
                    "unexpected message from tester ({other:?}): killed"
                ));
                s.link.kill();
                s.gone = true;
                s.done = true;
            }
            TesterEvent::Gone(why) => {
                if s.sender_result.is_none() && s.receiver_result.is_none() {
                    s.log.warn(format!("tester ended: {why}"));
                    s.link.kill();
                    s.gone = true;
                }
                s.done = true;
            }
        }
    }

    /// The test period; if it ends in any error while sessions are still held (the
    /// client vanished or misbehaved mid-test), the receivers keep their data as
    /// incomplete (spec §7.2 step 4).
    async fn test_period<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<(), SessionError> {
        let r = self.test_period_inner(conn).await;
        if r.is_err() && !self.sessions.is_empty() {
            self.client_vanished().await;
        }
        r
    }

    /// Waits for whichever comes first: the client's Stop-Sessions, or every local
    /// endpoint done (then we send ours first). Spec §2.5 "Exchange protocol".
    async fn test_period_inner<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<(), SessionError> {
        let mut sent_ours = false;
        // The daemon's stop, once it has begun: our senders are told to stop, and our
        // Stop-Sessions goes first once they have reported (RFC 4656 §3.8 lets either
        // side go first), with their records so far.
        let mut stopping: Option<Deadlines> = None;
        let shutdown = self.shutdown.clone();
        let header: [u8; 16];
        let stop_time: Num64;
        loop {
            if conn.buffered() >= 16 {
                stop_time = now_ntp(self.ctx.config.debug_time_offset);
                header = conn.read_block("Stop-Sessions", false).await?;
                break;
            }
            if !sent_ours && (self.all_done() || stopping.is_some() && self.senders_done()) {
                self.send_our_stop(conn, AcceptCode::Ok).await?;
                sent_ours = true;
                // Re-armed for the rest of the exchange (spec §7.2 step 3); the stop
                // time is when the peer's header is read (spec §7.8).
                header = before_stop(&shutdown, conn.read_block("Stop-Sessions", true)).await??;
                stop_time = now_ntp(self.ctx.config.debug_time_offset);
                break;
            }
            let exchange_by = stopping.map(|d| d.exchange);
            tokio::select! {
                r = conn.fill() => {
                    r?;
                }
                Some((i, ev)) = self.events_rx.recv() => self.apply_event(i, ev),
                d = shutdown.begun(), if stopping.is_none() => {
                    stopping = Some(d);
                    self.stop_senders_for_shutdown();
                }
                () = sleep_until_some(exchange_by), if exchange_by.is_some() => {
                    self.kill_unreported_senders();
                }
            }
        }
        if CommandKind::from_block(&header) != CommandKind::StopSessions {
            return Err(SessionError::Protocol(format!(
                "command {} during a test (only Stop-Sessions is allowed)",
                header[0]
            )));
        }
        let peer_stop = before_stop(&shutdown, self.read_stop_rest(conn, &header)).await??;
        // Our senders stop now (a Stop-Sessions cuts their end delay short, §3.8).
        for s in &mut self.sessions {
            if s.role == TesterRole::Sender && !s.done && !s.stop_sent {
                let _ = s.link.send(&ControlToTester::Stop(Stop {
                    stop_time,
                    peer: None,
                }));
            }
        }
        let check = self.match_peer_records(&peer_stop);
        let abort = peer_stop.accept != AcceptCode::Ok || check.is_err();
        for s in &mut self.sessions {
            if s.role != TesterRole::Receiver || s.gone {
                continue;
            }
            s.receiver_result = None;
            s.stop_sent = true;
            let sent = if abort {
                s.link.send(&ControlToTester::Abort)
            } else {
                let rec = peer_stop.sessions.iter().find(|r| r.sid == s.sid);
                stop_receiver(&mut *s.link, stop_time, rec, s.num_packets)
            };
            match sent {
                Err(e) => {
                    s.log.warn(format!("cannot stop: {e}"));
                    s.gone = true;
                    s.done = true;
                }
                // An aborted tester exits without a report: nothing to wait for.
                Ok(()) => s.done = abort,
            }
        }
        self.wait_reports().await;
        // The sender records for our reply, taken before the sessions are released.
        let reply = if sent_ours {
            None
        } else {
            // The responder's Accept is the peer's (spec §2.5 "Reply Accept").
            let accept = if check.is_err() {
                AcceptCode::Failure
            } else {
                peer_stop.accept
            };
            Some(self.our_stop(accept))
        };
        // Data is settled before anything more can fail on the wire.
        self.finish_period(abort).await;
        if let Some(msg) = reply {
            conn.send(&[&msg]).await?;
        }
        self.stopped_by_shutdown = self.shutdown.deadlines().is_some();
        check.map_err(SessionError::Protocol)
    }

    fn senders_done(&self) -> bool {
        self.sessions
            .iter()
            .filter(|s| s.role == TesterRole::Sender)
            .all(|s| s.done)
    }

    /// The daemon is stopping: every sender still sending stops now and reports its
    /// Next Seqno and skip ranges for our Stop-Sessions (RFC 4656 §3.8). Receivers go on
    /// until the client's Stop-Sessions says what it sent.
    fn stop_senders_for_shutdown(&mut self) {
        let stop_time = now_ntp(self.ctx.config.debug_time_offset);
        self.log.info(format!(
            "the server is stopping: ending {} running session(s) with Stop-Sessions",
            self.sessions.len()
        ));
        for s in &mut self.sessions {
            if s.role != TesterRole::Sender || s.done {
                continue;
            }
            s.stop_sent = true;
            let stop = ControlToTester::Stop(Stop {
                stop_time,
                peer: None,
            });
            if let Err(e) = s.link.send(&stop) {
                s.log.warn(format!("cannot stop: {e}"));
                s.gone = true;
                s.done = true;
            }
        }
    }

    /// Senders that have not reported by the exchange deadline are given up: our
    /// Stop-Sessions then says the sessions failed.
    fn kill_unreported_senders(&mut self) {
        for s in &mut self.sessions {
            if s.role == TesterRole::Sender && !s.done {
                s.log
                    .warn("tester did not report before the server stops: killed");
                s.link.kill();
                s.gone = true;
                s.done = true;
            }
        }
    }

    /// The rest of a Stop-Sessions after its header, and its HMAC.
    async fn read_stop_rest<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
        header: &[u8; 16],
    ) -> Result<StopSessions, SessionError> {
        let max_packets = self
            .sessions
            .iter()
            .map(|s| s.num_packets)
            .max()
            .unwrap_or(0);
        let limits = StopLimits {
            max_sessions: self.sessions.len() as u32,
            max_skips: max_packets,
        };
        let mut dec =
            StopSessionsDecoder::new(header, limits).map_err(wire_err("Stop-Sessions"))?;
        loop {
            let n = dec.blocks_needed();
            if n == 0 {
                break;
            }
            let n = n.min(crate::conn::MAX_READ / 16);
            let blocks = conn.read_blocks(n, "Stop-Sessions").await?;
            dec.feed(&blocks).map_err(wire_err("Stop-Sessions"))?;
        }
        conn.read_hmac("Stop-Sessions").await?;
        dec.finish().map_err(wire_err("Stop-Sessions"))
    }

    /// Spec §2.5 "Receiver validation": one record per local receive session, each SID
    /// ours, Next Seqno ≤ Number of Packets, skip ranges ordered within themselves.
    fn match_peer_records(&self, stop: &StopSessions) -> Result<(), String> {
        if stop.accept != AcceptCode::Ok {
            return Ok(());
        }
        let receivers: Vec<&TestSession> = self
            .sessions
            .iter()
            .filter(|s| s.role == TesterRole::Receiver)
            .collect();
        if stop.sessions.len() != receivers.len() {
            return Err(format!(
                "Stop-Sessions has {} session records, {} expected",
                stop.sessions.len(),
                receivers.len()
            ));
        }
        for r in &stop.sessions {
            let Some(s) = receivers.iter().find(|s| s.sid == r.sid) else {
                return Err(format!(
                    "Stop-Sessions names unknown SID {}",
                    r.sid.to_hex()
                ));
            };
            if r.next_seqno != u32::MAX && r.next_seqno > s.num_packets {
                return Err(format!(
                    "Stop-Sessions Next Seqno {} > {} packets (SID {})",
                    r.next_seqno,
                    s.num_packets,
                    r.sid.to_hex()
                ));
            }
        }
        Ok(())
    }

    async fn wait_reports(&mut self) {
        let mut deadline = tokio::time::Instant::now() + TESTER_REPLY_TIMEOUT;
        // A stopping daemon waits no longer than it may live.
        if let Some(d) = self.shutdown.deadlines() {
            deadline = deadline.min(d.exit);
        }
        while !self.all_done() {
            match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                Ok(Some((i, ev))) => self.apply_event(i, ev),
                Ok(None) => break,
                Err(_) => {
                    for s in &mut self.sessions {
                        if !s.done {
                            s.log.warn("tester did not report in time: killed");
                            s.link.kill();
                            s.gone = true;
                            s.done = true;
                        }
                    }
                }
            }
        }
    }

    async fn send_our_stop<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
        accept: AcceptCode,
    ) -> Result<(), SessionError> {
        let msg = self.our_stop(accept);
        conn.send(&[&msg]).await?;
        Ok(())
    }

    /// Our Stop-Sessions: one record per local sender (spec §2.5).
    fn our_stop(&self, accept: AcceptCode) -> Vec<u8> {
        let mut failed = false;
        let mut records = Vec::new();
        for s in self
            .sessions
            .iter()
            .filter(|s| s.role == TesterRole::Sender)
        {
            match &s.sender_result {
                Some((next, skips)) => records.push(SessionStop {
                    sid: s.sid,
                    next_seqno: *next,
                    skips: skips.clone(),
                }),
                None => {
                    failed = true;
                    records.push(SessionStop {
                        sid: s.sid,
                        next_seqno: 0,
                        skips: vec![],
                    });
                }
            }
        }
        let accept = if failed && accept == AcceptCode::Ok {
            AcceptCode::InternalError
        } else {
            accept
        };
        StopSessions {
            accept,
            sessions: records,
        }
        .encode()
    }

    /// After the exchange: true up disk, delete what must go, release everything
    /// (spec §7.4, §7.7), and return to Idle.
    async fn finish_period(&mut self, aborted: bool) {
        for mut s in std::mem::take(&mut self.sessions) {
            if s.role != TesterRole::Receiver {
                continue;
            }
            let keep = !aborted && matches!(s.receiver_result, Some(1 | 2));
            if !keep && !aborted && s.gone && !s.failed {
                // Tester died: keep what it wrote, finalised as incomplete.
                self.finalise_incomplete_here(&mut s).await;
                continue;
            }
            if keep {
                // The file's real size, not the tester's word for it: a compromised
                // tester could report 0 and free its class's disk allowance.
                let len = self.ctx.store.file_size_async(&s.sid).await.unwrap_or(0);
                if let Some(g) = s.disk.take()
                    && let Err(e) = g.commit(len)
                {
                    s.log.warn(format!("data deleted: {e}"));
                    let _ = self.ctx.store.delete_async(&s.sid).await;
                }
            } else {
                s.log.info("session data discarded");
                let _ = self.ctx.store.delete_async(&s.sid).await;
            }
        }
    }

    /// The tester is gone but the file is there: finalise it as incomplete from
    /// control's own descriptor (design.md "Processes").
    async fn finalise_incomplete_here(&self, s: &mut TestSession) {
        let Some(file) = s.file.take() else { return };
        let label = format!("session {}", s.sid.to_hex());
        let stoptime = now_ntp(self.ctx.config.debug_time_offset);
        let res = tokio::task::spawn_blocking(move || {
            let w = owamp::owp::ReceiveWriter::resume(file, &label)?;
            w.finalize_incomplete(stoptime)
        })
        .await;
        let len = self.ctx.store.file_size_async(&s.sid).await.unwrap_or(0);
        match res {
            Ok(Ok(_)) => {
                s.log.info("data kept as incomplete");
                if let Some(g) = s.disk.take()
                    && let Err(e) = g.commit(len)
                {
                    s.log.warn(format!("data deleted: {e}"));
                    let _ = self.ctx.store.delete_async(&s.sid).await;
                }
            }
            Ok(Err(e)) => {
                s.log.warn(format!("cannot finalise, data deleted: {e}"));
                let _ = self.ctx.store.delete_async(&s.sid).await;
            }
            Err(e) => {
                s.log.warn(format!("cannot finalise, data deleted: {e}"));
                let _ = self.ctx.store.delete_async(&s.sid).await;
            }
        }
    }

    /// The client is gone mid-test: receivers finalise what they have as incomplete,
    /// senders stop (spec §7.2 step 4).
    async fn client_vanished(&mut self) {
        let now = now_ntp(self.ctx.config.debug_time_offset);
        for s in &mut self.sessions {
            if s.gone {
                continue;
            }
            s.receiver_result = None;
            s.stop_sent = true;
            let sent = match s.role {
                TesterRole::Receiver => stop_receiver(&mut *s.link, now, None, s.num_packets),
                TesterRole::Sender => s.link.send(&ControlToTester::Abort),
            }
            .is_ok();
            // Only receivers report after this (their finalisation); senders just exit.
            s.done = !(sent && s.role == TesterRole::Receiver);
        }
        self.wait_reports().await;
        self.finish_period(false).await;
    }

    /// The connection ends with sessions that never started (or a period cut short):
    /// kill testers and delete their files (spec §7.2: closed before Start-Sessions).
    pub(super) async fn abandon_all(&mut self) {
        for mut s in std::mem::take(&mut self.sessions) {
            let _ = s.link.send(&ControlToTester::Abort);
            s.link.kill();
            if s.role == TesterRole::Receiver {
                s.log
                    .info("session abandoned before Start-Sessions: data deleted");
                let _ = self.ctx.store.delete_async(&s.sid).await;
            }
        }
    }
}

/// `fut`, cut off at the exchange deadline if the daemon's stop has begun or begins
/// meanwhile (crate::shutdown): a client cannot hold the stop.
async fn before_stop<T>(
    shutdown: &Shutdown,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, SessionError> {
    let cut_off = async {
        let d = shutdown.begun().await;
        tokio::time::sleep_until(d.exchange).await;
    };
    tokio::select! {
        r = fut => Ok(r),
        () = cut_off => Err(SessionError::Protocol(
            "no Stop-Sessions from the client before the server stops".into(),
        )),
    }
}

async fn sleep_until_some(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Stops a receiving tester: `Stop`, the peer's skip ranges in chunks, `Finalize`
/// (tester_ipc). `rec`: the peer's record of the session, `None` when it sent none (the
/// data is then kept as incomplete).
fn stop_receiver(
    link: &mut dyn TesterLink,
    stop_time: Num64,
    rec: Option<&SessionStop>,
    num_packets: u32,
) -> Result<(), crate::testers::TesterError> {
    let peer = rec.map(|r| PeerRecord {
        // 0xFFFFFFFF means "all of them" (RFC 4656 §3.8).
        next_seqno: if r.next_seqno == u32::MAX {
            num_packets
        } else {
            r.next_seqno
        },
        num_skips: u32::try_from(r.skips.len()).unwrap_or(u32::MAX),
    });
    link.send(&ControlToTester::Stop(Stop { stop_time, peer }))?;
    if let Some(r) = rec {
        for chunk in chunks(&r.skips, MAX_SKIPS_PER_MESSAGE) {
            link.send(&ControlToTester::Skips(chunk))?;
        }
    }
    link.send(&ControlToTester::Finalize)
}
