//! Start-Sessions, the test period and the Stop-Sessions exchange (RFC 4656 §3.7–3.8,
//! protocol.md §2.3–2.5, §7.2, §7.8), and what happens to the data afterwards.

use super::*;

impl Connection<'_> {
    /// Start-Sessions (protocol.md §2.3, §2.4), then the test period and the Stop-Sessions
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
        // A Start-Sessions sent long after the sessions' Start Time would make them
        // begin with that much of their schedule late (see MAX_START_IN_PAST).
        let now = now_with_offset(self.ctx.config.debug_time_offset);
        for s in &self.sessions {
            if let Some(secs) = start_too_far_past(s.start_time, now) {
                s.log.info(format!(
                    "cannot start: start time {secs} s in the past (at most {} s is accepted)",
                    MAX_START_IN_PAST.as_secs()
                ));
                if accept == AcceptCode::Ok {
                    accept = AcceptCode::Failure;
                }
            }
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
                s.log.log(l.level, format_args!("tester: {}", l.message));
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
    /// incomplete (protocol.md §7.2 step 4).
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
    /// endpoint done (then we send ours first). protocol.md §2.5 "Exchange protocol".
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
                stop_time = now_with_offset(self.ctx.config.debug_time_offset);
                header = conn.read_block("Stop-Sessions", false).await?;
                break;
            }
            if !sent_ours && (self.all_done() || stopping.is_some() && self.senders_done()) {
                self.send_our_stop(conn, AcceptCode::Ok).await?;
                sent_ours = true;
                // Re-armed for the rest of the exchange (protocol.md §7.2 step 3); the stop
                // time is when the peer's header is read (protocol.md §7.8).
                header = before_stop(&shutdown, conn.read_block("Stop-Sessions", true)).await??;
                stop_time = now_with_offset(self.ctx.config.debug_time_offset);
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
        // Our senders stop now (a Stop-Sessions cuts their end delay short, §3.8).
        for s in &mut self.sessions {
            if s.role == TesterRole::Sender && !s.done && !s.stop_sent {
                let _ = s.link.send(&ControlToTester::Stop(Stop {
                    stop_time,
                    peer: None,
                }));
            }
        }
        let (peer_accept, check) =
            before_stop(&shutdown, self.stream_peer_stop(conn, &header, stop_time)).await??;
        let abort = peer_accept != AcceptCode::Ok || check.is_err();
        for s in &mut self.sessions {
            if s.role != TesterRole::Receiver || s.gone {
                continue;
            }
            s.receiver_result = None;
            let sent = if abort || s.stop_sent {
                let msg = if abort {
                    ControlToTester::Abort
                } else {
                    ControlToTester::Finalize
                };
                tokio::time::timeout(TESTER_REPLY_TIMEOUT, s.link.send_wait(msg))
                    .await
                    .unwrap_or_else(|_| {
                        s.link.kill();
                        Err(crate::testers::TesterError::Gone(
                            "tester took no message in time".into(),
                        ))
                    })
            } else {
                // Unreachable once the records matched (one per receiver); kept as
                // incomplete rather than trusted.
                stop_receiver(&mut *s.link, stop_time)
            };
            s.stop_sent = true;
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
            // The responder's Accept is the peer's (protocol.md §2.5 "Reply Accept").
            let accept = if check.is_err() {
                AcceptCode::Failure
            } else {
                peer_accept
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
        let stop_time = now_with_offset(self.ctx.config.debug_time_offset);
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

    /// The rest of the peer's Stop-Sessions after its header, and its HMAC. Each
    /// record's skip ranges go to its receiving tester as they are read (a `Stop` with
    /// the record, then `Skips` chunks; `Finalize` or `Abort` follows once the whole
    /// message is verified): K is bounded only by the session's Number of Packets (RFC
    /// 4656 §3.8), up to 2^32−1 ranges, so control keeps none of them and holds at most
    /// one read's worth, paced by the tester. Returns the peer's Accept, and whether its
    /// records fit our receive sessions (protocol.md §2.5 "Receiver validation": one record per
    /// local receive session, each SID ours, Next Seqno ≤ Number of Packets).
    async fn stream_peer_stop<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
        header: &[u8; 16],
        stop_time: Num64,
    ) -> Result<(AcceptCode, Result<(), String>), SessionError> {
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
            StopSessionsDecoder::streaming(header, limits).map_err(wire_err("Stop-Sessions"))?;
        let accept = dec.accept();
        let receivers = self
            .sessions
            .iter()
            .filter(|s| s.role == TesterRole::Receiver)
            .count();
        let mut check = Ok(());
        if accept == AcceptCode::Ok && dec.num_sessions() as usize != receivers {
            check = Err(format!(
                "Stop-Sessions has {} session records, {receivers} expected",
                dec.num_sessions()
            ));
        }
        // The receive session whose record is being read, while it takes our ranges.
        let mut current: Option<usize> = None;
        loop {
            let n = dec.blocks_needed();
            if n == 0 {
                break;
            }
            let n = n.min(crate::conn::MAX_READ / 16);
            let blocks = conn.read_blocks(n, "Stop-Sessions").await?;
            dec.feed(&blocks).map_err(wire_err("Stop-Sessions"))?;
            drop(blocks);
            for piece in dec.take_pieces() {
                match piece {
                    StopPiece::Record {
                        sid,
                        next_seqno,
                        num_skips,
                    } => {
                        current = None;
                        if accept != AcceptCode::Ok || check.is_err() {
                            continue;
                        }
                        match self
                            .begin_peer_record(sid, next_seqno, num_skips, stop_time)
                            .await
                        {
                            Ok(to) => current = to,
                            Err(why) => check = Err(why),
                        }
                    }
                    StopPiece::Skips(ranges) => {
                        let Some(i) = current else { continue };
                        let Some(s) = self.sessions.get_mut(i) else {
                            continue;
                        };
                        if let Err(e) = forward_skips(&mut *s.link, ranges).await {
                            s.log.warn(format!("cannot stop: {e}"));
                            s.link.kill();
                            s.gone = true;
                            s.done = true;
                            current = None;
                        }
                    }
                }
            }
        }
        conn.read_hmac("Stop-Sessions").await?;
        dec.finish().map_err(wire_err("Stop-Sessions"))?;
        Ok((accept, check))
    }

    /// The peer's record of one session begins: checks it, and sends the receiving
    /// tester its `Stop`. `Ok(Some(i))`: session `i` takes the record's skip ranges.
    async fn begin_peer_record(
        &mut self,
        sid: Sid,
        next_seqno: u32,
        num_skips: u32,
        stop_time: Num64,
    ) -> Result<Option<usize>, String> {
        let Some(i) = self
            .sessions
            .iter()
            .position(|s| s.role == TesterRole::Receiver && s.sid == sid)
        else {
            return Err(format!("Stop-Sessions names unknown SID {}", sid.to_hex()));
        };
        let Some(s) = self.sessions.get_mut(i) else {
            return Err(format!("Stop-Sessions names unknown SID {}", sid.to_hex()));
        };
        if s.stop_sent {
            return Err(format!(
                "Stop-Sessions has two records for SID {}",
                sid.to_hex()
            ));
        }
        if next_seqno != u32::MAX && next_seqno > s.num_packets {
            return Err(format!(
                "Stop-Sessions Next Seqno {next_seqno} > {} packets (SID {})",
                s.num_packets,
                sid.to_hex()
            ));
        }
        s.stop_sent = true;
        if s.gone {
            return Ok(None);
        }
        let peer = PeerRecord {
            // 0xFFFFFFFF means "all of them" (RFC 4656 §3.8).
            next_seqno: if next_seqno == u32::MAX {
                s.num_packets
            } else {
                next_seqno
            },
            num_skips,
        };
        let stop = ControlToTester::Stop(Stop {
            stop_time,
            peer: Some(peer),
        });
        match tokio::time::timeout(TESTER_REPLY_TIMEOUT, s.link.send_wait(stop)).await {
            Ok(Ok(())) => Ok(Some(i)),
            Ok(Err(e)) => {
                s.log.warn(format!("cannot stop: {e}"));
                s.gone = true;
                s.done = true;
                Ok(None)
            }
            Err(_) => {
                s.log.warn("tester did not take its Stop in time: killed");
                s.link.kill();
                s.gone = true;
                s.done = true;
                Ok(None)
            }
        }
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

    /// Our Stop-Sessions: one record per local sender (protocol.md §2.5).
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
    /// (protocol.md §7.4, §7.7), and return to Idle.
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
                if let Some(g) = s.disk.take() {
                    warn_if_over(&s, g.commit(len));
                }
            } else {
                s.log.info("session data discarded");
                let _ = self.ctx.store.delete_async(&s.sid).await;
            }
        }
    }

    /// The tester is gone but the file is there: finalise it as incomplete from
    /// control's own descriptor (docs/processes.md).
    async fn finalise_incomplete_here(&self, s: &mut TestSession) {
        let Some(file) = s.file.take() else { return };
        let label = format!("session {}", s.sid.to_hex());
        let stoptime = now_with_offset(self.ctx.config.debug_time_offset);
        let res = tokio::task::spawn_blocking(move || {
            let w = owamp::owp::ReceiveWriter::resume(file, &label)?;
            w.finalize_incomplete(stoptime)
        })
        .await;
        let len = self.ctx.store.file_size_async(&s.sid).await.unwrap_or(0);
        match res {
            Ok(Ok(_)) => {
                s.log.info("data kept as incomplete");
                if let Some(g) = s.disk.take() {
                    warn_if_over(s, g.commit(len));
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
    /// senders stop (protocol.md §7.2 step 4).
    async fn client_vanished(&mut self) {
        let now = now_with_offset(self.ctx.config.debug_time_offset);
        for s in &mut self.sessions {
            if s.gone {
                continue;
            }
            s.receiver_result = None;
            if s.stop_sent && s.role == TesterRole::Receiver {
                // It has the peer's Stop and part of its ranges: no complete record
                // will come, so it ends, and control keeps its data as incomplete.
                s.link.kill();
                s.gone = true;
                s.done = true;
                continue;
            }
            s.stop_sent = true;
            let sent = match s.role {
                TesterRole::Receiver => stop_receiver(&mut *s.link, now),
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
    /// kill testers and delete their files (protocol.md §7.2: closed before Start-Sessions).
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

/// Stops a receiving tester whose peer sent no record of the session: `Stop`, then
/// `Finalize` keeps its data as incomplete (tester_ipc).
fn stop_receiver(
    link: &mut dyn TesterLink,
    stop_time: Num64,
) -> Result<(), crate::testers::TesterError> {
    link.send(&ControlToTester::Stop(Stop {
        stop_time,
        peer: None,
    }))?;
    link.send(&ControlToTester::Finalize)
}

/// Some of the peer's skip ranges to a receiving tester, in messages that fit the
/// channel, each waiting for room (a tester that takes none for the reply timeout is
/// given up on).
async fn forward_skips(
    link: &mut dyn TesterLink,
    ranges: Vec<SkipRange>,
) -> Result<(), crate::testers::TesterError> {
    for chunk in chunks(&ranges, MAX_SKIPS_PER_MESSAGE) {
        tokio::time::timeout(
            TESTER_REPLY_TIMEOUT,
            link.send_wait(ControlToTester::Skips(chunk)),
        )
        .await
        .map_err(|_| {
            crate::testers::TesterError::Gone("tester took no skip ranges in time".into())
        })??;
    }
    Ok(())
}

/// A kept file that did not fit its class's disk allowance is kept all the same
/// (`DiskGuard::commit`): said once, with what the class now refuses.
fn warn_if_over(s: &TestSession, commit: Commit) {
    if let Commit::Over(e) = commit {
        s.log.warn(format!(
            "data kept over the disk allowance ({e}): the class takes no new receive \
             session until stored data is removed"
        ));
    }
}
