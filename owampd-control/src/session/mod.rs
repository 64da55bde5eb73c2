//! One OWAMP-Control connection, from the greeting to the close (RFC 4656 §3, protocol.md §1,
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

use crate::conn::{ConnError, ControlConn};
use crate::directory::Directory;
use crate::fetch;
use crate::log::Logger;
use crate::policy::{
    BandwidthGuard, ClassIdx, Commit, DiskGuard, Policy, TestSessionCount, TestSessionGuard,
    session_bandwidth_bps, session_disk_estimate,
};
use crate::ports::{PortAllocator, PortLease};
use crate::shutdown::{Deadlines, Shutdown};
use crate::store::Store;
use crate::testers::{EventRx, EventTx, TesterEvent, TesterLauncher, TesterLink};
use owamp::crypto::{self, ControlCipher, SessionKeys, Token};
use owamp::time::now_with_offset;
use owamp::wire::{
    self, AcceptSession, CommandKind, FetchSession, RequestSession, ServerGreeting, ServerStart,
    SessionStop, SetupResponse, StartAck, StopLimits, StopPiece, StopSessions, StopSessionsDecoder,
};
use owamp::{AcceptCode, Mode, ModeSet, Num64, Sid, SkipRange};
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tester_ipc::{
    ControlToTester, MAX_SKIPS_PER_MESSAGE, Outcome, PeerRecord, Role as TesterRole, Setup, Stop,
    TesterToControl, chunks,
};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Most slots one Request-Session may carry. The reference has no limit, but reading
/// 2^32 slots is not a request anyone means: past this we close (protocol.md §9 allows close
/// for unreadable requests).
pub const MAX_SLOTS: u32 = 1 << 20;

/// How far before the server's clock a session's Start Time may be, at Request-Session
/// and again at Start-Sessions. RFC 4656 §3.5 lets a session start no earlier than
/// Start-Sessions whatever its Start Time says, so packets scheduled before then are
/// late: a sender skips them and a receiver records them lost, one by one. perfSONAR's
/// owampd accepts any Start Time (one an hour old at 1,000 packets/s makes it write
/// 90 MB of lost records at once); we refuse one more than this in the past, which
/// still leaves room for a client whose clock is behind ours or a slow start.
pub const MAX_START_IN_PAST: Duration = Duration::from_secs(60);

/// `Some(seconds)` when `start` is more than [`MAX_START_IN_PAST`] before `now`.
pub fn start_too_far_past(start: Num64, now: Num64) -> Option<u64> {
    let secs = now.0.saturating_sub(start.0) >> 32;
    (secs > MAX_START_IN_PAST.as_secs()).then_some(secs)
}

/// How long a tester may take to start, and to report after Stop.
const TESTER_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the control process that every connection reads.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `authmode` (1|2|4 bits).
    pub authmodes: ModeSet,
    /// `controltimeout`; None when 0.
    pub control_timeout: Option<Duration>,
    /// PBKDF2 Count sent in Server-Greeting and used to derive a user's key
    /// (`pbkdf2_count`, protocol.md §1.1).
    pub pbkdf2_count: u32,
    pub end_delay_s: f64,
    /// The daemon's start time, sent in Server-Start (protocol.md §1.3).
    pub start_time: Num64,
    pub debug_time_offset: f64,
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

/// Which commands may come next (protocol.md §2.0).
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

/// v4-mapped IPv6 addresses compare as IPv4 (protocol.md §2.1.3, §7.5).
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
    /// Number of Packets of the request.
    num_packets: u32,
    /// Start Time of the request.
    start_time: Num64,
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
    /// A sender's skip ranges as they arrive, before its report.
    sender_skips: Vec<SkipRange>,
    /// A sender's own Stop-Sessions record (RFC 4656 §3.8).
    sender_result: Option<(u32, Vec<SkipRange>)>,
    /// A receiver's report after finalisation: the `.owp` finished word.
    receiver_result: Option<u32>,
    /// Control's own handle on the receiver's file, to finalise it as incomplete if
    /// the tester dies (docs/processes.md).
    file: Option<File>,
    disk: Option<DiskGuard>,
    _concurrent: TestSessionGuard,
    _bandwidth: BandwidthGuard,
    _port: PortLease,
}

pub async fn serve_connection<S>(stream: S, peer: SocketAddr, ctx: Arc<ServerCtx>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    serve_connection_until(stream, peer, ctx, Shutdown::never()).await;
}

/// [`serve_connection`], ended early by the daemon's stop (crate::shutdown): running
/// test sessions end with the Stop-Sessions exchange, anything else is closed.
pub async fn serve_connection_until<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<ServerCtx>,
    shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // maxcontrolsessions is the master's to count (docs/processes.md): a connection
    // over it never reaches control.
    let log = ctx.log.peer(peer);
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
        shutdown,
        stopped_by_shutdown: false,
        admission: None,
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
    shutdown: Shutdown,
    /// The daemon's stop ended this connection's test period: its client may still
    /// fetch (until the exchange deadline), and do nothing else.
    stopped_by_shutdown: bool,
    /// Its place among the greeted connections about to start testers (admission.rs),
    /// given back once its first request has been answered.
    admission: Option<crate::admission::Greeted>,
}

impl Connection<'_> {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<(), SessionError> {
        let shutdown = self.shutdown.clone();
        tokio::select! {
            r = self.handshake(conn) => if !r? {
                return Ok(());
            },
            _ = shutdown.begun() => {
                self.log.debug("closed during the handshake: the server is stopping");
                return Ok(());
            }
        }
        loop {
            let Some(block) = self.next_command(conn).await? else {
                return Ok(());
            };
            let cmd = CommandKind::from_block(&block);
            if !CommandState::Idle.allows(cmd) {
                return Err(SessionError::Protocol(format!(
                    "command {} is not allowed now",
                    cmd.as_byte()
                )));
            }
            if self.shutdown.deadlines().is_some() && cmd != CommandKind::FetchSession {
                self.log
                    .info("closed: the server is stopping (only Fetch-Session is served)");
                return Ok(());
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
            // Its first request is answered: the testers it started count themselves.
            self.admission = None;
        }
    }

    /// The next command's first block, or `None` when the daemon's stop closes the
    /// connection instead: at once, unless the stop ended this connection's test period,
    /// whose client may still fetch until the exchange deadline.
    async fn next_command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<Option<[u8; 16]>, SessionError> {
        let shutdown = self.shutdown.clone();
        let deadlines: Deadlines = tokio::select! {
            biased;
            d = shutdown.begun() => d,
            b = conn.read_block("command", true) => return Ok(Some(b?)),
        };
        if !self.stopped_by_shutdown {
            self.log.debug("closed: the server is stopping");
            return Ok(None);
        }
        match tokio::time::timeout_at(deadlines.exchange, conn.read_block("command", true)).await {
            Ok(b) => Ok(Some(b?)),
            Err(_) => {
                self.log.debug("closed: the server is stopping");
                Ok(None)
            }
        }
    }
}

mod handshake;
mod period;
mod request;
mod slots;

#[cfg(test)]
mod flow_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

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
    fn start_times_more_than_a_minute_past_are_too_far() {
        let now = Num64(4_000_000_000u64 << 32);
        let ago = |s: u64| Num64(now.0 - (s << 32));
        assert_eq!(start_too_far_past(ago(60), now), None);
        assert_eq!(start_too_far_past(ago(61), now), Some(61));
        assert_eq!(start_too_far_past(Num64(0), now), Some(4_000_000_000));
        assert_eq!(start_too_far_past(Num64(now.0 + (5 << 32)), now), None);
    }

    #[test]
    fn v4_mapped_compares_as_v4() {
        let m: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(canonical_ip(m), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(canonical_ip(v6), v6);
    }
}
