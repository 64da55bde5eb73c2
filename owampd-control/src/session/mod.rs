//! One OWAMP-Control connection, from the greeting to the close (RFC 4656 §3, spec §1,
//! §2, §7.2–7.3, §9).
//!
//! ```text
//! greeting → Set-Up-Response → Server-Start → Idle ⇄ (Request-Session | Fetch-Session)
//!                                              Idle → Start-Sessions → Running
//!                                              Running → Stop-Sessions exchange → Idle
//! ```
//!
//! Untrusted input never panics this process: every problem is a typed error that
//! closes this connection only. Everything the connection holds (bandwidth, disk,
//! ports, testers) is released by guards when it ends, however it ends.

use crate::clock::now_ntp;
use crate::conn::{ConnError, ControlConn};
use crate::directory::Directory;
use crate::fetch;
use crate::log::Logger;
use crate::policy::{
    BandwidthGuard, ClassIdx, DiskGuard, Policy, TestSessionCount, session_bandwidth_bps,
    session_disk_estimate,
};
use crate::ports::{PortAllocator, PortLease};
use crate::store::Store;
use crate::testers::{EventRx, EventTx, TesterEvent, TesterLauncher, TesterLink};
use ipc::tester::{
    ControlToTester, IpcSkipRange, SessionKeyBytes, StopInfo, TesterOutcome, TesterRole,
    TesterSetup, TesterToControl,
};
use owamp::crypto::{self, ControlCipher, SessionKeys, Token};
use owamp::wire::{
    self, AcceptSession, CommandKind, FetchSession, RequestSession, ServerGreeting, ServerStart,
    SessionStop, SetupResponse, StartAck, StopLimits, StopSessions, StopSessionsDecoder,
};
use owamp::{AcceptCode, Mode, ModeSet, Num64, Sid, SkipRange};
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// PBKDF2 iterations in Server-Greeting: the reference always sends 2048 (spec §1.1).
pub const PBKDF2_COUNT: u32 = 2048;

/// Most slots one Request-Session may carry. The reference has no limit, but reading
/// 2^32 slots is not a request anyone means: past this we close (spec §9 allows close
/// for unreadable requests).
pub const MAX_SLOTS: u32 = 1 << 20;

/// How long a tester may take to start, and to report after Stop.
const TESTER_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the control process that every connection reads.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `authmode` (1|2|4 bits).
    pub authmodes: ModeSet,
    /// `controltimeout`; None when 0.
    pub control_timeout: Option<Duration>,
    pub end_delay_s: f64,
    /// The daemon's start time, sent in Server-Start (spec §1.3).
    pub start_time: Num64,
    pub debug_time_offset: f64,
    pub seccomp_log_only: bool,
}

/// What every connection shares.
pub struct ServerCtx {
    pub config: ServerConfig,
    pub directory: Arc<dyn Directory>,
    pub policy: Policy,
    pub store: Store,
    pub ports: PortAllocator,
    pub log: Logger,
    pub testers: Arc<dyn TesterLauncher>,
}

/// Why a connection ended (logged once).
#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("malformed {message}: {source}")]
    Wire {
        message: &'static str,
        #[source]
        source: wire::WireError,
    },
}

fn wire_err(message: &'static str) -> impl FnOnce(wire::WireError) -> SessionError {
    move |source| SessionError::Wire { message, source }
}

/// Which commands may come next (spec §2.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandState {
    /// Between test periods: Request-Session, Start-Sessions, Fetch-Session.
    Idle,
    /// After Start-Sessions until the Stop-Sessions exchange: only Stop-Sessions.
    Running,
}

impl CommandState {
    pub fn allows(self, cmd: CommandKind) -> bool {
        match self {
            CommandState::Idle => matches!(
                cmd,
                CommandKind::RequestSession
                    | CommandKind::StartSessions
                    | CommandKind::FetchSession
            ),
            CommandState::Running => matches!(cmd, CommandKind::StopSessions),
        }
    }
}

/// The reference's SID layout (spec §2.1.4): the receiver's IPv4 address (or the last
/// 4 bytes of its IPv6 address), the NTP time, 4 random bytes.
pub fn make_sid(receiver: IpAddr, now: Num64, random: [u8; 4]) -> Sid {
    let mut b = [0u8; 16];
    let addr: [u8; 4] = match receiver {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => {
            let o = a.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    b[..4].copy_from_slice(&addr);
    b[4..12].copy_from_slice(&now.to_be_bytes());
    b[12..].copy_from_slice(&random);
    Sid(b)
}

/// v4-mapped IPv6 addresses compare as IPv4 (spec §2.1.3, §7.5).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)),
        v4 => v4,
    }
}

/// One accepted test session and everything it holds.
struct TestSession {
    /// Unique on this connection: events of testers from an earlier test period can
    /// still be queued and must not be taken for a later session's.
    id: usize,
    sid: Sid,
    role: TesterRole,
    request: RequestSession,
    link: Box<dyn TesterLink>,
    log: Logger,
    /// Local endpoint finished its part (sender reported, receiver's time is over or
    /// it reported), or the tester is gone.
    done: bool,
    gone: bool,
    /// Stop was sent: only the final report (or death) completes it now.
    stop_sent: bool,
    /// The tester reported failure: the data is discarded, not kept as incomplete.
    failed: bool,
    /// A sender's own Stop-Sessions record (spec §2.5).
    sender_result: Option<(u32, Vec<SkipRange>)>,
    /// A receiver's report after finalisation: finished word, file length.
    receiver_result: Option<(u32, u64)>,
    /// Control's own handle on the receiver's file, to finalise it as incomplete if
    /// the tester dies (design.md "Processes").
    file: Option<File>,
    class: ClassIdx,
    disk: Option<DiskGuard>,
    _bandwidth: BandwidthGuard,
    _port: PortLease,
}

pub async fn serve_connection<S>(stream: S, peer: SocketAddr, ctx: Arc<ServerCtx>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let log = ctx.log.peer(peer);
    // maxcontrolsessions: close before the greeting (spec §7.1, §9).
    let _guard = match ctx.policy.open_connection() {
        Ok(g) => g,
        Err(e) => {
            log.warn(format!("connection refused: {e}"));
            return;
        }
    };
    let mut conn = ControlConn::new(stream, peer, ctx.config.control_timeout);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut c = Connection {
        ctx: &ctx,
        log: log.clone(),
        peer,
        mode: Mode::Open,
        user: None,
        class: 0,
        keys: None,
        counts: TestSessionCount::default(),
        sessions: Vec::new(),
        next_id: 0,
        events_tx: tx,
        events_rx: rx,
    };
    match c.run(&mut conn).await {
        Ok(()) => log.debug("connection closed"),
        Err(SessionError::Conn(ConnError::Closed { .. })) => log.debug("client closed"),
        Err(e) => log.info(format!("connection closed: {e}")),
    }
    c.abandon_all().await;
    conn.shutdown().await;
}

struct Connection<'a> {
    ctx: &'a ServerCtx,
    log: Logger,
    peer: SocketAddr,
    mode: Mode,
    user: Option<String>,
    class: ClassIdx,
    keys: Option<SessionKeys>,
    counts: TestSessionCount,
    sessions: Vec<TestSession>,
    next_id: usize,
    events_tx: EventTx,
    events_rx: EventRx,
}

impl Connection<'_> {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<(), SessionError> {
        if !self.handshake(conn).await? {
            return Ok(());
        }
        loop {
            let block = conn.read_block("command", true).await?;
            let cmd = CommandKind::from_block(&block);
            if !CommandState::Idle.allows(cmd) {
                return Err(SessionError::Protocol(format!(
                    "command {} is not allowed now",
                    cmd.as_byte()
                )));
            }
            match cmd {
                CommandKind::RequestSession => self.handle_request_session(conn, block).await?,
                CommandKind::StartSessions => {
                    conn.read_hmac("Start-Sessions").await?;
                    self.handle_start_sessions(conn).await?;
                }
                CommandKind::FetchSession => {
                    let rest = conn.read_blocks(1, "Fetch-Session").await?;
                    conn.read_hmac("Fetch-Session").await?;
                    let mut b = [0u8; FetchSession::LEN];
                    b[..16].copy_from_slice(&block);
                    b[16..].copy_from_slice(rest.get(..16).unwrap_or(&[0; 16]));
                    let req = FetchSession::decode(&b).map_err(wire_err("Fetch-Session"))?;
                    fetch::handle_fetch(conn, self.ctx, &self.log, &req).await?;
                }
                CommandKind::StopSessions | CommandKind::Unknown(_) => {
                    // Unreachable: `allows` refused these above.
                    return Err(SessionError::Protocol("unexpected command".into()));
                }
            }
        }
    }

    /// Greeting, Set-Up-Response, Server-Start (spec §1). `Ok(false)`: the connection
    /// ends here without error (no modes, or refused with a Server-Start).
    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<bool, SessionError> {
        let ip = canonical_ip(self.peer.ip());
        let tree = self.ctx.policy.tree();
        let addr_class = self.ctx.directory.class_for_address(ip);
        let mut modes = self.ctx.config.authmodes.owamp_only();
        if tree.get(addr_class).is_some_and(|c| !c.allow_open_mode) {
            modes = modes.without(Mode::Open);
        }
        let rand = |what| {
            crypto::random_bytes::<16>(what)
                .map_err(|e| SessionError::Protocol(format!("no randomness: {e}")))
        };
        let challenge = rand("challenge")?;
        let salt = rand("salt")?;
        let greeting = ServerGreeting {
            modes,
            challenge,
            salt,
            count: PBKDF2_COUNT,
        };
        conn.write_raw(&greeting.encode()).await?;
        if modes.is_empty() {
            self.log
                .info("no authentication mode is allowed for this peer: greeting sent, closing");
            return Ok(false);
        }
        let mut b = [0u8; SetupResponse::LEN];
        conn.read_raw(&mut b, "Set-Up-Response").await?;
        let resp = SetupResponse::decode(&b).map_err(wire_err("Set-Up-Response"))?;
        let Some(mode) = Mode::from_bit(resp.mode) else {
            // Not exactly one of 1/2/4: close without Server-Start (spec §1.2 step 1).
            return Err(SessionError::Protocol(format!(
                "Set-Up-Response mode {:#x} is not one OWAMP mode",
                resp.mode
            )));
        };
        if !modes.contains(mode) {
            // [REC] The reference means to refuse this (spec §1.2 step 2 quirk).
            self.log.info(format!(
                "refused: mode {mode} was not offered (offered {:#x})",
                modes.0
            ));
            self.refuse_start(conn, AcceptCode::Failure).await?;
            return Ok(false);
        }
        let mut class = addr_class;
        if mode.is_secure() {
            let user = resp.key_id_str();
            let pf = self.ctx.directory.passphrase(&user);
            // An unknown user costs the same work as a known one (spec §1.2 step 3).
            let dk = match &pf {
                Some(p) => crypto::derive_key(p, &salt, PBKDF2_COUNT),
                None => crypto::derive_decoy_key(&salt, PBKDF2_COUNT)
                    .map_err(|e| SessionError::Protocol(format!("no randomness: {e}")))?,
            };
            let token = Token::decrypt(&dk, &resp.token);
            let matches = token.challenge_matches(&challenge);
            if pf.is_none() || !matches {
                let why = if pf.is_none() {
                    "unknown user"
                } else {
                    "wrong passphrase"
                };
                self.log.info(format!(
                    "refused: authentication failed for user {user:?} ({why})"
                ));
                self.refuse_start(conn, AcceptCode::Failure).await?;
                return Ok(false);
            }
            class = self.ctx.directory.class_for_user(&user, ip);
            self.keys = Some(token.keys.clone());
            self.user = Some(user);
        }
        self.mode = mode;
        self.class = class;
        let server_iv = if mode.is_secure() {
            rand("Server-IV")?
        } else {
            [0u8; 16]
        };
        let start = ServerStart {
            accept: AcceptCode::Ok.as_u8(),
            server_iv,
            start_time: self.ctx.config.start_time,
        };
        conn.write_raw(&start.encode_clear()).await?;
        if let Some(keys) = &self.keys {
            conn.set_cipher(ControlCipher::new(
                crypto::Role::Server,
                keys,
                &resp.client_iv,
                &server_iv,
            ));
        }
        conn.send_without_hmac(&start.encode_tail()).await?;
        let class_name = tree.get(class).map(|c| c.name.clone()).unwrap_or_default();
        self.log.info(format!(
            "accepted: mode {mode}, user {}, class {class_name}",
            self.user.as_deref().unwrap_or("-")
        ));
        Ok(true)
    }

    /// Server-Start with Accept≠0: everything after byte 31 zeros in clear (spec §1.3).
    async fn refuse_start<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
        accept: AcceptCode,
    ) -> Result<(), SessionError> {
        let start = ServerStart {
            accept: accept.as_u8(),
            server_iv: [0; 16],
            start_time: Num64::ZERO,
        };
        conn.write_raw(&start.encode_clear()).await?;
        conn.write_raw(&[0u8; 16]).await?;
        Ok(())
    }

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

    /// Request-Session (spec §2.1, §7.3): read the whole message whatever it says, then
    /// answer; only unreadable input (bad HMAC, absurd slot count) closes.
    async fn handle_request_session<S: AsyncRead + AsyncWrite + Unpin>(
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
        let mut slot_bytes = Vec::new();
        let mut left = preamble.num_slots as usize;
        while left > 0 {
            let n = left.min(crate::conn::MAX_READ / 16);
            slot_bytes.extend_from_slice(&conn.read_blocks(n, "Request-Session slots").await?);
            left -= n;
        }
        conn.read_hmac("Request-Session slots").await?;
        let slots =
            RequestSession::decode_slots(&slot_bytes).map_err(wire_err("Request-Session"))?;
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

    /// Policy, port, file and tester for one session (spec §7.3, §7.4).
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
        if role == TesterRole::Sender
            && !self.mode.is_secure()
            && canonical_ip(req.receiver_addr) != canonical_ip(self.peer.ip())
        {
            // Open-mode DoS guard (spec §2.1.3).
            return Err((
                AcceptCode::Failure,
                format!(
                    "open mode: the server sends only to the client's own address, not {}",
                    req.receiver_addr
                ),
            ));
        }
        let refuse = |e: crate::policy::PolicyError| (AcceptCode::Failure, e.to_string());
        let tree = ctx.policy.tree();
        self.counts.take(&tree, self.class).map_err(refuse)?;
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
            .bind(local_ip)
            .map_err(|e| (e.accept_code(), e.to_string()))?;
        let port = lease.port();
        match role {
            TesterRole::Receiver => {
                req.receiver_port = port;
                let random = crypto::random_bytes::<4>("SID")
                    .map_err(|e| (AcceptCode::InternalError, e.to_string()))?;
                req.sid = make_sid(local_ip, now_ntp(ctx.config.debug_time_offset), random);
            }
            TesterRole::Sender => req.sender_port = port,
        }
        let sid = req.sid;
        let log = self.log.sid(&sid.to_hex());
        let (file, tester_file) = match role {
            TesterRole::Receiver => {
                let (f, _path) = ctx
                    .store
                    .create(&sid, self.class)
                    .map_err(|e| (AcceptCode::InternalError, e.to_string()))?;
                let dup = f
                    .try_clone()
                    .map_err(|e| (AcceptCode::InternalError, format!("dup data file: {e}")));
                match dup {
                    Ok(d) => (Some(f), Some(d)),
                    Err(e) => {
                        let _ = ctx.store.delete(&sid);
                        return Err(e);
                    }
                }
            }
            TesterRole::Sender => (None, None),
        };
        let setup = TesterSetup {
            role,
            request: req.encode_stored(),
            mode: self.mode.bit(),
            keys: self.keys.as_ref().map(|k| SessionKeyBytes {
                aes: k.aes,
                hmac: k.hmac,
            }),
            peer,
            end_delay_s: ctx.config.end_delay_s,
            debug_time_offset: ctx.config.debug_time_offset,
            seccomp_log_only: ctx.config.seccomp_log_only,
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
                    let _ = ctx.store.delete(&sid);
                }
                return Err((AcceptCode::InternalError, e.to_string()));
            }
            Err(_) => {
                if role == TesterRole::Receiver {
                    let _ = ctx.store.delete(&sid);
                }
                return Err((AcceptCode::InternalError, "tester did not start".into()));
            }
        };
        log.info(format!(
            "session accepted: server is {}, port {port}, peer {peer}, {} packets",
            match role {
                TesterRole::Sender => "sender",
                TesterRole::Receiver => "receiver",
            },
            req.num_packets
        ));
        self.sessions.push(TestSession {
            id: index,
            sid,
            role,
            request: req,
            link,
            log,
            done: false,
            gone: false,
            stop_sent: false,
            failed: false,
            sender_result: None,
            receiver_result: None,
            file,
            class: self.class,
            disk,
            _bandwidth: bandwidth,
            _port: lease,
        });
        Ok((port, sid))
    }

    /// Start-Sessions (spec §2.3, §2.4), then the test period and the Stop-Sessions
    /// exchange (§2.5); back to Idle afterwards.
    async fn handle_start_sessions<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<(), SessionError> {
        let mut accept = AcceptCode::Ok;
        for s in &mut self.sessions {
            if let Err(e) = s.link.send(&ControlToTester::Start) {
                s.log.warn(format!("cannot start: {e}"));
                accept = AcceptCode::InternalError;
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
                        ipc::tester::TesterLogLevel::Error => crate::log::Level::Error,
                        ipc::tester::TesterLogLevel::Warning => crate::log::Level::Warning,
                        ipc::tester::TesterLogLevel::Info => crate::log::Level::Info,
                        ipc::tester::TesterLogLevel::Debug => crate::log::Level::Debug,
                    },
                    format!("tester: {}", l.message),
                );
            }
            TesterEvent::Msg(TesterToControl::ReceiveDone) if s.role == TesterRole::Receiver => {
                if !s.stop_sent {
                    s.done = true;
                }
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
                    TesterOutcome::Sender { next_seqno, skips } if s.role == TesterRole::Sender => {
                        s.sender_result = Some((
                            next_seqno,
                            skips
                                .into_iter()
                                .map(|r| SkipRange {
                                    first: r.first,
                                    last: r.last,
                                })
                                .collect(),
                        ));
                    }
                    TesterOutcome::Receiver {
                        finished,
                        records,
                        lost,
                        file_len,
                    } if s.role == TesterRole::Receiver => {
                        s.log.info(format!(
                            "receive session finalised: finished={finished}, {records} records, {lost} lost"
                        ));
                        s.receiver_result = Some((finished, file_len));
                    }
                    TesterOutcome::Failed { reason } => {
                        // It reported: its data is bad (e.g. a received record at or
                        // past Next Seqno, spec §7.8), not merely cut short.
                        s.log.warn(format!("session failed: {reason}"));
                        s.gone = true;
                        s.failed = true;
                    }
                    _ => {
                        s.log
                            .warn("tester sent a report for the wrong role: killed");
                        s.link.kill();
                        s.gone = true;
                    }
                }
                s.done = true;
            }
            TesterEvent::Msg(other) => {
                // A message not allowed now ends that tester, never control (design.md "IPC").
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
        let header: [u8; 16];
        let stop_time: Num64;
        loop {
            if conn.buffered() >= 16 {
                stop_time = now_ntp(self.ctx.config.debug_time_offset);
                header = conn.read_block("Stop-Sessions", false).await?;
                break;
            }
            if !sent_ours && self.all_done() {
                self.send_our_stop(conn, AcceptCode::Ok).await?;
                sent_ours = true;
                // Re-armed for the rest of the exchange (spec §7.2 step 3); the stop
                // time is when the peer's header is read (spec §7.8).
                header = conn.read_block("Stop-Sessions", true).await?;
                stop_time = now_ntp(self.ctx.config.debug_time_offset);
                break;
            }
            tokio::select! {
                r = conn.fill() => {
                    r?;
                }
                Some((i, ev)) = self.events_rx.recv() => self.apply_event(i, ev),
            }
        }
        if CommandKind::from_block(&header) != CommandKind::StopSessions {
            return Err(SessionError::Protocol(format!(
                "command {} during a test (only Stop-Sessions is allowed)",
                header[0]
            )));
        }
        let peer_stop = self.read_stop_rest(conn, &header).await?;
        // Our senders stop now (a Stop-Sessions cuts their end delay short, §3.3).
        for s in &mut self.sessions {
            if s.role == TesterRole::Sender && !s.done {
                let _ = s.link.send(&ControlToTester::Stop(StopInfo::Stop {
                    stop_time_ntp: stop_time.0,
                    next_seqno: None,
                    skips: vec![],
                }));
            }
        }
        let check = self.match_peer_records(&peer_stop);
        let abort = peer_stop.accept != AcceptCode::Ok || check.is_err();
        for s in &mut self.sessions {
            if s.role != TesterRole::Receiver || s.gone {
                continue;
            }
            let msg = if abort {
                StopInfo::Abort
            } else {
                let rec = peer_stop.sessions.iter().find(|r| r.sid == s.sid);
                StopInfo::Stop {
                    stop_time_ntp: stop_time.0,
                    next_seqno: rec.map(|r| {
                        // 0xFFFFFFFF means "all of them" (spec §2.5).
                        if r.next_seqno == u32::MAX {
                            s.request.num_packets
                        } else {
                            r.next_seqno
                        }
                    }),
                    skips: rec
                        .map(|r| {
                            r.skips
                                .iter()
                                .map(|k| IpcSkipRange {
                                    first: k.first,
                                    last: k.last,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            };
            s.receiver_result = None;
            s.stop_sent = true;
            // An aborted tester exits without a report: nothing to wait for.
            let wait = msg != StopInfo::Abort;
            if let Err(e) = s.link.send(&ControlToTester::Stop(msg)) {
                s.log.warn(format!("cannot stop: {e}"));
                s.gone = true;
                s.done = true;
            } else {
                s.done = !wait;
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
        check.map_err(SessionError::Protocol)
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
            .map(|s| s.request.num_packets)
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
            if r.next_seqno != u32::MAX && r.next_seqno > s.request.num_packets {
                return Err(format!(
                    "Stop-Sessions Next Seqno {} > {} packets (SID {})",
                    r.next_seqno,
                    s.request.num_packets,
                    r.sid.to_hex()
                ));
            }
        }
        Ok(())
    }

    async fn wait_reports(&mut self) {
        let deadline = tokio::time::Instant::now() + TESTER_REPLY_TIMEOUT;
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
            let keep = !aborted && matches!(s.receiver_result, Some((1 | 2, _)));
            if !keep && !aborted && s.gone && !s.failed {
                // Tester died: keep what it wrote, finalised as incomplete.
                self.finalise_incomplete_here(&mut s).await;
                continue;
            }
            if keep {
                let len = s.receiver_result.map(|(_, l)| l).unwrap_or(0);
                if let Some(g) = s.disk.take()
                    && let Err(e) = g.commit(len)
                {
                    s.log.warn(format!("data deleted: {e}"));
                    let _ = self.ctx.store.delete(&s.sid);
                }
            } else {
                s.log.info("session data discarded");
                let _ = self.ctx.store.delete(&s.sid);
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
        let len = self
            .ctx
            .store
            .get(&s.sid)
            .and_then(|f| std::fs::metadata(f.path).ok())
            .map(|m| m.len())
            .unwrap_or(0);
        match res {
            Ok(Ok(_)) => {
                s.log.info("data kept as incomplete");
                if let Some(g) = s.disk.take()
                    && let Err(e) = g.commit(len)
                {
                    s.log.warn(format!("data deleted: {e}"));
                    let _ = self.ctx.store.delete(&s.sid);
                }
            }
            Ok(Err(e)) => {
                s.log.warn(format!("cannot finalise, data deleted: {e}"));
                let _ = self.ctx.store.delete(&s.sid);
            }
            Err(e) => {
                s.log.warn(format!("cannot finalise, data deleted: {e}"));
                let _ = self.ctx.store.delete(&s.sid);
            }
        }
        let _ = s.class;
    }

    /// The client is gone mid-test: receivers finalise what they have as incomplete,
    /// senders stop (spec §7.2 step 4).
    async fn client_vanished(&mut self) {
        let now = now_ntp(self.ctx.config.debug_time_offset);
        for s in &mut self.sessions {
            if s.gone {
                continue;
            }
            let msg = match s.role {
                TesterRole::Receiver => StopInfo::Stop {
                    stop_time_ntp: now.0,
                    next_seqno: None,
                    skips: vec![],
                },
                TesterRole::Sender => StopInfo::Abort,
            };
            s.receiver_result = None;
            s.stop_sent = true;
            let sent = s.link.send(&ControlToTester::Stop(msg)).is_ok();
            // Only receivers report after this (their finalisation); senders just exit.
            s.done = !(sent && s.role == TesterRole::Receiver);
        }
        self.wait_reports().await;
        self.finish_period(false).await;
    }

    /// The connection ends with sessions that never started (or a period cut short):
    /// kill testers and delete their files (spec §7.2: closed before Start-Sessions).
    async fn abandon_all(&mut self) {
        for mut s in std::mem::take(&mut self.sessions) {
            let _ = s.link.send(&ControlToTester::Stop(StopInfo::Abort));
            s.link.kill();
            if s.role == TesterRole::Receiver {
                s.log
                    .info("session abandoned before Start-Sessions: data deleted");
                let _ = self.ctx.store.delete(&s.sid);
            }
        }
    }
}

#[cfg(test)]
mod flow_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn command_states() {
        use CommandKind::*;
        let idle = CommandState::Idle;
        let run = CommandState::Running;
        for c in [RequestSession, StartSessions, FetchSession] {
            assert!(idle.allows(c));
            assert!(!run.allows(c));
        }
        assert!(!idle.allows(StopSessions));
        assert!(run.allows(StopSessions));
        assert!(!idle.allows(Unknown(5)));
        assert!(!run.allows(Unknown(0)));
    }

    #[test]
    fn sid_layout() {
        let sid = make_sid(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            Num64(0xdd12_e59f_f0d3_41db),
            [0x48, 0xde, 0xe1, 0xc4],
        );
        assert_eq!(sid.to_hex(), "7f000001dd12e59ff0d341db48dee1c4");
        let v6 = make_sid(
            IpAddr::V6("2001:db8::a:b0c:d0e".parse::<Ipv6Addr>().unwrap()),
            Num64(1),
            [0; 4],
        );
        assert_eq!(&v6.0[..4], &[0x0b, 0x0c, 0x0d, 0x0e]);
    }

    #[test]
    fn v4_mapped_compares_as_v4() {
        let m: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(canonical_ip(m), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(canonical_ip(v6), v6);
    }
}
