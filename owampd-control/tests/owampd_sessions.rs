//! End to end through the real processes: `owampd` (master) → `owampd-control` →
//! `owampd-tester`, driven by a small client built from `owamp::{wire, crypto,
//! engine}`. One test session in each direction, in open and in encrypted mode, then
//! Fetch-Session of the server's receive session.
//!
//! The binaries come from the workspace target dir: build them first with
//! `cargo build --workspace` (a missing binary fails the test with that hint).

use owamp::crypto::{self, ControlCipher, ControlStream, SessionKeys, Token};
use owamp::engine::{
    ReceiverParams, SenderParams, SocketOptions, StopFlag, UdpTestSocket, run_receiver, run_sender,
};
use owamp::packet::{PacketFormat, TestKeys};
use owamp::schedule::Schedule;
use owamp::time::Clock;
use owamp::wire::{
    AcceptSession, FetchAck, FetchSession, RequestSession, ServerGreeting, ServerStart,
    SessionStop, SetupResponse, StartAck, StartSessions, StopLimits, StopSessions,
    StopSessionsDecoder, decode_records, decode_skip_ranges,
};
use owamp::{AcceptCode, Mode, Num64, PacketRecord, Sid, Slot, SlotKind};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NPACKETS: u32 = 20;
const PASS: &[u8] = b"testpass";

fn bin_dir() -> PathBuf {
    // target/debug/deps/<this test> → target/debug
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(host: &str) -> Server {
    start_server_with(host, None)
}

fn start_server_with(host: &str, limits: Option<&str>) -> Server {
    start_server_args(host, limits, &[])
}

fn start_server_args(host: &str, limits: Option<&str>, extra: &[String]) -> Server {
    let bins = bin_dir();
    for b in ["owampd", "owampd-control", "owampd-tester"] {
        assert!(
            bins.join(b).exists(),
            "{} missing: run `cargo build --workspace` first",
            bins.join(b).display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let data = dir.path().join("data");
    let var = dir.path().join("var");
    for d in [&conf, &data, &var] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(conf.join("owamp-server.conf"), "").unwrap();
    let hex: String = PASS.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(conf.join("owamp-server.pfs"), format!("alice {hex}\n")).unwrap();
    if let Some(l) = limits {
        std::fs::write(conf.join("owamp-server.limits"), l).unwrap();
    }
    // The run-as user must be able to write the data dir.
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), &data, &var] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let port = TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(bins.join("owampd"));
    cmd.arg("-Z")
        .arg("-S")
        .arg(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
        .arg("-c")
        .arg(&conf)
        .arg("-d")
        .arg(&data)
        .arg("-R")
        .arg(&var)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if nix::unistd::geteuid().is_root() {
        cmd.arg("-U").arg("nobody");
    }
    let mut child = cmd.spawn().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("server: {line}");
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if log.lock().unwrap().iter().any(|l| l.contains("ready")) {
            break;
        }
        assert!(Instant::now() < deadline, "owampd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        port,
        log,
        _dir: dir,
    }
}

fn now() -> Num64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Num64::from_unix(d.as_secs(), d.subsec_nanos())
}

struct Client {
    cs: ControlStream<TcpStream>,
    mode: Mode,
    keys: Option<SessionKeys>,
}

fn connect(host: &str, port: u16, mode: Mode) -> Client {
    let tcp = TcpStream::connect((host, port)).unwrap();
    let mut cs = ControlStream::new(tcp);
    let mut g = [0u8; 64];
    cs.read_raw(&mut g).unwrap();
    let g = ServerGreeting::decode(&g).unwrap();
    assert!(g.modes.contains(mode));
    let mut resp = SetupResponse {
        mode: mode.bit(),
        key_id: [0; 80],
        token: [0; 64],
        client_iv: [0; 16],
    };
    let keys = if mode.is_secure() {
        let keys = SessionKeys::random().unwrap();
        resp.key_id = SetupResponse::key_id_from_str("alice").unwrap();
        let dk = crypto::derive_key(PASS, &g.salt, g.count);
        resp.token = Token {
            challenge: g.challenge,
            keys: keys.clone(),
        }
        .encrypt(&dk);
        resp.client_iv = crypto::random_bytes::<16>("iv").unwrap();
        Some(keys)
    } else {
        None
    };
    cs.write_raw(&resp.encode()).unwrap();
    let mut clear = [0u8; 32];
    cs.read_raw(&mut clear).unwrap();
    assert_eq!(clear[15], 0, "Server-Start Accept");
    if let Some(k) = &keys {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&clear[16..32]);
        cs.set_cipher(ControlCipher::new(
            crypto::Role::Client,
            k,
            &resp.client_iv,
            &iv,
        ));
    }
    let tail = cs.read_blocks(1).unwrap();
    let start = ServerStart::decode(&clear, &tail.try_into().unwrap()).unwrap();
    assert_ne!(start.start_time, Num64::ZERO, "daemon start time");
    Client { cs, mode, keys }
}

impl Client {
    fn request(&mut self, req: &RequestSession) -> AcceptSession {
        self.cs
            .write_message(&[&req.encode_preamble(), &req.encode_slots()])
            .unwrap();
        let b = self.cs.read_blocks(2).unwrap();
        self.cs.read_hmac().unwrap();
        AcceptSession::decode(&b.try_into().unwrap()).unwrap()
    }

    fn test_keys(&self, sid: Sid) -> Option<TestKeys> {
        self.keys
            .as_ref()
            .map(|k| TestKeys::derive(sid, &k.aes, &k.hmac))
    }

    fn read_stop(&mut self) -> StopSessions {
        let h = self.cs.read_blocks(1).unwrap();
        let mut dec = StopSessionsDecoder::new(
            &h.try_into().unwrap(),
            StopLimits {
                max_sessions: 4,
                max_skips: NPACKETS,
            },
        )
        .unwrap();
        while dec.blocks_needed() > 0 {
            let b = self.cs.read_blocks(dec.blocks_needed()).unwrap();
            dec.feed(&b).unwrap();
        }
        self.cs.read_hmac().unwrap();
        dec.finish().unwrap()
    }

    fn fetch(&mut self, sid: Sid) -> (FetchAck, Vec<PacketRecord>) {
        self.fetch_range(sid, 0, u32::MAX)
    }

    fn fetch_range(&mut self, sid: Sid, begin: u32, end: u32) -> (FetchAck, Vec<PacketRecord>) {
        let f = FetchSession { begin, end, sid };
        self.cs.write_message(&[&f.encode()]).unwrap();
        let b = self.cs.read_blocks(1).unwrap();
        self.cs.read_hmac().unwrap();
        let ack = FetchAck::decode(&b.try_into().unwrap()).unwrap();
        if ack.accept != AcceptCode::Ok {
            return (ack, vec![]);
        }
        let pre = self.cs.read_blocks(6).unwrap();
        self.cs.read_hmac().unwrap();
        let p = RequestSession::decode_preamble(&pre.try_into().unwrap()).unwrap();
        assert_eq!(p.sid, sid);
        assert!(p.conf_receiver, "stored from the server's point of view");
        self.cs.read_blocks(p.num_slots as usize).unwrap();
        self.cs.read_hmac().unwrap();
        let sk = self
            .cs
            .read_blocks((ack.num_skips as usize * 8).div_ceil(16))
            .unwrap();
        self.cs.read_hmac().unwrap();
        decode_skip_ranges(&sk, ack.num_skips).unwrap();
        let rb = self
            .cs
            .read_blocks((ack.num_records as usize * 25).div_ceil(16))
            .unwrap();
        self.cs.read_hmac().unwrap();
        (ack, decode_records(&rb, ack.num_records).unwrap())
    }
}

fn request(
    conf_receiver: bool,
    sender: SocketAddr,
    receiver: SocketAddr,
    sid: Sid,
    start: Num64,
) -> RequestSession {
    RequestSession {
        conf_sender: !conf_receiver,
        conf_receiver,
        num_packets: NPACKETS,
        sender_port: sender.port(),
        receiver_port: receiver.port(),
        sender_addr: sender.ip(),
        receiver_addr: receiver.ip(),
        sid,
        padding: 0,
        start_time: start,
        timeout: Num64::from_secs_f64(2.0),
        type_p: 0,
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            param: Num64::from_secs_f64(0.01),
        }],
    }
}

fn both_directions(mode: Mode, host: &str) {
    let server = start_server(host);
    both_directions_on(&server, mode, host, 0);
}

fn both_directions_on(server: &Server, mode: Mode, host: &str, dscp: u8) -> Sid {
    let mut c = connect(host, server.port, mode);
    let lo: std::net::IpAddr = host.parse().unwrap();
    let start = now().wrapping_add(Num64::from_secs_f64(1.5));

    // "to": the server receives from our sender.
    let send_sock = UdpSocket::bind((lo, 0)).unwrap();
    let send_addr = send_sock.local_addr().unwrap();
    let mut to_req = request(true, send_addr, SocketAddr::new(lo, 0), Sid([0; 16]), start);
    to_req.type_p = u32::from(dscp) << 24;
    let to = c.request(&to_req);
    assert_eq!(to.accept, AcceptCode::Ok);
    assert_ne!(to.port, 0);

    // "from": the server sends to our receiver; we pick the SID.
    let recv_sock = UdpSocket::bind((lo, 0)).unwrap();
    let recv_addr = recv_sock.local_addr().unwrap();
    let mut from_sid = [0u8; 16];
    from_sid[..4].copy_from_slice(&[127, 0, 0, 1]); // any 4 bytes: the client's choice
    from_sid[4..12].copy_from_slice(&now().to_be_bytes());
    from_sid[12..].copy_from_slice(&crypto::random_bytes::<4>("sid").unwrap());
    let from_sid = Sid(from_sid);
    let mut from_req = request(false, SocketAddr::new(lo, 0), recv_addr, from_sid, start);
    from_req.type_p = u32::from(dscp) << 24;
    let from = c.request(&from_req);
    assert_eq!(from.accept, AcceptCode::Ok);
    assert_eq!(from.sid, from_sid);

    c.cs.write_message(&[&StartSessions.encode()]).unwrap();
    let b = c.cs.read_blocks(1).unwrap();
    c.cs.read_hmac().unwrap();
    assert_eq!(
        StartAck::decode(&b.try_into().unwrap()).unwrap().accept,
        AcceptCode::Ok
    );

    let clock = Clock::new(None, 0.0);
    let mode_c = c.mode;
    let to_keys = c.test_keys(to.sid);
    let from_keys = c.test_keys(from_sid);
    let to_sid = to.sid;
    let to_peer = SocketAddr::new(lo, to.port);
    let from_peer = SocketAddr::new(lo, from.port);
    let clock_s = clock.clone();
    let sender = std::thread::spawn(move || {
        let mut fmt = PacketFormat::new(mode_c, to_keys.as_ref(), 0).unwrap();
        let mut sched = Schedule::new(to_sid, start, &to_req.slots, NPACKETS);
        let mut sock = UdpTestSocket::new(
            send_sock,
            to_peer,
            SocketOptions {
                dscp: None,
                packet_len: fmt.len(),
                packets_per_second: 100.0,
            },
        )
        .unwrap();
        run_sender(
            &mut sock,
            &clock_s,
            &mut fmt,
            &mut sched,
            SenderParams {
                num_packets: NPACKETS,
                timeout: to_req.timeout,
                end_delay: Duration::from_millis(100),
            },
            &mut StopFlag::new(),
        )
        .unwrap()
    });
    let receiver = std::thread::spawn(move || {
        let fmt = PacketFormat::new(mode_c, from_keys.as_ref(), 0).unwrap();
        let mut sched = Schedule::new(from_sid, start, &from_req.slots, NPACKETS);
        let mut sock = UdpTestSocket::new(
            recv_sock,
            from_peer,
            SocketOptions {
                dscp: None,
                packet_len: fmt.len(),
                packets_per_second: 100.0,
            },
        )
        .unwrap();
        let mut records: Vec<PacketRecord> = Vec::new();
        run_receiver(
            &mut sock,
            &clock,
            &fmt,
            &mut sched,
            ReceiverParams {
                num_packets: NPACKETS,
                timeout: from_req.timeout,
                expected_src: from_peer,
            },
            &mut records,
            &mut StopFlag::new(),
        )
        .unwrap();
        records
    });
    let sent = sender.join().unwrap();
    let got = receiver.join().unwrap();
    assert_eq!(sent.next_seqno, NPACKETS);
    assert!(sent.skips.is_empty());

    // Stop-Sessions: ours (our sender), then the server's (its sender).
    let ours = StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![SessionStop {
            sid: to.sid,
            next_seqno: sent.next_seqno,
            skips: vec![],
        }],
    };
    c.cs.write_message(&[&ours.encode()]).unwrap();
    let theirs = c.read_stop();
    assert_eq!(theirs.accept, AcceptCode::Ok);
    assert_eq!(theirs.sessions.len(), 1);
    assert_eq!(theirs.sessions[0].sid, from_sid);
    assert_eq!(theirs.sessions[0].next_seqno, NPACKETS);

    // Everything arrived over loopback, in order.
    let received: Vec<u32> = got.iter().filter(|r| !r.is_lost()).map(|r| r.seq).collect();
    assert_eq!(received, (0..NPACKETS).collect::<Vec<_>>());

    // A partial range, then the whole session.
    let (ack, recs) = c.fetch_range(to.sid, 5, 9);
    assert_eq!((ack.accept, ack.num_records), (AcceptCode::Ok, 5));
    assert_eq!(recs.first().map(|r| r.seq), Some(5));
    let (ack, recs) = c.fetch(to.sid);
    assert_eq!(ack.accept, AcceptCode::Ok);
    assert_eq!(ack.finished, 1);
    assert_eq!(ack.next_seqno, NPACKETS);
    assert_eq!(ack.num_records, NPACKETS);
    let seqs: Vec<u32> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..NPACKETS).collect::<Vec<_>>());
    assert!(recs.iter().all(|r| !r.is_lost()));
    drop(c);
    let lines = server.log.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("accepted: mode {mode}"))),
        "access line missing: {lines:?}"
    );
    to.sid
}

/// `delete_on_fetch=on`: a full fetch deletes the session; fetching it again is Accept=1.
/// (The partial fetch before it does not delete.)
#[test]
fn delete_on_fetch() {
    let server = start_server_with(
        "127.0.0.1",
        Some("limit root with disk=0,bandwidth=0,delete_on_fetch=on\n"),
    );
    let sid = both_directions_on(&server, Mode::Open, "127.0.0.1", 0);
    let mut c = connect("127.0.0.1", server.port, Mode::Open);
    let (ack, _) = c.fetch(sid);
    assert_eq!(
        ack.accept,
        AcceptCode::Failure,
        "deleted after the full fetch"
    );
}

#[test]
fn open_mode_both_directions_and_fetch() {
    both_directions(Mode::Open, "127.0.0.1");
}

#[test]
fn open_mode_over_ipv6() {
    both_directions(Mode::Open, "::1");
}

/// A DSCP in Type-P (EF = 46): the server's sending tester sets the TOS under its
/// seccomp policy (protocol.md §2.1.2).
#[test]
fn dscp_sessions() {
    let server = start_server("127.0.0.1");
    both_directions_on(&server, Mode::Encrypted, "127.0.0.1", 46);
}

#[test]
fn encrypted_mode_both_directions_and_fetch() {
    both_directions(Mode::Encrypted, "127.0.0.1");
}

#[test]
fn authenticated_mode_both_directions_and_fetch() {
    both_directions(Mode::Authenticated, "127.0.0.1");
}

/// The client sends its packets, then vanishes without Stop-Sessions: the server keeps
/// the data as incomplete (finished=2, protocol.md §7.8), which a later connection can fetch
/// by a partial range.
#[test]
fn client_vanishing_mid_session_keeps_incomplete_data() {
    let server = start_server("127.0.0.1");
    let mut c = connect("127.0.0.1", server.port, Mode::Open);
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let start = now().wrapping_add(Num64::from_secs_f64(1.0));
    let send_sock = UdpSocket::bind((lo, 0)).unwrap();
    let send_addr = send_sock.local_addr().unwrap();
    let req = request(true, send_addr, SocketAddr::new(lo, 0), Sid([0; 16]), start);
    let acc = c.request(&req);
    assert_eq!(acc.accept, AcceptCode::Ok);
    c.cs.write_message(&[&StartSessions.encode()]).unwrap();
    c.cs.read_blocks(1).unwrap();
    c.cs.read_hmac().unwrap();
    let mut fmt = PacketFormat::new(Mode::Open, None, 0).unwrap();
    let mut sched = Schedule::new(acc.sid, start, &req.slots, NPACKETS);
    let mut sock = UdpTestSocket::new(
        send_sock,
        SocketAddr::new(lo, acc.port),
        SocketOptions {
            dscp: None,
            packet_len: fmt.len(),
            packets_per_second: 100.0,
        },
    )
    .unwrap();
    let rep = run_sender(
        &mut sock,
        &Clock::new(None, 0.0),
        &mut fmt,
        &mut sched,
        SenderParams {
            num_packets: NPACKETS,
            timeout: req.timeout,
            end_delay: Duration::from_millis(100),
        },
        &mut StopFlag::new(),
    )
    .unwrap();
    assert_eq!(rep.next_seqno, NPACKETS);
    drop(c); // no Stop-Sessions

    let deadline = Instant::now() + Duration::from_secs(20);
    let (ack, recs) = loop {
        let mut c2 = connect("127.0.0.1", server.port, Mode::Open);
        let (ack, recs) = c2.fetch_range(acc.sid, 0, u32::MAX - 1);
        if ack.accept == AcceptCode::Ok {
            break (ack, recs);
        }
        assert!(Instant::now() < deadline, "never finalised: {ack:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ack.finished, 2, "incomplete");
    let seqs: Vec<u32> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..NPACKETS).collect::<Vec<_>>());
}

/// The receiving tester is killed mid-session: only that session is affected, the
/// Stop-Sessions exchange still completes, and control finalises the file as
/// incomplete from its own descriptor.
#[test]
fn killed_tester_leaves_incomplete_data() {
    let server = start_server("127.0.0.1");
    let mut c = connect("127.0.0.1", server.port, Mode::Open);
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let start = now().wrapping_add(Num64::from_secs_f64(1.0));
    let send_sock = UdpSocket::bind((lo, 0)).unwrap();
    let send_addr = send_sock.local_addr().unwrap();
    // 20 packets over about 2 s, Timeout 3 s: the receiver is still listening for a
    // while after the last packet, and the early packets are older than Timeout.
    let mut req = request(true, send_addr, SocketAddr::new(lo, 0), Sid([0; 16]), start);
    req.slots[0].param = Num64::from_secs_f64(0.1);
    req.timeout = Num64::from_secs_f64(3.0);
    let acc = c.request(&req);
    assert_eq!(acc.accept, AcceptCode::Ok);
    c.cs.write_message(&[&StartSessions.encode()]).unwrap();
    c.cs.read_blocks(1).unwrap();
    c.cs.read_hmac().unwrap();
    let mut fmt = PacketFormat::new(Mode::Open, None, 0).unwrap();
    let mut sched = Schedule::new(acc.sid, start, &req.slots, NPACKETS);
    let mut sock = UdpTestSocket::new(
        send_sock,
        SocketAddr::new(lo, acc.port),
        SocketOptions {
            dscp: None,
            packet_len: fmt.len(),
            packets_per_second: 100.0,
        },
    )
    .unwrap();
    let stop = StopFlag::new();
    let stop_sender = stop.clone();
    let timeout = req.timeout;
    let sender = std::thread::spawn(move || {
        run_sender(
            &mut sock,
            &Clock::new(None, 0.0),
            &mut fmt,
            &mut sched,
            SenderParams {
                num_packets: NPACKETS,
                timeout,
                end_delay: Duration::ZERO,
            },
            &mut stop_sender.clone(),
        )
        .unwrap()
    });
    // Past the first packets' send time + Timeout, before the receiver's window ends.
    let first_old = start.wrapping_add(Num64::from_secs_f64(3.5));
    while now() < first_old {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The tester names itself owtest-<last 8 hex digits of the SID>.
    let name = format!("owtest-{}", &acc.sid.to_hex()[24..]);
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .expect("tester process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    stop.stop();
    let rep = sender.join().unwrap();
    assert_eq!(rep.next_seqno, NPACKETS);

    // The server notices its only endpoint is gone and stops first (N=0).
    let theirs = c.read_stop();
    assert!(theirs.sessions.is_empty());
    let ours = StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![SessionStop {
            sid: acc.sid,
            next_seqno: rep.next_seqno,
            skips: vec![],
        }],
    };
    c.cs.write_message(&[&ours.encode()]).unwrap();
    let (ack, recs) = c.fetch_range(acc.sid, 0, u32::MAX - 1);
    assert_eq!(ack.accept, AcceptCode::Ok);
    assert_eq!(ack.finished, 2, "incomplete");
    // Kept: the records older than stop time − Timeout (protocol.md §7.8), a prefix of the
    // session, all received.
    assert!(!recs.is_empty());
    assert!(recs.len() < NPACKETS as usize);
    let seqs: Vec<u32> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..recs.len() as u32).collect::<Vec<_>>());
    assert!(recs.iter().all(|r| !r.is_lost()));
    let lines = server.log.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("data kept as incomplete")),
        "{lines:?}"
    );
}

/// `-P low-high`: test ports come from the range, are not reused while in use, and an
/// exhausted range is Accept=5 (protocol.md §7.6).
#[test]
fn test_ports_from_the_range() {
    // Two consecutive free UDP ports, high enough to stay clear of services.
    let mut low = 41000u16;
    while [low, low + 1]
        .iter()
        .any(|&p| UdpSocket::bind(("127.0.0.1", p)).is_err())
    {
        low += 2;
    }
    let server = start_server_args(
        "127.0.0.1",
        None,
        &["-P".into(), format!("{low}-{}", low + 1)],
    );
    let mut c = connect("127.0.0.1", server.port, Mode::Open);
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let start = now().wrapping_add(Num64::from_secs_f64(60.0));
    let sender: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut ports = Vec::new();
    for _ in 0..2 {
        let a = c.request(&request(
            true,
            sender,
            SocketAddr::new(lo, 0),
            Sid([0; 16]),
            start,
        ));
        assert_eq!(a.accept, AcceptCode::Ok);
        ports.push(a.port);
    }
    ports.sort_unstable();
    assert_eq!(ports, vec![low, low + 1]);
    let a = c.request(&request(
        true,
        sender,
        SocketAddr::new(lo, 0),
        Sid([0; 16]),
        start,
    ));
    assert_eq!(a.accept, AcceptCode::TemporaryResourceLimit);
}
