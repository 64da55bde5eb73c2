//! Request-Session and Accept-Session (RFC 4656 §3.5, protocol.md §2.1–2.2, §7.3–7.4, §9).

use super::slots::{MAX_ACCEPTED_SLOTS, ReadSlots};
use super::*;
use owamp::addr::{is_link_local, link_scope, with_scope};

impl Connection<'_> {
    async fn send_accept<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
        accept: AcceptCode,
        port: u16,
        sid: Sid,
    ) -> Result<(), SessionError> {
        let (port, sid) = if accept == AcceptCode::Ok {
            (port, sid)
        } else {
            (0, Sid([0; 16]))
        };
        let msg = AcceptSession { accept, port, sid }.encode();
        conn.send(&[&msg]).await?;
        Ok(())
    }

    /// Request-Session (protocol.md §2.1, §7.3): read the whole message whatever it says, then
    /// answer; only unreadable input (bad HMAC, absurd slot count) closes.
    pub(super) async fn handle_request_session<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
        first: [u8; 16],
    ) -> Result<(), SessionError> {
        let rest = conn.read_blocks(5, "Request-Session").await?;
        conn.read_hmac("Request-Session").await?;
        let mut pre = [0u8; 96];
        pre[..16].copy_from_slice(&first);
        pre[16..].copy_from_slice(rest.get(..80).unwrap_or(&[0; 80]));
        let preamble =
            RequestSession::decode_preamble(&pre).map_err(wire_err("Request-Session"))?;
        if preamble.num_slots > MAX_SLOTS {
            return Err(SessionError::Protocol(format!(
                "Request-Session with {} slots (at most {MAX_SLOTS} are read)",
                preamble.num_slots
            )));
        }
        let (slots, _share) = match ReadSlots::read(conn, preamble.num_slots).await? {
            ReadSlots::Kept(slots, share) => (slots, share),
            ReadSlots::TooMany => {
                self.log.info(format!(
                    "Request-Session refused: {} slots (at most {MAX_ACCEPTED_SLOTS} are accepted)",
                    preamble.num_slots
                ));
                let code = AcceptCode::PermanentResourceLimit;
                return self.send_accept(conn, code, 0, Sid([0; 16])).await;
            }
            ReadSlots::Busy => {
                self.log.warn(format!(
                    "Request-Session refused: {} slots, and other requests being read hold \
                     the server's slot budget",
                    preamble.num_slots
                ));
                let code = AcceptCode::TemporaryResourceLimit;
                return self.send_accept(conn, code, 0, Sid([0; 16])).await;
            }
        };
        let req = match preamble.into_request_in_mode(&slots, Some(self.mode)) {
            Ok(r) => r,
            Err(problem) => {
                self.log
                    .info(format!("Request-Session refused: {problem:?}"));
                return self
                    .send_accept(conn, problem.accept_code(), 0, Sid([0; 16]))
                    .await;
            }
        };
        match self.accept_session(req).await {
            Ok((port, sid)) => self.send_accept(conn, AcceptCode::Ok, port, sid).await,
            Err((code, why)) => {
                self.log
                    .info(format!("Request-Session refused ({code}): {why}"));
                self.send_accept(conn, code, 0, Sid([0; 16])).await
            }
        }
    }

    /// Policy, port, file and tester for one session (protocol.md §7.3, §7.4).
    async fn accept_session(
        &mut self,
        mut req: RequestSession,
    ) -> Result<(u16, Sid), (AcceptCode, String)> {
        let ctx = self.ctx;
        let role = if req.conf_receiver {
            TesterRole::Receiver
        } else {
            TesterRole::Sender
        };
        let (local_ip, peer) = match role {
            TesterRole::Receiver => (
                req.receiver_addr,
                SocketAddr::new(req.sender_addr, req.sender_port),
            ),
            TesterRole::Sender => (
                req.sender_addr,
                SocketAddr::new(req.receiver_addr, req.receiver_port),
            ),
        };
        // Link-local test addresses name an interface only with a scope: they are
        // accepted over a link-local control connection, whose scope they share (spec
        // §2.1.3, as the reference does); otherwise Accept=3.
        let scope_id = link_scope(&self.peer);
        if [local_ip, peer.ip()].iter().any(is_link_local) && scope_id == 0 {
            return Err((
                AcceptCode::NotSupported,
                "IPv6 link-local test addresses need a link-local control connection".into(),
            ));
        }
        let peer = with_scope(peer, scope_id);
        if role == TesterRole::Sender
            && !self.mode.is_secure()
            && canonical_ip(req.receiver_addr) != canonical_ip(self.peer.ip())
        {
            // Open-mode DoS guard (protocol.md §2.1.3).
            return Err((
                AcceptCode::Failure,
                format!(
                    "open mode: the server sends only to the client's own address, not {}",
                    req.receiver_addr
                ),
            ));
        }
        let now = now_with_offset(ctx.config.debug_time_offset);
        if let Some(secs) = start_too_far_past(req.start_time, now) {
            return Err((
                AcceptCode::Failure,
                format!(
                    "start time {secs} s in the past (at most {} s is accepted)",
                    MAX_START_IN_PAST.as_secs()
                ),
            ));
        }
        let refuse = |e: crate::policy::PolicyError| (AcceptCode::Failure, e.to_string());
        let concurrent = ctx
            .policy
            .open_test_session(self.sessions.len())
            .map_err(|e| (AcceptCode::TemporaryResourceLimit, e.to_string()))?;
        self.counts
            .take(ctx.policy.tree(), self.class)
            .map_err(refuse)?;
        let bps = session_bandwidth_bps(
            &req.slots,
            req.padding,
            local_ip.is_ipv6(),
            self.mode.is_secure(),
        );
        let bandwidth = ctx
            .policy
            .reserve_bandwidth(self.class, bps)
            .map_err(refuse)?;
        let disk = match role {
            TesterRole::Receiver => Some(
                ctx.policy
                    .reserve_disk(
                        self.class,
                        session_disk_estimate(req.slots.len() as u32, req.num_packets),
                    )
                    .map_err(refuse)?,
            ),
            TesterRole::Sender => None,
        };
        let (socket, lease) = ctx
            .ports
            .bind_scoped(local_ip, scope_id)
            .map_err(|e| (e.accept_code(), e.to_string()))?;
        let port = lease.port();
        match role {
            TesterRole::Receiver => {
                req.receiver_port = port;
                let random = crypto::random_bytes::<4>("SID")
                    .map_err(|e| (AcceptCode::InternalError, e.to_string()))?;
                req.sid = Sid::for_receiver(
                    local_ip,
                    now_with_offset(ctx.config.debug_time_offset),
                    random,
                );
            }
            TesterRole::Sender => req.sender_port = port,
        }
        let sid = req.sid;
        let log = self.log.sid(&sid.to_hex());
        let (file, tester_file) = match role {
            TesterRole::Receiver => {
                let (f, _path) = ctx
                    .store
                    .create_async(&sid, self.class)
                    .await
                    .map_err(|e| (AcceptCode::InternalError, e.to_string()))?;
                let dup = f
                    .try_clone()
                    .map_err(|e| (AcceptCode::InternalError, format!("dup data file: {e}")));
                match dup {
                    Ok(d) => (Some(f), Some(d)),
                    Err(e) => {
                        let _ = ctx.store.delete_async(&sid).await;
                        return Err(e);
                    }
                }
            }
            TesterRole::Sender => (None, None),
        };
        let num_packets = req.num_packets;
        let start_time = req.start_time;
        let setup = Setup {
            role,
            num_slots: u32::try_from(req.slots.len()).unwrap_or(u32::MAX),
            request: req,
            mode: self.mode,
            keys: self.keys.clone(),
            peer,
            end_delay: Duration::try_from_secs_f64(ctx.config.end_delay_s.clamp(0.0, 3600.0))
                .unwrap_or(Duration::ZERO),
            debug_time_offset: ctx.config.debug_time_offset,
        };
        let index = self.next_id;
        self.next_id += 1;
        let launched = tokio::time::timeout(
            TESTER_REPLY_TIMEOUT,
            ctx.testers
                .launch(setup, socket, tester_file, index, self.events_tx.clone()),
        )
        .await;
        let link = match launched {
            Ok(Ok(link)) => link,
            Ok(Err(e)) => {
                if role == TesterRole::Receiver {
                    let _ = ctx.store.delete_async(&sid).await;
                }
                return Err((AcceptCode::InternalError, e.to_string()));
            }
            Err(_) => {
                if role == TesterRole::Receiver {
                    let _ = ctx.store.delete_async(&sid).await;
                }
                return Err((
                    AcceptCode::InternalError,
                    "tester could not be started".into(),
                ));
            }
        };
        log.info(format!(
            "session accepted: server is {}, port {port}, peer {peer}, {} packets",
            match role {
                TesterRole::Sender => "sender",
                TesterRole::Receiver => "receiver",
            },
            num_packets
        ));
        self.sessions.push(TestSession {
            id: index,
            sid,
            role,
            num_packets,
            start_time,
            link,
            log,
            done: false,
            gone: false,
            stop_sent: false,
            failed: false,
            sender_skips: Vec::new(),
            sender_result: None,
            receiver_result: None,
            file,
            disk,
            _concurrent: concurrent,
            _bandwidth: bandwidth,
            _port: lease,
        });
        Ok((port, sid))
    }
}
