//! A small in-process OWAMP server for the client tests, written from the spec
//! (§1–§3) on top of owamp's wire codecs, crypto and engine: one thread per control
//! connection, real UDP test sessions on loopback, sessions kept for Fetch-Session.
#![allow(dead_code)]

use owamp::crypto::{ControlCipher, ControlStream, Role, Token, derive_key, random_bytes};
use owamp::engine::{
    ReceiverParams, SenderParams, SocketOptions, StopFlag, UdpTestSocket, run_receiver, run_sender,
};
use owamp::packet::{PacketFormat, TestKeys};
use owamp::schedule::Schedule;
use owamp::time::Clock;
use owamp::wire::{
    AcceptSession, CommandKind, FetchAck, FetchSession, RequestSession, ServerGreeting,
    ServerStart, SessionStop, SetupResponse, StartAck, StopLimits, StopSessionsDecoder,
};
use owamp::{AcceptCode, Mode, ModeSet, Num64, PacketRecord, Sid, SkipRange};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct MockConfig {
    pub modes: ModeSet,
    /// identity → pass-phrase
    pub users: HashMap<String, Vec<u8>>,
    /// Refuse every Request-Session with this Accept code.
    pub refuse_request: Option<AcceptCode>,
    pub start_time: Num64,
    /// Send our Stop-Sessions as soon as our own sessions end, before the client's
    /// (the reference server usually does: its receiver ends before the client's
    /// sender has waited out its end delay).
    pub stop_first: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            modes: ModeSet::ALL,
            users: HashMap::new(),
            refuse_request: None,
            start_time: Num64(0xdd12_e59f_0000_0000),
            stop_first: false,
        }
    }
}

#[derive(Clone)]
struct Stored {
    req: RequestSession,
    records: Vec<PacketRecord>,
    next_seqno: u32,
    skips: Vec<SkipRange>,
}

pub struct MockServer {
    pub addr: SocketAddr,
    store: Arc<Mutex<HashMap<Sid, Stored>>>,
    /// Start-Acks sent, so that a test can act once sessions run rather than after a
    /// guessed delay.
    starts: Arc<AtomicUsize>,
    /// Test packets received by the server's receivers, so that a test can act once
    /// packets flow.
    received: Arc<AtomicUsize>,
}

/// The receiver's records, counted as they come.
struct CountingSink {
    records: Vec<PacketRecord>,
    received: Arc<AtomicUsize>,
}

impl owamp::engine::RecordSink for CountingSink {
    fn record(&mut self, r: &PacketRecord) -> std::io::Result<()> {
        self.records.push(*r);
        self.received.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl MockServer {
    pub fn start(cfg: MockConfig) -> MockServer {
        Self::start_on("127.0.0.1:0", cfg)
    }

    pub fn start_on(bind: &str, cfg: MockConfig) -> MockServer {
        let l = TcpListener::bind(bind).unwrap();
        let addr = l.local_addr().unwrap();
        let store = Arc::new(Mutex::new(HashMap::new()));
        let starts = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let st = store.clone();
        let n = starts.clone();
        let rcv = received.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let cfg = cfg.clone();
                let st = st.clone();
                let n = n.clone();
                let rcv = rcv.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &cfg, &st, &n, &rcv);
                });
            }
        });
        MockServer {
            addr,
            store,
            starts,
            received,
        }
    }

    /// How many test packets the server's receivers have recorded (lost ones included).
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// How many Start-Acks the server has sent.
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    pub fn stored_sids(&self) -> Vec<Sid> {
        self.store.lock().unwrap().keys().copied().collect()
    }
}

type R<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

struct Local {
    sid: Sid,
    req: RequestSession,
    udp: Option<UdpSocket>,
    /// Our side is the receiver.
    receiver: bool,
}

fn serve(
    conn: TcpStream,
    cfg: &MockConfig,
    store: &Mutex<HashMap<Sid, Stored>>,
    starts: &AtomicUsize,
    received: &Arc<AtomicUsize>,
) -> R<()> {
    let peer_ip = conn.peer_addr().map_err(e)?.ip();
    let mut s = ControlStream::new(conn);
    let challenge: [u8; 16] = random_bytes("c").map_err(e)?;
    let salt: [u8; 16] = random_bytes("s").map_err(e)?;
    let g = ServerGreeting {
        modes: cfg.modes,
        challenge,
        salt,
        count: 1024,
    };
    s.write_raw(&g.encode()).map_err(e)?;
    let mut b = [0u8; 164];
    s.read_raw(&mut b).map_err(e)?;
    let resp = SetupResponse::decode(&b).map_err(e)?;
    let mode = Mode::from_bit(resp.mode).ok_or("bad mode")?;
    let server_iv: [u8; 16] = random_bytes("iv").map_err(e)?;
    let mut keys = None;
    let mut accept = 0u8;
    if mode.is_secure() {
        let id = resp.key_id_str();
        match cfg.users.get(&id) {
            Some(pf) => {
                let dk = derive_key(pf, &salt, 1024);
                let tok = Token::decrypt(&dk, &resp.token);
                if tok.challenge_matches(&challenge) {
                    keys = Some(tok.keys);
                } else {
                    accept = 1;
                }
            }
            None => accept = 1,
        }
    }
    let ss = ServerStart {
        accept,
        server_iv,
        start_time: cfg.start_time,
    };
    s.write_raw(&ss.encode_clear()).map_err(e)?;
    match (&keys, accept) {
        (Some(k), 0) => {
            s.set_cipher(ControlCipher::new(
                Role::Server,
                k,
                &resp.client_iv,
                &server_iv,
            ));
            let tail = s
                .cipher_mut()
                .seal_without_hmac(&ss.encode_tail())
                .map_err(e)?;
            s.write_raw(&tail).map_err(e)?;
        }
        _ => {
            s.write_raw(&ss.encode_tail()).map_err(e)?;
            if accept != 0 {
                return Ok(());
            }
        }
    }
    let test_keys = |sid: Sid| {
        keys.as_ref()
            .map(|k| TestKeys::derive(sid, &k.aes, &k.hmac))
    };
    let mut locals: Vec<Local> = Vec::new();
    loop {
        let first = s.read_blocks(1).map_err(e)?;
        let mut blk = [0u8; 16];
        blk.copy_from_slice(&first);
        match CommandKind::from_block(&blk) {
            CommandKind::RequestSession => {
                let rest = s.read_blocks(5).map_err(e)?;
                s.read_hmac().map_err(e)?;
                let mut pre = [0u8; 96];
                pre[..16].copy_from_slice(&first);
                pre[16..].copy_from_slice(&rest);
                let p = RequestSession::decode_preamble(&pre).map_err(e)?;
                let slots = s.read_blocks(p.num_slots as usize).map_err(e)?;
                s.read_hmac().map_err(e)?;
                let raw = RequestSession::decode_slots(&slots).map_err(e)?;
                let req = p.into_request(&raw).map_err(e)?;
                if let Some(code) = cfg.refuse_request {
                    let a = AcceptSession {
                        accept: code,
                        port: 0,
                        sid: Sid([0; 16]),
                    };
                    s.write_message(&[&a.encode()]).map_err(e)?;
                    continue;
                }
                // Open-mode guard of protocol.md §2.1.3 is not needed here.
                let _ = peer_ip;
                let receiver = req.conf_receiver;
                let ip = if receiver {
                    req.receiver_addr
                } else {
                    req.sender_addr
                };
                let udp = UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(e)?;
                let port = udp.local_addr().map_err(e)?.port();
                let sid = if receiver {
                    let x: [u8; 16] = random_bytes("sid").map_err(e)?;
                    Sid(x)
                } else {
                    req.sid
                };
                let mut req = req;
                if receiver {
                    req.receiver_port = port;
                    req.sid = sid;
                } else {
                    req.sender_port = port;
                }
                locals.push(Local {
                    sid,
                    req,
                    udp: Some(udp),
                    receiver,
                });
                let a = AcceptSession {
                    accept: AcceptCode::Ok,
                    port,
                    sid,
                };
                s.write_message(&[&a.encode()]).map_err(e)?;
            }
            CommandKind::StartSessions => {
                s.read_hmac().map_err(e)?;
                let stop = StopFlag::new();
                let mut rx = Vec::new();
                let mut tx = Vec::new();
                for l in &mut locals {
                    let udp = l.udp.take().ok_or("session started twice")?;
                    let req = l.req.clone();
                    let keys = test_keys(l.sid);
                    let stop = stop.clone();
                    let sid = l.sid;
                    if l.receiver {
                        let peer = SocketAddr::new(req.sender_addr, req.sender_port);
                        let received = received.clone();
                        rx.push((
                            sid,
                            req.clone(),
                            std::thread::spawn(move || {
                                let clock = Clock::new(None, 0.0);
                                let fmt =
                                    PacketFormat::new(mode, keys.as_ref(), req.padding).unwrap();
                                let mut sock = UdpTestSocket::new(
                                    udp,
                                    peer,
                                    SocketOptions {
                                        dscp: None,
                                        packet_len: fmt.len(),
                                        packets_per_second: 100.0,
                                    },
                                )
                                .unwrap();
                                let mut sched =
                                    Schedule::new(sid, req.start_time, &req.slots, req.num_packets);
                                let mut recs = CountingSink {
                                    records: Vec::new(),
                                    received,
                                };
                                let mut ctl = stop;
                                run_receiver(
                                    &mut sock,
                                    &clock,
                                    &fmt,
                                    &mut sched,
                                    ReceiverParams {
                                        num_packets: req.num_packets,
                                        timeout: req.timeout,
                                        expected_src: peer,
                                    },
                                    &mut recs,
                                    &mut ctl,
                                )
                                .unwrap();
                                recs.records
                            }),
                        ));
                    } else {
                        let peer = SocketAddr::new(req.receiver_addr, req.receiver_port);
                        tx.push((
                            sid,
                            std::thread::spawn(move || {
                                let clock = Clock::new(None, 0.0);
                                let mut fmt =
                                    PacketFormat::new(mode, keys.as_ref(), req.padding).unwrap();
                                let mut sock = UdpTestSocket::new(
                                    udp,
                                    peer,
                                    SocketOptions {
                                        dscp: None,
                                        packet_len: fmt.len(),
                                        packets_per_second: 100.0,
                                    },
                                )
                                .unwrap();
                                let mut sched =
                                    Schedule::new(sid, req.start_time, &req.slots, req.num_packets);
                                let mut ctl = stop;
                                run_sender(
                                    &mut sock,
                                    &clock,
                                    &mut fmt,
                                    &mut sched,
                                    SenderParams {
                                        num_packets: req.num_packets,
                                        timeout: req.timeout,
                                        end_delay: Duration::from_millis(100),
                                    },
                                    &mut ctl,
                                )
                                .unwrap()
                            }),
                        ));
                    }
                }
                let a = StartAck {
                    accept: AcceptCode::Ok,
                };
                s.write_message(&[&a.encode()]).map_err(e)?;
                starts.fetch_add(1, Ordering::SeqCst);
                let read_theirs =
                    |s: &mut ControlStream<TcpStream>, n: u32| -> R<owamp::wire::StopSessions> {
                        let hdr = s.read_blocks(1).map_err(e)?;
                        let mut h = [0u8; 16];
                        h.copy_from_slice(&hdr);
                        let mut d = StopSessionsDecoder::new(
                            &h,
                            StopLimits {
                                max_sessions: n,
                                max_skips: 1 << 20,
                            },
                        )
                        .map_err(e)?;
                        loop {
                            let n = d.blocks_needed();
                            if n == 0 {
                                break;
                            }
                            let b = s.read_blocks(n).map_err(e)?;
                            d.feed(&b).map_err(e)?;
                        }
                        s.read_hmac().map_err(e)?;
                        d.finish().map_err(e)
                    };
                let nrx = rx.len() as u32;
                let mut theirs = None;
                if !cfg.stop_first {
                    // Wait for the client's Stop-Sessions (the client always sends one).
                    theirs = Some(read_theirs(&mut s, nrx)?);
                    stop.stop();
                }
                let mut ours = Vec::new();
                for (sid, h) in tx {
                    let r = h.join().map_err(|_| "sender panicked")?;
                    ours.push(SessionStop {
                        sid,
                        next_seqno: r.next_seqno,
                        skips: r.skips,
                    });
                }
                let mut received = Vec::new();
                for (sid, req, h) in rx {
                    received.push((sid, req, h.join().map_err(|_| "receiver panicked")?));
                }
                let accept = theirs.as_ref().map_or(AcceptCode::Ok, |t| t.accept);
                let msg = owamp::wire::StopSessions {
                    accept,
                    sessions: ours,
                }
                .encode();
                // Store what we received before our Stop-Sessions goes out when we can
                // (the client may exit, and a test look at the store, right after it).
                let wrote_first = theirs.is_none();
                if wrote_first {
                    s.write_message(&[&msg]).map_err(e)?;
                }
                let theirs = match theirs {
                    Some(t) => t,
                    None => read_theirs(&mut s, nrx)?,
                };
                for (sid, req, recs) in received {
                    let st = theirs
                        .sessions
                        .iter()
                        .find(|x| x.sid == sid)
                        .ok_or("no stop record")?;
                    let recs: Vec<PacketRecord> =
                        recs.into_iter().filter(|r| r.seq < st.next_seqno).collect();
                    store.lock().unwrap().insert(
                        sid,
                        Stored {
                            req,
                            records: recs,
                            next_seqno: st.next_seqno,
                            skips: st.skips.clone(),
                        },
                    );
                }
                if !wrote_first {
                    s.write_message(&[&msg]).map_err(e)?;
                }
                locals.clear();
            }
            CommandKind::FetchSession => {
                let rest = s.read_blocks(1).map_err(e)?;
                s.read_hmac().map_err(e)?;
                let mut b = [0u8; 32];
                b[..16].copy_from_slice(&first);
                b[16..].copy_from_slice(&rest);
                let f = FetchSession::decode(&b).map_err(e)?;
                let found = store.lock().unwrap().get(&f.sid).cloned();
                let Some(st) = found else {
                    s.write_message(&[&FetchAck::reject(AcceptCode::Failure).encode()])
                        .map_err(e)?;
                    continue;
                };
                let ack = FetchAck {
                    accept: AcceptCode::Ok,
                    finished: 1,
                    next_seqno: st.next_seqno,
                    num_skips: st.skips.len() as u32,
                    num_records: st.records.len() as u32,
                };
                s.write_message(&[&ack.encode()]).map_err(e)?;
                s.write_message(&[&st.req.encode_preamble(), &st.req.encode_slots()])
                    .map_err(e)?;
                s.write_message(&[&owamp::wire::encode_skip_ranges(&st.skips)])
                    .map_err(e)?;
                s.write_message(&[&owamp::wire::encode_records(&st.records)])
                    .map_err(e)?;
            }
            other => return Err(format!("unexpected command {other:?}")),
        }
    }
}
