//! End to end through the real processes: `owampd` (master) → `owampd-control` →
//! `owampd-tester`, driven message by message by the harness's protocol client
//! (`e2e::raw`) with the test endpoints owping runs (`owamp::engine`). One test session
//! in each direction in every mode, over IPv6 and with a DSCP, then Fetch-Session of the
//! server's receive session; delete_on_fetch; a client that vanishes; a killed tester;
//! the test-port range.

use e2e::raw::Raw;
use e2e::{Server, is_root, wait_for};
use owamp::engine::{
    Endpoint, EndpointSetup, ReceiverParams, SenderParams, StopFlag, run_receiver, run_sender,
};
use owamp::wire::{AcceptSession, RequestSession, SessionStop, StopLimits, StopSessions};
use owamp::{AcceptCode, Mode, Num64, PacketRecord, Sid, Slot, SlotKind};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

const NPACKETS: u32 = 20;
const PASS: &[u8] = b"testpass";

/// owampd on `host` with alice's pass-phrase, an optional limits file and `extra`
/// options. As root it runs as `nobody` (the production set-up), so its directories
/// are made writable for that user.
fn start_server_args(host: &str, limits: Option<&str>, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let data = dir.path().join("data");
    for d in [&conf, &data] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(conf.join("owamp-server.conf"), "").unwrap();
    let hex: String = PASS.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(conf.join("owamp-server.pfs"), format!("alice {hex}\n")).unwrap();
    if let Some(l) = limits {
        std::fs::write(conf.join("owamp-server.limits"), l).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), &data] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let port = std::net::TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = vec!["-c", conf.to_str().unwrap()];
    if is_root() {
        args.extend(["-U", "nobody"]);
    }
    args.extend(extra);
    Server::start_in(dir, host, port, &args)
}

fn start_server(host: &str) -> Server {
    start_server_args(host, None, &[])
}

fn now() -> Num64 {
    owamp::time::now_with_offset(0.0)
}

/// A control connection set up in `mode` (as alice in the secure modes), checked to
/// be offered and accepted, with the daemon's start time in Server-Start.
fn connect(server: &Server, mode: Mode) -> Raw {
    let mut c = Raw::connect(server.addr).unwrap();
    assert!(c.greeting.modes.contains(mode), "{mode} not offered");
    assert_eq!(
        c.setup(mode, "alice", PASS).unwrap(),
        0,
        "Server-Start Accept"
    );
    let start = c.server_start.as_ref().expect("accepted");
    assert_ne!(start.start_time, Num64::ZERO, "daemon start time");
    c
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

/// Our end of the accepted session `req` (named `sid`), with `peer`, on `udp`.
fn endpoint(
    c: &Raw,
    mode: Mode,
    req: &RequestSession,
    sid: Sid,
    udp: UdpSocket,
    peer: SocketAddr,
) -> Endpoint {
    let keys = c.test_keys(sid);
    EndpointSetup {
        mode,
        keys: keys.as_ref(),
        padding: req.padding,
        sid,
        start: req.start_time,
        slots: &req.slots,
        num_packets: req.num_packets,
        dscp: None,
        clock_status: None,
        debug_offset: 0.0,
    }
    .open(udp, peer)
    .unwrap()
}

fn send(mut e: Endpoint, timeout: Num64, end_delay: Duration, stop: StopFlag) -> u32 {
    let rep = run_sender(
        &mut e.socket,
        &e.clock,
        &mut e.format,
        &mut e.schedule,
        SenderParams {
            num_packets: NPACKETS,
            timeout,
            end_delay,
        },
        &mut stop.clone(),
    )
    .unwrap();
    assert!(rep.skips.is_empty());
    rep.next_seqno
}

fn our_stop(sid: Sid, next_seqno: u32) -> StopSessions {
    StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![SessionStop {
            sid,
            next_seqno,
            skips: vec![],
        }],
    }
}

/// An open-mode connection with one session the server receives (starting in a second,
/// `adjust`ed first), accepted and started; our sending end of it.
fn started_receive_session(
    server: &Server,
    adjust: impl FnOnce(&mut RequestSession),
) -> (Raw, RequestSession, AcceptSession, Endpoint) {
    let mut c = connect(server, Mode::Open);
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let start = now().wrapping_add(Num64::from_secs_f64(1.0));
    let send_sock = UdpSocket::bind((lo, 0)).unwrap();
    let send_addr = send_sock.local_addr().unwrap();
    let mut req = request(true, send_addr, SocketAddr::new(lo, 0), Sid([0; 16]), start);
    adjust(&mut req);
    let acc = c.request(&req).unwrap();
    assert_eq!(acc.accept, AcceptCode::Ok);
    assert_eq!(c.start_sessions().unwrap(), AcceptCode::Ok);
    let peer = SocketAddr::new(lo, acc.port);
    let tx = endpoint(&c, Mode::Open, &req, acc.sid, send_sock, peer);
    (c, req, acc, tx)
}

const STOP_LIMITS: StopLimits = StopLimits {
    max_sessions: 4,
    max_skips: NPACKETS,
};

fn both_directions(mode: Mode, host: &str) {
    let server = start_server(host);
    both_directions_on(&server, mode, host, 0);
}

fn both_directions_on(server: &Server, mode: Mode, host: &str, dscp: u8) -> Sid {
    let mut c = connect(server, mode);
    let lo: IpAddr = host.parse().unwrap();
    let start = now().wrapping_add(Num64::from_secs_f64(1.5));

    // "to": the server receives from our sender.
    let send_sock = UdpSocket::bind((lo, 0)).unwrap();
    let send_addr = send_sock.local_addr().unwrap();
    let mut to_req = request(true, send_addr, SocketAddr::new(lo, 0), Sid([0; 16]), start);
    to_req.type_p = u32::from(dscp) << 24;
    let to: AcceptSession = c.request(&to_req).unwrap();
    assert_eq!(to.accept, AcceptCode::Ok);
    assert_ne!(to.port, 0);

    // "from": the server sends to our receiver; we pick the SID.
    let recv_sock = UdpSocket::bind((lo, 0)).unwrap();
    let recv_addr = recv_sock.local_addr().unwrap();
    let random = owamp::crypto::random_bytes::<4>("sid").unwrap();
    // Any address bytes: the client's choice.
    let from_sid = Sid::for_receiver("127.0.0.1".parse().unwrap(), now(), random);
    let mut from_req = request(false, SocketAddr::new(lo, 0), recv_addr, from_sid, start);
    from_req.type_p = u32::from(dscp) << 24;
    let from = c.request(&from_req).unwrap();
    assert_eq!(from.accept, AcceptCode::Ok);
    assert_eq!(from.sid, from_sid);

    assert_eq!(c.start_sessions().unwrap(), AcceptCode::Ok);

    let tx = endpoint(
        &c,
        mode,
        &to_req,
        to.sid,
        send_sock,
        SocketAddr::new(lo, to.port),
    );
    let mut rx = endpoint(
        &c,
        mode,
        &from_req,
        from_sid,
        recv_sock,
        SocketAddr::new(lo, from.port),
    );
    let timeout = to_req.timeout;
    let sender =
        std::thread::spawn(move || send(tx, timeout, Duration::from_millis(100), StopFlag::new()));
    let from_peer = SocketAddr::new(lo, from.port);
    let receiver = std::thread::spawn(move || {
        let mut records: Vec<PacketRecord> = Vec::new();
        run_receiver(
            &mut rx.socket,
            &rx.clock,
            &rx.format,
            &mut rx.schedule,
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
    assert_eq!(sent, NPACKETS);

    // Stop-Sessions: ours (our sender), then the server's (its sender).
    c.stop_sessions(&our_stop(to.sid, sent)).unwrap();
    let theirs = c.read_stop_sessions(STOP_LIMITS).unwrap();
    assert_eq!(theirs.accept, AcceptCode::Ok);
    assert_eq!(theirs.sessions.len(), 1);
    assert_eq!(theirs.sessions[0].sid, from_sid);
    assert_eq!(theirs.sessions[0].next_seqno, NPACKETS);

    // Everything arrived over loopback, in order.
    let received: Vec<u32> = got.iter().filter(|r| !r.is_lost()).map(|r| r.seq).collect();
    assert_eq!(received, (0..NPACKETS).collect::<Vec<_>>());

    // A partial range, then the whole session.
    let (ack, recs) = c.fetch(to.sid, 5, 9).unwrap();
    assert_eq!((ack.accept, ack.num_records), (AcceptCode::Ok, 5));
    assert_eq!(recs.first().map(|r| r.seq), Some(5));
    let (ack, recs) = c.fetch(to.sid, 0, u32::MAX).unwrap();
    assert_eq!(ack.accept, AcceptCode::Ok);
    assert_eq!(ack.finished, 1);
    assert_eq!(ack.next_seqno, NPACKETS);
    assert_eq!(ack.num_records, NPACKETS);
    let seqs: Vec<u32> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..NPACKETS).collect::<Vec<_>>());
    assert!(recs.iter().all(|r| !r.is_lost()));
    drop(c);
    let want = format!("accepted: mode {mode}");
    assert!(
        wait_for(Duration::from_secs(10), || server.stderr().contains(&want)),
        "access line missing: {}",
        server.stderr()
    );
    to.sid
}

/// `delete_on_fetch=on`: a full fetch deletes the session; fetching it again is Accept=1.
/// (The partial fetch before it does not delete.)
#[test]
fn delete_on_fetch() {
    let server = start_server_args(
        "127.0.0.1",
        Some("limit root with disk=0,bandwidth=0,delete_on_fetch=on\n"),
        &[],
    );
    let sid = both_directions_on(&server, Mode::Open, "127.0.0.1", 0);
    let mut c = connect(&server, Mode::Open);
    let (ack, _) = c.fetch(sid, 0, u32::MAX).unwrap();
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
    let (c, req, acc, tx) = started_receive_session(&server, |_| {});
    let sent = send(tx, req.timeout, Duration::from_millis(100), StopFlag::new());
    assert_eq!(sent, NPACKETS);
    drop(c); // no Stop-Sessions

    // The server finalises the file in its own time: ask until it is there.
    let mut fetched = None;
    let finalised = wait_for(Duration::from_secs(20), || {
        let mut c2 = connect(&server, Mode::Open);
        let (ack, recs) = c2.fetch(acc.sid, 0, u32::MAX - 1).unwrap();
        let ok = ack.accept == AcceptCode::Ok;
        fetched = Some((ack, recs));
        ok
    });
    let (ack, recs) = fetched.expect("at least one fetch");
    assert!(finalised, "never finalised: {ack:?}");
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
    // 20 packets over about 2 s, Timeout 3 s: the receiver is still listening for a
    // while after the last packet, and the early packets are older than Timeout.
    let (mut c, req, acc, tx) = started_receive_session(&server, |req| {
        req.slots[0].param = Num64::from_secs_f64(0.1);
        req.timeout = Num64::from_secs_f64(3.0);
    });
    let start = req.start_time;
    let stop = StopFlag::new();
    let stop_sender = stop.clone();
    let timeout = req.timeout;
    let sender = std::thread::spawn(move || send(tx, timeout, Duration::ZERO, stop_sender));
    // The kill must come past the first packets' send time + Timeout and before the
    // receiver's window ends: the schedule is what this waits for, so it sleeps until
    // that instant rather than polling for a state.
    let first_old = start.wrapping_add(Num64::from_secs_f64(3.5));
    std::thread::sleep(owamp::time::num64_to_duration(
        first_old.saturating_sub(now()),
    ));
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
    let sent = sender.join().unwrap();
    assert_eq!(sent, NPACKETS);

    // The server notices its only endpoint is gone and stops first (N=0).
    let theirs = c.read_stop_sessions(STOP_LIMITS).unwrap();
    assert!(theirs.sessions.is_empty());
    c.stop_sessions(&our_stop(acc.sid, sent)).unwrap();
    let (ack, recs) = c.fetch(acc.sid, 0, u32::MAX - 1).unwrap();
    assert_eq!(ack.accept, AcceptCode::Ok);
    assert_eq!(ack.finished, 2, "incomplete");
    // Kept: the records older than stop time − Timeout (protocol.md §7.8), a prefix of the
    // session, all received.
    assert!(!recs.is_empty());
    assert!(recs.len() < NPACKETS as usize);
    let seqs: Vec<u32> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..recs.len() as u32).collect::<Vec<_>>());
    assert!(recs.iter().all(|r| !r.is_lost()));
    assert!(
        wait_for(Duration::from_secs(10), || server
            .stderr()
            .contains("data kept as incomplete")),
        "{}",
        server.stderr()
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
    let range = format!("{low}-{}", low + 1);
    let server = start_server_args("127.0.0.1", None, &["-P", &range]);
    let mut c = connect(&server, Mode::Open);
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let start = now().wrapping_add(Num64::from_secs_f64(60.0));
    let sender: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let receive = || request(true, sender, SocketAddr::new(lo, 0), Sid([0; 16]), start);
    let mut ports = Vec::new();
    for _ in 0..2 {
        let a = c.request(&receive()).unwrap();
        assert_eq!(a.accept, AcceptCode::Ok);
        ports.push(a.port);
    }
    ports.sort_unstable();
    assert_eq!(ports, vec![low, low + 1]);
    let a = c.request(&receive()).unwrap();
    assert_eq!(a.accept, AcceptCode::TemporaryResourceLimit);
}
