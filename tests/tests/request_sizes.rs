//! Requests at the sizes the protocol allows and perfSONAR's owampd accepts, and the
//! oversized or pathological ones a hostile client sends, against the real owampd:
//! thousands of schedule slots, Stop-Sessions with tens of thousands of skip ranges, a
//! Stop-Sessions that announces 2^32−1 ranges and streams them (control's memory must
//! stay bounded), Start Times long past, and the built-in limits.

use e2e::Server;
use e2e::raw::{Raw, receive_request};
use owamp::owp::OwpFile;
use owamp::wire::{RequestSession, SessionStop, StartAck, StartSessions, StopSessions};
use owamp::{AcceptCode, Mode, Num64, Sid, SkipRange, Slot, SlotKind};
use std::io::Write;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

fn open_client(server: &Server) -> Raw {
    let mut raw = Raw::connect(server.addr).expect("connect");
    assert_eq!(raw.setup(Mode::Open, "", b"").expect("setup"), 0);
    raw
}

/// A receive request whose schedule has `nslots` fixed slots of 1 ms.
fn request_with_slots(
    udp: &UdpSocket,
    server: &Server,
    nslots: usize,
    npackets: u32,
) -> RequestSession {
    let mut req = receive_request(udp.local_addr().unwrap(), server.addr.ip(), npackets);
    req.slots = vec![
        Slot {
            kind: SlotKind::Fixed,
            param: Num64::from_secs_f64(0.001),
        };
        nslots
    ];
    req
}

fn request(raw: &mut Raw, server: &Server, req: &RequestSession) -> owamp::wire::AcceptSession {
    raw.request(req)
        .unwrap_or_else(|e| panic!("Accept-Session: {e}\nserver log:\n{}", server.stderr()))
}

/// perfSONAR's owampd accepts a schedule of 8,000 slots (more than one 64 KiB internal
/// message carries); ours must too. Past our documented cap a request gets Accept=4 and
/// the connection goes on.
#[test]
fn eight_thousand_slots_are_accepted_and_past_the_cap_is_accept_4() {
    let server = Server::start(&[]);
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let mut raw = open_client(&server);
    let acc = request(
        &mut raw,
        &server,
        &request_with_slots(&udp, &server, 8_000, 100),
    );
    assert_eq!(acc.accept, AcceptCode::Ok, "{}", server.stderr());
    assert_ne!(acc.port, 0);

    let too_many = request_with_slots(&udp, &server, (1 << 16) + 1, 100);
    let acc = request(&mut raw, &server, &too_many);
    assert_eq!(
        acc.accept,
        AcceptCode::PermanentResourceLimit,
        "{}",
        server.stderr()
    );
    // Still in step: the next request on the same connection is answered.
    let acc = request(&mut raw, &server, &request_with_slots(&udp, &server, 3, 10));
    assert_eq!(acc.accept, AcceptCode::Ok, "{}", server.stderr());
}

/// `n` single-packet skip ranges: every other sequence number from `first`.
fn single_packet_skips(n: u32, first: u32) -> Vec<SkipRange> {
    (0..n)
        .map(|i| SkipRange {
            first: first + 2 * i,
            last: first + 2 * i,
        })
        .collect()
}

fn data_file(server: &Server, sid: &Sid) -> PathBuf {
    server
        .session_file(&sid.to_hex())
        .unwrap_or_else(|| panic!("no stored file for {}", sid.to_hex()))
}

/// A client's Stop-Sessions with 9,000 and 20,000 single-packet skip ranges (perfSONAR's
/// owampd takes both) keeps both sessions: the exchange completes with Accept=0 and
/// each data file holds every range.
#[test]
fn stop_sessions_with_9000_and_20000_skip_ranges_keeps_the_sessions() {
    let server = Server::start(&[]);
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let mut raw = open_client(&server);
    let npackets = 50_000;
    let mut sids = Vec::new();
    for _ in 0..2 {
        let acc = request(
            &mut raw,
            &server,
            &request_with_slots(&udp, &server, 1, npackets),
        );
        assert_eq!(acc.accept, AcceptCode::Ok, "{}", server.stderr());
        sids.push(acc.sid);
    }
    raw.stream
        .write_message(&[&StartSessions.encode()])
        .expect("Start-Sessions");
    let ack = raw.stream.read_blocks(1).expect("Start-Ack");
    raw.stream.read_hmac().expect("Start-Ack HMAC");
    let ack = StartAck::decode(ack.as_slice().try_into().unwrap()).expect("Start-Ack");
    assert_eq!(ack.accept, AcceptCode::Ok, "{}", server.stderr());

    let counts = [9_000u32, 20_000];
    let stop = StopSessions {
        accept: AcceptCode::Ok,
        sessions: sids
            .iter()
            .zip(counts)
            .map(|(sid, k)| SessionStop {
                sid: *sid,
                next_seqno: 2 * k,
                skips: single_packet_skips(k, 0),
            })
            .collect(),
    };
    raw.stream
        .write_message(&[&stop.encode()])
        .expect("Stop-Sessions");
    // The server has no sender: its reply is a header with no records.
    let reply = raw.stream.read_blocks(1).unwrap_or_else(|e| {
        panic!(
            "no Stop-Sessions reply: {e}\nserver log:\n{}",
            server.stderr()
        )
    });
    raw.stream.read_hmac().expect("Stop-Sessions HMAC");
    assert_eq!(reply[0], 3, "not a Stop-Sessions");
    assert_eq!(reply[1], 0, "Accept {}\n{}", reply[1], server.stderr());

    for (sid, k) in sids.iter().zip(counts) {
        let mut f = OwpFile::open(data_file(&server, sid))
            .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", server.stderr()));
        assert_eq!(f.header().finished, 1, "{}", server.stderr());
        assert_eq!(f.header().next_seqno, 2 * k);
        assert_eq!(f.skips().expect("skip ranges"), single_packet_skips(k, 0));
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Most control's resident memory may grow while one client streams 96 MiB of skip
/// ranges: what a few reads and the slot budget hold, far below what it is sent.
const CONTROL_GROWTH_BOUND_KIB: u64 = 32 * 1024;

/// A client accepted for a session of 2^32−1 packets announces 2^32−1 skip ranges in
/// its Stop-Sessions and streams them: control passes them on to the receiving tester as
/// they arrive, so its peak memory (VmHWM) grows by a bounded amount, not 1:1 with what
/// is sent. Then the client vanishes mid-message, and the server still serves.
#[test]
fn streamed_skip_ranges_leave_control_memory_bounded() {
    // One unlimited class: the built-in limits would refuse 2^32−1 packets (disk).
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("owamp-server.conf"), "# test\n").unwrap();
    std::fs::write(
        conf.join("owamp-server.limits"),
        "limit root with disk=0, bandwidth=0\nassign default root\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let server = Server::start_in(dir, "127.0.0.1", e2e::free_port(), &["-c", &conf]);
    let control = server.control_pid();
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let mut raw = open_client(&server);
    let acc = request(
        &mut raw,
        &server,
        &request_with_slots(&udp, &server, 1, u32::MAX),
    );
    assert_eq!(acc.accept, AcceptCode::Ok, "{}", server.stderr());
    raw.stream
        .write_message(&[&StartSessions.encode()])
        .expect("Start-Sessions");
    raw.stream.read_blocks(1).expect("Start-Ack");
    raw.stream.read_hmac().expect("Start-Ack HMAC");
    let before = rss_kib(control, "VmRSS:");

    let mut head = [0u8; 48];
    head[0] = 3;
    head[4..8].copy_from_slice(&1u32.to_be_bytes());
    head[16..32].copy_from_slice(&acc.sid.0);
    head[32..36].copy_from_slice(&u32::MAX.to_be_bytes());
    head[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
    // Open mode: the blocks go as they are. The record's head block ends with the
    // first range; then 12 Mi ranges (96 MiB) in 1 MiB writes.
    raw.send_raw(&head).expect("Stop-Sessions head");
    let chunk: Vec<u8> = (0..(1u32 << 17))
        .flat_map(|i| {
            let s = (2 * i + 2).to_be_bytes();
            [s, s].concat()
        })
        .collect();
    for _ in 0..96 {
        raw.tcp().write_all(&chunk).expect("skip ranges");
    }
    let peak = rss_kib(control, "VmHWM:");
    assert!(
        peak.saturating_sub(before) < CONTROL_GROWTH_BOUND_KIB,
        "control grew from {before} KiB to a peak of {peak} KiB"
    );
    drop(raw);
    // The client left mid-message: its receive session is kept, as incomplete.
    wait_log(&server, "data kept as incomplete");
    // Still serving, with the same control process.
    let mut again = open_client(&server);
    let acc = request(
        &mut again,
        &server,
        &request_with_slots(&udp, &server, 1, 10),
    );
    assert_eq!(acc.accept, AcceptCode::Ok, "{}", server.stderr());
    assert_eq!(server.control_pid(), control);
}

/// Connections that send the slots of a Request-Session but never its HMAC hold no
/// more than the budget README documents: 8 requests announcing 2^20 slots (16 MiB
/// each, past the cap: read and dropped) and 40 of 2^16 slots (1 MiB each, of which the
/// process-wide budget keeps 16). Meanwhile an ordinary request is still accepted.
#[test]
fn unfinished_requests_with_many_slots_leave_control_memory_bounded() {
    let server = Server::start(&[]);
    let control = server.control_pid();
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let before = rss_kib(control, "VmRSS:");
    let mut held = Vec::new();
    for (conns, nslots) in [(8, 1usize << 20), (40, 1 << 16)] {
        for _ in 0..conns {
            let mut raw = open_client(&server);
            let req = request_with_slots(&udp, &server, nslots, 100);
            let mut msg = req.encode_preamble().to_vec();
            msg.extend_from_slice(&[0u8; 16]); // its HMAC block (open mode: zeros)
            msg.extend_from_slice(&req.encode_slots());
            raw.send_raw(&msg).expect("slots");
            held.push(raw);
        }
    }
    let ports: Vec<u16> = held
        .iter_mut()
        .map(|r| r.tcp().local_addr().unwrap().port())
        .collect();
    let all_read = e2e::wait_for(Duration::from_secs(60), || {
        ports
            .iter()
            .all(|&p| tcp_queues_empty(server.addr.port(), p))
    });
    assert!(all_read, "control did not read every slot sent");
    let peak = rss_kib(control, "VmHWM:");
    assert!(
        peak.saturating_sub(before) < CONTROL_GROWTH_BOUND_KIB,
        "control grew from {before} KiB to a peak of {peak} KiB"
    );
    // Meanwhile an ordinary request is accepted.
    let mut ok = open_client(&server);
    let acc = request(&mut ok, &server, &request_with_slots(&udp, &server, 1, 10));
    assert_eq!(acc.accept, AcceptCode::Ok, "{}", server.stderr());
    drop(held);
}

/// Whether the loopback connection between `server_port` and `client_port` has nothing
/// left in flight either way (/proc/net/tcp's tx_queue and rx_queue of both ends).
fn tcp_queues_empty(server_port: u16, client_port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let ours = |local: &str, remote: &str| {
        let port = |a: &str| {
            a.rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        };
        (port(local) == Some(server_port) && port(remote) == Some(client_port))
            || (port(local) == Some(client_port) && port(remote) == Some(server_port))
    };
    let mut seen = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(queues)) = (f.get(1), f.get(2), f.get(4)) else {
            continue;
        };
        if !ours(local, remote) {
            continue;
        }
        seen += 1;
        if queues
            .split(':')
            .any(|q| u64::from_str_radix(q, 16).unwrap_or(1) != 0)
        {
            return false;
        }
    }
    seen == 2
}

/// A Start Time long past (here 0, the NTP era's start) is refused at Request-Session,
/// whichever end the server is: a sender would spin through 2^32−1 late packets at an
/// interval of 2^-32 s, a receiver write a lost record for each. No tester is started.
#[test]
fn start_time_long_past_is_refused_and_starts_no_tester() {
    let server = Server::start(&[]);
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let mut raw = open_client(&server);
    for conf_receiver in [false, true] {
        let mut req = request_with_slots(&udp, &server, 1, u32::MAX);
        req.conf_receiver = conf_receiver;
        req.conf_sender = !conf_receiver;
        if !conf_receiver {
            req.receiver_port = udp.local_addr().unwrap().port();
            req.sender_port = 0;
        }
        req.start_time = Num64(0);
        req.slots[0].param = Num64(1); // 2^-32 s
        let acc = request(&mut raw, &server, &req);
        assert_eq!(acc.accept, AcceptCode::Failure, "{}", server.stderr());
        // An hour ago, at an ordinary rate and size: refused too.
        let mut req = request_with_slots(&udp, &server, 1, 100);
        req.start_time = Num64(req.start_time.0 - (3603u64 << 32));
        let acc = request(&mut raw, &server, &req);
        assert_eq!(acc.accept, AcceptCode::Failure, "{}", server.stderr());
    }
    wait_log(&server, "s in the past");
    assert!(server.tester_pids().is_empty());
    // A few seconds ahead, as owping asks: accepted.
    let acc = request(&mut raw, &server, &request_with_slots(&udp, &server, 1, 10));
    assert_eq!(acc.accept, AcceptCode::Ok, "{}", server.stderr());
}

/// With no limits file, one connection holds at most 16 test sessions at once (the
/// 17th gets Accept=5), and the sessions of everyone together at most 20 Mbit/s (a
/// request for more gets Accept=1), as README says.
#[test]
fn builtin_limits_cap_sessions_per_connection_and_bandwidth() {
    let server = Server::start(&[]);
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let mut raw = open_client(&server);
    // 1,000 packets/s of 14-byte payloads: well under 20 Mbit/s however counted.
    for i in 0..16 {
        let acc = request(&mut raw, &server, &request_with_slots(&udp, &server, 1, 10));
        assert_eq!(
            acc.accept,
            AcceptCode::Ok,
            "session {i}: {}",
            server.stderr()
        );
    }
    let acc = request(&mut raw, &server, &request_with_slots(&udp, &server, 1, 10));
    assert_eq!(
        acc.accept,
        AcceptCode::TemporaryResourceLimit,
        "{}",
        server.stderr()
    );
    wait_log(&server, "16 concurrent test sessions on this connection");
    drop(raw);

    // 100,000 packets/s of 1,000-byte payloads is ~800 Mbit/s: over the built-in cap.
    let mut raw = open_client(&server);
    let mut req = request_with_slots(&udp, &server, 1, 10);
    req.slots[0].param = Num64::from_secs_f64(0.000_01);
    req.padding = 1000;
    let acc = request(&mut raw, &server, &req);
    assert_eq!(acc.accept, AcceptCode::Failure, "{}", server.stderr());
    wait_log(&server, "bandwidth limit");
}

/// Waits for a line of the server's log (control's lines reach it through the master).
fn wait_log(server: &Server, needle: &str) {
    let seen = e2e::wait_for(Duration::from_secs(10), || server.stderr().contains(needle));
    assert!(seen, "no {needle:?} in the log:\n{}", server.stderr());
}
