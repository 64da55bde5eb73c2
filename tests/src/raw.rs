//! A deliberately small OWAMP-Control client built straight from `owamp::wire` and
//! `owamp::crypto`, the harness's one protocol client: for tests that must send what
//! owping never would (malformed, truncated or unsupported messages, connections left
//! idle or cut mid-message), or must see each message of a session as it comes.

use owamp::crypto::{ControlCipher, ControlStream, Role, SessionKeys, Token, derive_key};
use owamp::packet::TestKeys;
use owamp::wire::{
    AcceptSession, FetchAck, FetchSession, RequestSession, ServerGreeting, ServerStart,
    SetupResponse, StartAck, StartSessions, StopLimits, StopSessions, StopSessionsDecoder,
    decode_records, decode_skip_ranges,
};
use owamp::{AcceptCode, Mode, Num64, PacketRecord, Sid, Slot, SlotKind};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A connected control session after the greeting.
pub struct Raw {
    pub stream: ControlStream<TcpStream>,
    pub greeting: ServerGreeting,
    /// Server-Start, once [`Raw::setup`] was accepted.
    pub server_start: Option<ServerStart>,
    /// The session keys of an accepted authenticated or encrypted set-up.
    pub keys: Option<SessionKeys>,
}

/// Any error of the client as an `io::Error`, its text kept.
fn err(e: &dyn std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Raw {
    /// Connects and reads the 64-byte Server-Greeting.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Raw> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        let mut stream = ControlStream::new(tcp);
        let mut g = [0u8; 64];
        stream
            .read_raw(&mut g)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let greeting =
            ServerGreeting::decode(&g).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Raw {
            stream,
            greeting,
            server_start: None,
            keys: None,
        })
    }

    pub fn tcp(&mut self) -> &mut TcpStream {
        self.stream.get_mut()
    }

    /// Sends raw bytes, bypassing any cipher.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp().write_all(bytes)
    }

    /// True when the server closes the connection (EOF or reset) within the read timeout
    /// without sending anything more.
    pub fn closed_without_reply(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.tcp().read(&mut b), Ok(0) | Err(_))
            && !matches!(self.tcp().read(&mut b), Ok(n) if n > 0)
    }

    /// Completes Set-Up-Response in `mode` (with `user`/`passphrase` for the secure modes)
    /// and returns Server-Start's Accept value.
    pub fn setup(&mut self, mode: Mode, user: &str, passphrase: &[u8]) -> std::io::Result<u8> {
        let mut resp = SetupResponse {
            mode: mode.bit(),
            key_id: [0u8; 80],
            token: [0u8; 64],
            client_iv: [0u8; 16],
        };
        let mut keys = None;
        if mode.is_secure() {
            let k = SessionKeys::random().map_err(|e| err(&e))?;
            let dk = derive_key(passphrase, &self.greeting.salt, self.greeting.count);
            let token = Token {
                challenge: self.greeting.challenge,
                keys: k.clone(),
            };
            resp.key_id = SetupResponse::key_id_from_str(user).map_err(|e| err(&e))?;
            resp.token = token.encrypt(&dk);
            resp.client_iv = owamp::crypto::random_bytes::<16>("client IV").map_err(|e| err(&e))?;
            keys = Some(k);
        }
        self.stream.write_raw(&resp.encode()).map_err(|e| err(&e))?;
        let mut clear = [0u8; 32];
        self.stream.read_raw(&mut clear).map_err(|e| err(&e))?;
        let accept = clear[15];
        let mut server_iv = [0u8; 16];
        server_iv.copy_from_slice(&clear[16..32]);
        let tail = match (&keys, accept) {
            (Some(k), 0) => {
                self.stream.set_cipher(ControlCipher::new(
                    Role::Client,
                    k,
                    &resp.client_iv,
                    &server_iv,
                ));
                self.stream.read_blocks(1).map_err(|e| err(&e))?
            }
            _ => {
                let mut t = [0u8; 16];
                self.stream.read_raw(&mut t).map_err(|e| err(&e))?;
                t.to_vec()
            }
        };
        let mut tail16 = [0u8; 16];
        tail16.copy_from_slice(&tail);
        let start = ServerStart::decode(&clear, &tail16).map_err(|e| err(&e))?;
        if accept == 0 {
            self.server_start = Some(start);
            self.keys = keys;
        }
        Ok(accept)
    }

    /// The test keys of session `sid` in an authenticated or encrypted set-up.
    pub fn test_keys(&self, sid: Sid) -> Option<TestKeys> {
        self.keys
            .as_ref()
            .map(|k| TestKeys::derive(sid, &k.aes, &k.hmac))
    }

    /// Sends a Request-Session and reads Accept-Session.
    pub fn request(&mut self, req: &RequestSession) -> std::io::Result<AcceptSession> {
        let pre = req.encode_preamble();
        let slots = req.encode_slots();
        self.stream
            .write_message(&[&pre, &slots])
            .map_err(|e| err(&e))?;
        self.read_accept_session()
    }

    /// Reads a message of `N` octets (whole blocks) and its HMAC block.
    fn read_message<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let b = self.stream.read_blocks(N / 16).map_err(|e| err(&e))?;
        self.stream.read_hmac().map_err(|e| err(&e))?;
        let mut m = [0u8; N];
        m.copy_from_slice(&b);
        Ok(m)
    }

    /// Reads one Accept-Session (two blocks and an HMAC block).
    pub fn read_accept_session(&mut self) -> std::io::Result<AcceptSession> {
        AcceptSession::decode(&self.read_message()?).map_err(|e| err(&e))
    }

    /// Sends Start-Sessions and reads Start-Ack's Accept value.
    pub fn start_sessions(&mut self) -> std::io::Result<AcceptCode> {
        self.stream
            .write_message(&[&StartSessions.encode()])
            .map_err(|e| err(&e))?;
        let ack = StartAck::decode(&self.read_message()?).map_err(|e| err(&e))?;
        Ok(ack.accept)
    }

    /// Sends a Stop-Sessions.
    pub fn stop_sessions(&mut self, stop: &StopSessions) -> std::io::Result<()> {
        self.stream
            .write_message(&[&stop.encode()])
            .map_err(|e| err(&e))
    }

    /// Reads the server's Stop-Sessions, within `limits`.
    pub fn read_stop_sessions(&mut self, limits: StopLimits) -> std::io::Result<StopSessions> {
        let h = self.stream.read_blocks(1).map_err(|e| err(&e))?;
        let mut head = [0u8; 16];
        head.copy_from_slice(&h);
        let mut dec = StopSessionsDecoder::new(&head, limits).map_err(|e| err(&e))?;
        while dec.blocks_needed() > 0 {
            let b = self
                .stream
                .read_blocks(dec.blocks_needed())
                .map_err(|e| err(&e))?;
            dec.feed(&b).map_err(|e| err(&e))?;
        }
        self.stream.read_hmac().map_err(|e| err(&e))?;
        dec.finish().map_err(|e| err(&e))
    }

    /// Fetch-Session of records `begin..=end` of `sid`: Fetch-Ack, then (when accepted)
    /// the stored request, checked to name `sid` as its receiver, its skip ranges and
    /// the records.
    pub fn fetch(
        &mut self,
        sid: Sid,
        begin: u32,
        end: u32,
    ) -> std::io::Result<(FetchAck, Vec<PacketRecord>)> {
        let f = FetchSession { begin, end, sid };
        self.stream
            .write_message(&[&f.encode()])
            .map_err(|e| err(&e))?;
        let ack = FetchAck::decode(&self.read_message()?).map_err(|e| err(&e))?;
        if ack.accept != AcceptCode::Ok {
            return Ok((ack, vec![]));
        }
        let p = RequestSession::decode_preamble(&self.read_message()?).map_err(|e| err(&e))?;
        if p.sid != sid {
            return Err(err(&format!("fetched session {} for {sid}", p.sid)));
        }
        // A server stores its own receive sessions, as their receiver (RFC 4656 §3.8).
        if !p.conf_receiver {
            return Err(err(&"the stored request is not the receiver's"));
        }
        self.stream
            .read_blocks(p.num_slots as usize)
            .map_err(|e| err(&e))?;
        self.stream.read_hmac().map_err(|e| err(&e))?;
        let sk = self
            .stream
            .read_blocks((ack.num_skips as usize * 8).div_ceil(16))
            .map_err(|e| err(&e))?;
        self.stream.read_hmac().map_err(|e| err(&e))?;
        decode_skip_ranges(&sk, ack.num_skips).map_err(|e| err(&e))?;
        let rb = self
            .stream
            .read_blocks((ack.num_records as usize * 25).div_ceil(16))
            .map_err(|e| err(&e))?;
        self.stream.read_hmac().map_err(|e| err(&e))?;
        let records = decode_records(&rb, ack.num_records).map_err(|e| err(&e))?;
        Ok((ack, records))
    }
}

/// A plausible Request-Session asking the server to receive `n` packets from
/// `sender` (the client side), starting a few seconds from now.
pub fn receive_request(sender: SocketAddr, server_ip: IpAddr, n: u32) -> RequestSession {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    RequestSession {
        conf_sender: false,
        conf_receiver: true,
        num_packets: n,
        sender_port: sender.port(),
        receiver_port: 0,
        sender_addr: sender.ip(),
        receiver_addr: server_ip,
        sid: Sid::default(),
        padding: 0,
        start_time: Num64::from_unix(now.as_secs() + 3, now.subsec_nanos()),
        timeout: Num64::from_secs_f64(2.0),
        type_p: 0,
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            param: Num64::from_secs_f64(0.01),
        }],
    }
}
