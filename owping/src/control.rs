//! The client end of an OWAMP-Control connection (RFC 4656 §3, protocol.md §1–§2): connect,
//! the handshake with mode selection (protocol.md §1.8), Request-Session, Start-Sessions,
//! Stop-Sessions and Fetch-Session, all blocking with a deadline on every read so a
//! silent server gives a message naming the step that timed out.

use crate::net::{Family, connect_control};
use owamp::crypto::{
    ControlCipher, ControlStream, Role, SessionKeys, StreamError, Token, derive_key, random_bytes,
};
use owamp::owp::{FetchInfo, FetchedFileWriter, OwpError, SessionHeader};
use owamp::packet::TestKeys;
use owamp::time::duration_to_num64;
use owamp::wire::{
    AcceptSession, FetchAck, FetchSession, RequestSession, ServerGreeting, ServerStart,
    SessionStop, SetupResponse, StartAck, StartSessions, StopLimits, StopSessions,
    StopSessionsDecoder, WireError, blocks_for,
};
use owamp::{AcceptCode, Mode, ModeSet, Num64, PacketRecord, Sid, SkipRange, Timestamp};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// PBKDF2 counts below this are refused (RFC 4656 §3.1 asks for at least 1024).
pub const MIN_COUNT: u32 = 1024;
/// Counts above this are refused: a hostile server could otherwise make the client
/// spin for minutes (protocol.md §1.1, "Ours"). The reference servers send 2048.
pub const MAX_COUNT: u32 = 1 << 20;
/// Slots in a fetched session header beyond this are refused (16 MiB of slots).
const MAX_FETCH_SLOTS: u32 = 1 << 20;
/// Records read per chunk of a fetch: 256 records are exactly 400 blocks.
const FETCH_CHUNK_RECORDS: u32 = 256;

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("{0}")]
    Net(#[from] crate::net::NetError),
    #[error("timed out {step} (server {peer})")]
    Timeout {
        step: &'static str,
        peer: SocketAddr,
    },
    #[error("control connection to {peer} failed while {step}: {source}")]
    Stream {
        step: &'static str,
        peer: SocketAddr,
        #[source]
        source: StreamError,
    },
    #[error("bad {step} from {peer}: {source}")]
    Wire {
        step: &'static str,
        peer: SocketAddr,
        #[source]
        source: WireError,
    },
    #[error("server {peer} offers no modes (Modes=0): it will not serve this client")]
    NoModes { peer: SocketAddr },
    #[error(
        "No Common Modes: server {peer} offers {offered}, this client may use {usable} (a pass-phrase is needed for A and E)"
    )]
    NoCommonModes {
        peer: SocketAddr,
        offered: String,
        usable: String,
    },
    #[error(
        "server {peer} asks for PBKDF2 count {count}: refused (must be {MIN_COUNT}..={MAX_COUNT})"
    )]
    BadCount { peer: SocketAddr, count: u32 },
    #[error("{what} refused by {peer}: {accept}; likely cause: {hint}")]
    Refused {
        what: &'static str,
        peer: SocketAddr,
        accept: AcceptCode,
        hint: &'static str,
    },
    #[error("bad {what} from {peer}: {detail}")]
    Protocol {
        what: &'static str,
        peer: SocketAddr,
        detail: String,
    },
    /// A stored session without one record: nothing to save or summarise. The
    /// reference's clients refuse such a fetch too (and the connection stays usable).
    #[error(
        "the session holds no records on {peer} (no packet was sent in it; is the sender's clock synchronized?)"
    )]
    NoRecords { peer: SocketAddr },
    #[error("random source: {0}")]
    Random(String),
    #[error(transparent)]
    File(#[from] OwpError),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The likely cause behind a refusal, for the one-line message (ARCHITECTURE.md "Conventions": every
/// refusal says what and why).
pub fn refusal_hint(what: &str, accept: AcceptCode) -> &'static str {
    match (what, accept) {
        ("Server-Start", AcceptCode::Failure) => {
            "authentication (unknown user or wrong pass-phrase) or the server's policy for this address"
        }
        ("Fetch-Session", AcceptCode::Failure) => {
            "the session is unknown to the server or never finished; is your clock synchronized via NTP properly?"
        }
        ("Fetch-Session", AcceptCode::InternalError) => {
            "the server could not read the session data; is your clock synchronized via NTP properly?"
        }
        (_, AcceptCode::Failure) => {
            "the server's policy (limits on sessions, bandwidth or disk, or open mode not allowed)"
        }
        (_, AcceptCode::InternalError) => "a problem on the server (see its log)",
        (_, AcceptCode::NotSupported) => "a request option the server does not support",
        (_, AcceptCode::PermanentResourceLimit) => "the server lacks the resources, permanently",
        (_, AcceptCode::TemporaryResourceLimit) => {
            "the server is busy (no free test port or too many sessions); try again later"
        }
        (_, AcceptCode::Ok) => "none",
    }
}

/// How to open a control connection.
#[derive(Clone, Debug)]
pub struct ConnectParams {
    /// `host`, `host:port` or `[v6]:port` (port 861 by default).
    pub server: String,
    /// `-S`: a local address (or `addr:port`) to bind to.
    pub src: Option<String>,
    pub family: Family,
    /// `-B`: SO_BINDTODEVICE.
    pub bind_device: Option<String>,
    /// `-A` (default all three).
    pub requested: ModeSet,
    pub identity: Option<String>,
    pub passphrase: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    /// Deadline for each reply from the server.
    pub io_timeout: Duration,
}

/// Picks the mode (protocol.md §1.8): the strongest of `offered & requested`, without A and E
/// when there is no pass-phrase.
pub fn select_mode(offered: ModeSet, requested: ModeSet, have_passphrase: bool) -> Option<Mode> {
    let mut avail = ModeSet(offered.0 & requested.0).owamp_only();
    if !have_passphrase {
        avail = avail.without(Mode::Authenticated).without(Mode::Encrypted);
    }
    avail.strongest()
}

fn letters(m: ModeSet) -> String {
    let s: String = [Mode::Authenticated, Mode::Encrypted, Mode::Open]
        .iter()
        .filter(|x| m.contains(**x))
        .map(|x| x.letter())
        .collect();
    if s.is_empty() { "nothing".into() } else { s }
}

/// An open, set-up control connection.
pub struct Control {
    stream: ControlStream<TcpStream>,
    pub mode: Mode,
    keys: Option<SessionKeys>,
    /// Time from sending Set-Up-Response to receiving Server-Start (protocol.md §1.8).
    pub rtt_bound: Num64,
    /// Server-Start's Start-Time: when the server started (owup).
    pub server_start: Timestamp,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    io_timeout: Duration,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("mode", &self.mode)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Connects and runs the handshake (protocol.md §1.1–1.4).
    pub fn connect(p: &ConnectParams) -> Result<Control, ControlError> {
        let tcp = connect_control(
            &p.server,
            p.src.as_deref(),
            p.family,
            p.bind_device.as_deref(),
            p.connect_timeout,
        )?;
        let peer = tcp.peer_addr().map_err(|e| crate::net::NetError::Socket {
            what: "peer address",
            source: e,
        })?;
        let local = tcp.local_addr().map_err(|e| crate::net::NetError::Socket {
            what: "local address",
            source: e,
        })?;
        // Commands are small and answered one at a time: no Nagle delays.
        let _ = tcp.set_nodelay(true);
        let mut c = Control {
            stream: ControlStream::new(tcp),
            mode: Mode::Open,
            keys: None,
            rtt_bound: Num64::ZERO,
            server_start: Num64::ZERO,
            local,
            peer,
            io_timeout: p.io_timeout,
        };
        c.handshake(p)?;
        Ok(c)
    }

    fn deadline(&mut self, d: Duration) {
        let _ = self.stream.get_ref().set_read_timeout(Some(d));
    }

    fn stream_err(&self, step: &'static str, e: StreamError) -> ControlError {
        if let StreamError::Io { source, .. } = &e
            && matches!(
                source.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            )
        {
            return ControlError::Timeout {
                step,
                peer: self.peer,
            };
        }
        ControlError::Stream {
            step,
            peer: self.peer,
            source: e,
        }
    }

    fn wire_err(&self, step: &'static str, e: WireError) -> ControlError {
        ControlError::Wire {
            step,
            peer: self.peer,
            source: e,
        }
    }

    fn read_raw(&mut self, buf: &mut [u8], step: &'static str) -> Result<(), ControlError> {
        self.stream
            .read_raw(buf)
            .map_err(|e| self.stream_err(step, e))
    }

    fn read_blocks(&mut self, n: usize, step: &'static str) -> Result<Vec<u8>, ControlError> {
        self.stream
            .read_blocks(n)
            .map_err(|e| self.stream_err(step, e))
    }

    fn read_hmac(&mut self, step: &'static str) -> Result<(), ControlError> {
        self.stream
            .read_hmac()
            .map_err(|e| self.stream_err(step, e))
    }

    fn read_block16(&mut self, step: &'static str) -> Result<[u8; 16], ControlError> {
        let v = self.read_blocks(1, step)?;
        let mut b = [0u8; 16];
        if let Some(s) = v.get(..16) {
            b.copy_from_slice(s);
        }
        Ok(b)
    }

    fn read_block32(&mut self, step: &'static str) -> Result<[u8; 32], ControlError> {
        let v = self.read_blocks(2, step)?;
        let mut b = [0u8; 32];
        if let Some(s) = v.get(..32) {
            b.copy_from_slice(s);
        }
        Ok(b)
    }

    fn write(&mut self, segments: &[&[u8]], step: &'static str) -> Result<(), ControlError> {
        self.stream
            .write_message(segments)
            .map_err(|e| self.stream_err(step, e))
    }

    fn handshake(&mut self, p: &ConnectParams) -> Result<(), ControlError> {
        self.deadline(p.io_timeout);
        let mut g = [0u8; ServerGreeting::LEN];
        self.read_raw(&mut g, "waiting for the Server-Greeting")?;
        let greeting =
            ServerGreeting::decode(&g).map_err(|e| self.wire_err("Server-Greeting", e))?;
        if greeting.modes.owamp_only().is_empty() {
            return Err(ControlError::NoModes { peer: self.peer });
        }
        let have_pf = p.passphrase.is_some() && p.identity.is_some();
        let mode = select_mode(greeting.modes, p.requested, have_pf).ok_or_else(|| {
            let mut usable = ModeSet(p.requested.0).owamp_only();
            if !have_pf {
                usable = usable.without(Mode::Authenticated).without(Mode::Encrypted);
            }
            ControlError::NoCommonModes {
                peer: self.peer,
                offered: letters(greeting.modes),
                usable: letters(usable),
            }
        })?;
        self.mode = mode;

        // Open mode sends zeros in KeyID, Token and Client-IV (protocol.md §10).
        let mut resp = SetupResponse {
            mode: mode.bit(),
            key_id: [0u8; 80],
            token: [0u8; 64],
            client_iv: [0u8; 16],
        };
        if let (true, Some(pf), Some(id)) = (mode.is_secure(), &p.passphrase, &p.identity) {
            if !(MIN_COUNT..=MAX_COUNT).contains(&greeting.count) {
                return Err(ControlError::BadCount {
                    peer: self.peer,
                    count: greeting.count,
                });
            }
            resp.key_id = SetupResponse::key_id_from_str(id)
                .map_err(|e| self.wire_err("identity (-u)", e))?;
            let keys = SessionKeys::random().map_err(|e| ControlError::Random(e.to_string()))?;
            let dk = derive_key(pf, &greeting.salt, greeting.count);
            resp.token = Token {
                challenge: greeting.challenge,
                keys: keys.clone(),
            }
            .encrypt(&dk);
            resp.client_iv =
                random_bytes("Client-IV").map_err(|e| ControlError::Random(e.to_string()))?;
            self.keys = Some(keys);
        }
        let sent = Instant::now();
        self.stream
            .write_raw(&resp.encode())
            .map_err(|e| self.stream_err("sending the Set-Up-Response", e))?;
        let mut clear = [0u8; 32];
        self.read_raw(&mut clear, "waiting for the Server-Start")?;
        self.rtt_bound = duration_to_num64(sent.elapsed());
        let accept = clear[15];
        let mut tail = [0u8; 16];
        match (&self.keys, accept) {
            (Some(keys), 0) => {
                let mut server_iv = [0u8; 16];
                server_iv.copy_from_slice(clear.get(16..32).unwrap_or(&[0u8; 16]));
                self.stream.set_cipher(ControlCipher::new(
                    Role::Client,
                    keys,
                    &resp.client_iv,
                    &server_iv,
                ));
                // The encrypted block joins the receive HMAC, checked with the next
                // server message (protocol.md §1.3).
                tail = self.read_block16("reading the Server-Start")?;
            }
            _ => self.read_raw(&mut tail, "reading the Server-Start")?,
        }
        let start =
            ServerStart::decode(&clear, &tail).map_err(|e| self.wire_err("Server-Start", e))?;
        self.server_start = start.start_time;
        match start.accept_code() {
            Some(AcceptCode::Ok) => Ok(()),
            Some(accept) => Err(ControlError::Refused {
                what: "Server-Start",
                peer: self.peer,
                accept,
                hint: refusal_hint("Server-Start", accept),
            }),
            None => Err(ControlError::Protocol {
                what: "Server-Start",
                peer: self.peer,
                detail: format!("Accept value {accept}"),
            }),
        }
    }

    /// The test keys of a session (protocol.md §3.1), `None` in open mode.
    pub fn test_keys(&self, sid: Sid) -> Option<TestKeys> {
        match (&self.keys, self.mode.is_secure()) {
            (Some(k), true) => Some(TestKeys::derive(sid, &k.aes, &k.hmac)),
            _ => None,
        }
    }

    /// The socket, to wait for the server's Stop-Sessions with `poll`.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.get_ref().as_fd()
    }

    /// Request-Session (preamble and slots in ONE write, protocol.md §2.1) and its
    /// Accept-Session. A refusal is an error naming the Accept code.
    pub fn request_session(&mut self, req: &RequestSession) -> Result<AcceptSession, ControlError> {
        let pre = req.encode_preamble();
        let slots = req.encode_slots();
        self.write(&[&pre, &slots], "sending Request-Session")?;
        self.deadline(self.io_timeout);
        let b = self.read_block32("waiting for the Accept-Session")?;
        self.read_hmac("reading the Accept-Session")?;
        let acc = AcceptSession::decode(&b).map_err(|e| self.wire_err("Accept-Session", e))?;
        if acc.accept != AcceptCode::Ok {
            return Err(ControlError::Refused {
                what: "Request-Session",
                peer: self.peer,
                accept: acc.accept,
                hint: refusal_hint("Request-Session", acc.accept),
            });
        }
        Ok(acc)
    }

    /// Start-Sessions and its Start-Ack (protocol.md §2.3, §2.4).
    pub fn start_sessions(&mut self) -> Result<(), ControlError> {
        self.write(&[&StartSessions.encode()], "sending Start-Sessions")?;
        self.deadline(self.io_timeout);
        let b = self.read_block16("waiting for the Start-Ack")?;
        self.read_hmac("reading the Start-Ack")?;
        let ack = StartAck::decode(&b).map_err(|e| self.wire_err("Start-Ack", e))?;
        if ack.accept != AcceptCode::Ok {
            return Err(ControlError::Refused {
                what: "Start-Sessions",
                peer: self.peer,
                accept: ack.accept,
                hint: refusal_hint("Start-Sessions", ack.accept),
            });
        }
        Ok(())
    }

    /// Sends our Stop-Sessions: one record per session in which we were the sender.
    pub fn send_stop(
        &mut self,
        accept: AcceptCode,
        sessions: Vec<SessionStop>,
    ) -> Result<(), ControlError> {
        let msg = StopSessions { accept, sessions }.encode();
        self.write(&[&msg], "sending Stop-Sessions")
    }

    /// Reads the server's Stop-Sessions (protocol.md §2.5), waiting at most `wait`.
    pub fn read_stop(
        &mut self,
        limits: StopLimits,
        wait: Duration,
    ) -> Result<StopSessions, ControlError> {
        self.deadline(wait);
        let hdr = self.read_block16("waiting for the server's Stop-Sessions")?;
        let mut d = StopSessionsDecoder::new(&hdr, limits)
            .map_err(|e| self.wire_err("Stop-Sessions", e))?;
        loop {
            let n = d.blocks_needed();
            if n == 0 {
                break;
            }
            let b = self.read_blocks(n, "reading the server's Stop-Sessions")?;
            d.feed(&b).map_err(|e| self.wire_err("Stop-Sessions", e))?;
        }
        self.read_hmac("reading the server's Stop-Sessions")?;
        d.finish().map_err(|e| self.wire_err("Stop-Sessions", e))
    }

    /// Fetch-Session for the whole session `sid` (protocol.md §2.6–2.8), written to `out`
    /// as a v3 `.owp` file (skip ranges first, then the records, as the reference
    /// client writes it). Returns the Fetch-Ack.
    pub fn fetch_to<W: Write>(
        &mut self,
        sid: Sid,
        out: W,
        path: &Path,
    ) -> Result<FetchAck, ControlError> {
        self.fetch_range_to(sid, 0, u32::MAX, out, path)
    }

    /// Fetch-Session for the records with `begin ≤ seqno ≤ end` (protocol.md §2.6), written to
    /// `out` as [`Control::fetch_to`] writes a whole session. A partial range of a
    /// session still running is served by the reference and by our server (§2.8):
    /// powstream `-t` summarises its sub-sessions this way.
    pub fn fetch_range_to<W: Write>(
        &mut self,
        sid: Sid,
        begin: u32,
        end: u32,
        out: W,
        path: &Path,
    ) -> Result<FetchAck, ControlError> {
        let req = FetchSession { begin, end, sid };
        self.write(&[&req.encode()], "sending Fetch-Session")?;
        // The reference server retries for ~31 s before it answers an unfinished
        // session (protocol.md §2.8): allow for that.
        self.deadline(self.io_timeout + Duration::from_secs(40));
        let b = self.read_block16("waiting for the Fetch-Ack")?;
        self.read_hmac("reading the Fetch-Ack")?;
        let ack = FetchAck::decode(&b).map_err(|e| self.wire_err("Fetch-Ack", e))?;
        if ack.accept != AcceptCode::Ok {
            return Err(ControlError::Refused {
                what: "Fetch-Session",
                peer: self.peer,
                accept: ack.accept,
                hint: refusal_hint("Fetch-Session", ack.accept),
            });
        }
        self.deadline(self.io_timeout);
        let step = "reading the fetched session";
        // 1. The stored Request-Session: 6 blocks + HMAC, the slots + HMAC.
        let pre = self.read_blocks(6, step)?;
        self.read_hmac(step)?;
        let nslots = pre
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        if nslots == 0 || nslots > MAX_FETCH_SLOTS {
            return Err(ControlError::Protocol {
                what: "fetched Request-Session",
                peer: self.peer,
                detail: format!("{nslots} slots"),
            });
        }
        let slots = self.read_blocks(nslots as usize, step)?;
        self.read_hmac(step)?;
        let mut stored = Vec::with_capacity(pre.len() + 16 + slots.len() + 16);
        stored.extend_from_slice(&pre);
        stored.extend_from_slice(&[0u8; 16]);
        stored.extend_from_slice(&slots);
        stored.extend_from_slice(&[0u8; 16]);
        let session = SessionHeader::parse(&stored)?;
        // 2. Skip ranges (a range holds at least one packet: K <= npackets).
        if ack.num_skips > session.npackets() {
            return Err(ControlError::Protocol {
                what: "Fetch-Ack",
                peer: self.peer,
                detail: format!(
                    "{} skip ranges for {} packets",
                    ack.num_skips,
                    session.npackets()
                ),
            });
        }
        let skip_bytes = self.read_blocks(blocks_for(8 * ack.num_skips as usize), step)?;
        self.read_hmac(step)?;
        let skips: Vec<SkipRange> = skip_bytes
            .chunks_exact(8)
            .take(ack.num_skips as usize)
            .map(|c| SkipRange {
                first: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                last: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        // 3. The records, streamed to the file in whole-block chunks. None at all: the
        // fetch is refused, as the reference's clients refuse it, and nothing is written
        // (the connection stays in step: only the records' HMAC block is left to read).
        if ack.num_records == 0 {
            self.read_hmac(step)?;
            return Err(ControlError::NoRecords { peer: self.peer });
        }
        let info = FetchInfo {
            finished: u32::from(ack.finished),
            next_seqno: ack.next_seqno,
            num_records: ack.num_records,
        };
        let mut w = FetchedFileWriter::begin(out, path, &session, info, &skips)?;
        let mut left = ack.num_records;
        while left > 0 {
            let n = left.min(FETCH_CHUNK_RECORDS);
            let bytes = self.read_blocks(blocks_for(25 * n as usize), step)?;
            for c in bytes.chunks_exact(25).take(n as usize) {
                let mut r = [0u8; 25];
                r.copy_from_slice(c);
                w.record(&PacketRecord::from_bytes(&r))?;
            }
            left -= n;
        }
        self.read_hmac(step)?;
        let mut inner = w.finish()?;
        inner.flush().map_err(|e| ControlError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Ok(ack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_selection() {
        let all = ModeSet(7);
        assert_eq!(select_mode(all, all, true), Some(Mode::Encrypted));
        assert_eq!(select_mode(all, all, false), Some(Mode::Open));
        assert_eq!(
            select_mode(ModeSet(2 | 1), all, true),
            Some(Mode::Authenticated)
        );
        assert_eq!(select_mode(ModeSet(2), all, false), None);
        assert_eq!(select_mode(ModeSet(4), ModeSet(1), true), None);
        // TWAMP's mixed mode (8) is never chosen by an OWAMP client.
        assert_eq!(select_mode(ModeSet(8), ModeSet(15), true), None);
    }
}
