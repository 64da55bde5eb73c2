//! A deliberately small OWAMP-Control client built straight from `owamp::wire` and
//! `owamp::crypto`, for tests that must send what owping never would: malformed,
//! truncated or unsupported messages, and connections left idle or cut mid-message.

use owamp::crypto::{ControlCipher, ControlStream, Role, SessionKeys, Token, derive_key};
use owamp::wire::{AcceptSession, RequestSession, ServerGreeting, ServerStart, SetupResponse};
use owamp::{Mode, Num64, Sid, Slot, SlotKind};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A connected control session after the greeting.
pub struct Raw {
    pub stream: ControlStream<TcpStream>,
    pub greeting: ServerGreeting,
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
        Ok(Raw { stream, greeting })
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
        let err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
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
        ServerStart::decode(&clear, &tail16).map_err(|e| err(&e))?;
        Ok(accept)
    }

    /// Sends a Request-Session and reads Accept-Session.
    pub fn request(&mut self, req: &RequestSession) -> std::io::Result<AcceptSession> {
        let err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
        let pre = req.encode_preamble();
        let slots = req.encode_slots();
        self.stream
            .write_message(&[&pre, &slots])
            .map_err(|e| err(&e))?;
        self.read_accept_session()
    }

    /// Reads one Accept-Session (two blocks and an HMAC block).
    pub fn read_accept_session(&mut self) -> std::io::Result<AcceptSession> {
        let err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
        let b = self.stream.read_blocks(2).map_err(|e| err(&e))?;
        self.stream.read_hmac().map_err(|e| err(&e))?;
        let mut a = [0u8; 32];
        a.copy_from_slice(&b);
        AcceptSession::decode(&a).map_err(|e| err(&e))
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
