//! Hostile and broken clients against the real owampd: garbage, truncated messages,
//! wrong modes, unsupported requests, idle connections by the hundred, abrupt closes.
//! Afterwards the server must still measure cleanly, with no leaked descriptors or
//! processes (issue: "Hostile clients").

use e2e::raw::{Raw, receive_request};
use e2e::{Server, fd_count, wait_for};
use owamp::Mode;
use owamp::wire::RequestSession;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn control_pid(server: &Server) -> u32 {
    server.control_pid()
}

/// A good open-mode Request-Session is accepted (the server can still measure).
fn assert_server_accepts(server: &Server) {
    let mut raw = Raw::connect(server.addr).expect("connect");
    assert_eq!(raw.setup(Mode::Open, "", b"").expect("setup"), 0);
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let req = receive_request(udp.local_addr().unwrap(), server.addr.ip(), 10);
    let acc = raw
        .request(&req)
        .unwrap_or_else(|e| panic!("Accept-Session: {e}\nserver log:\n{}", server.stderr()));
    assert_eq!(acc.accept, owamp::AcceptCode::Ok, "{}", server.stderr());
    assert_ne!(acc.port, 0);
}

#[test]
fn garbage_set_up_response_is_closed_without_server_start() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(
        raw.greeting.modes.0 & 7,
        7,
        "default authmode offers O, A and E"
    );
    let mut junk = [0xA5u8; 164];
    junk[0..4].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    raw.send_raw(&junk).unwrap();
    assert!(raw.closed_without_reply());
    assert_server_accepts(&server);
}

#[test]
fn mode_with_two_bits_is_closed() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(server.addr).unwrap();
    let mut resp = [0u8; 164];
    resp[3] = 3; // open|authenticated: not exactly one mode (protocol.md §9)
    raw.send_raw(&resp).unwrap();
    assert!(raw.closed_without_reply());
}

#[test]
fn mode_not_offered_gets_accept_1() {
    let server = Server::start(&["-a", "O"]);
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.greeting.modes.0 & 7, 1);
    // The reference accepts an unoffered mode (a bug); we answer Accept=1 (protocol.md §9, "Ours").
    let accept = raw
        .setup(Mode::Encrypted, "nobody-known", b"secret")
        .unwrap();
    assert_eq!(accept, 1);
}

#[test]
fn unknown_user_and_wrong_passphrase_get_accept_1() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    // "testpass" hex-encoded, as pfstore writes it.
    std::fs::write(conf.join("owamp-server.pfs"), "alice 7465737470617373\n").unwrap();
    // With -c the reference requires the conf file to exist (owampd(8)).
    std::fs::write(conf.join("owamp-server.conf"), "# defaults\n").unwrap();
    let server = Server::start_in(
        dir,
        "127.0.0.1",
        e2e::free_port(),
        &["-c", conf.to_str().unwrap()],
    );
    for (user, pass) in [("alice", &b"wrong"[..]), ("mallory", &b"testpass"[..])] {
        let mut raw = Raw::connect(server.addr).unwrap();
        assert_eq!(
            raw.setup(Mode::Authenticated, user, pass).unwrap(),
            1,
            "{user}"
        );
    }
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.setup(Mode::Encrypted, "alice", b"testpass").unwrap(), 0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = receive_request(udp.local_addr().unwrap(), server.addr.ip(), 10);
    assert_eq!(raw.request(&req).unwrap().accept, owamp::AcceptCode::Ok);
}

fn request_gets(server: &Server, req: &RequestSession) -> owamp::AcceptCode {
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.setup(Mode::Open, "", b"").unwrap(), 0);
    raw.request(req).unwrap().accept
}

#[test]
fn unsupported_requests_are_answered_with_accept_3() {
    let server = Server::start(&[]);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = receive_request(udp.local_addr().unwrap(), server.addr.ip(), 10);

    let mut both = base.clone();
    both.conf_sender = true;
    assert_eq!(
        request_gets(&server, &both),
        owamp::AcceptCode::NotSupported
    );

    let mut neither = base.clone();
    neither.conf_receiver = false;
    assert_eq!(
        request_gets(&server, &neither),
        owamp::AcceptCode::NotSupported
    );

    let mut phb = base.clone();
    phb.type_p = 0x4000_0001;
    assert_eq!(request_gets(&server, &phb), owamp::AcceptCode::NotSupported);

    let mut no_packets = base.clone();
    no_packets.num_packets = 0;
    assert_eq!(
        request_gets(&server, &no_packets),
        owamp::AcceptCode::NotSupported
    );

    let mut no_slots = base.clone();
    no_slots.slots.clear();
    assert_eq!(
        request_gets(&server, &no_slots),
        owamp::AcceptCode::NotSupported
    );

    // An unknown slot type: the whole message is read, then Accept=3.
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.setup(Mode::Open, "", b"").unwrap(), 0);
    let pre = base.encode_preamble();
    let mut slots = base.encode_slots();
    slots[0] = 7;
    raw.stream.write_message(&[&pre, &slots]).unwrap();
    assert_eq!(
        raw.read_accept_session().unwrap().accept,
        owamp::AcceptCode::NotSupported
    );
    // The connection is still in step: a good request on it is accepted.
    assert_eq!(raw.request(&base).unwrap().accept, owamp::AcceptCode::Ok);
}

#[test]
fn open_mode_server_sends_only_to_the_control_client() {
    let server = Server::start(&[]);
    let mut req = receive_request("127.0.0.1:9".parse().unwrap(), server.addr.ip(), 10);
    // The server is the sender; the receiver is some other host.
    req.conf_receiver = false;
    req.conf_sender = true;
    req.sender_addr = server.addr.ip();
    req.receiver_addr = "127.0.0.2".parse().unwrap();
    req.receiver_port = 9000;
    req.sid = owamp::Sid([7; 16]);
    assert_eq!(request_gets(&server, &req), owamp::AcceptCode::Failure);
}

#[test]
fn commands_out_of_order_close_the_connection() {
    let server = Server::start(&[]);
    for cmd in [3u8, 5, 9] {
        let mut raw = Raw::connect(server.addr).unwrap();
        assert_eq!(raw.setup(Mode::Open, "", b"").unwrap(), 0);
        let mut msg = [0u8; 32];
        msg[0] = cmd;
        raw.send_raw(&msg).unwrap();
        assert!(
            raw.closed_without_reply(),
            "command {cmd} while idle must close"
        );
    }
    assert_server_accepts(&server);
}

#[test]
fn truncated_messages_and_abrupt_closes_leave_no_trace() {
    let server = Server::start(&[]);
    let control = control_pid(&server);
    // Settle (the probe session's tester gone), then take the baseline.
    assert_server_accepts(&server);
    assert!(wait_for(Duration::from_secs(10), || server
        .tester_pids()
        .is_empty()));
    let fds_before = fd_count(control);
    for i in 0..60 {
        let mut raw = Raw::connect(server.addr).unwrap();
        match i % 4 {
            0 => {}                                  // close right after the greeting
            1 => raw.send_raw(&[0u8; 100]).unwrap(), // half a Set-Up-Response
            2 => {
                raw.setup(Mode::Open, "", b"").unwrap();
                raw.send_raw(&[1u8; 40]).unwrap(); // half a Request-Session
            }
            _ => {
                raw.setup(Mode::Open, "", b"").unwrap();
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let req = receive_request(udp.local_addr().unwrap(), server.addr.ip(), 10);
                raw.request(&req).unwrap(); // a session set up, then abandoned
            }
        }
        let _ = raw.tcp().shutdown(std::net::Shutdown::Both);
    }
    assert!(
        wait_for(Duration::from_secs(10), || fd_count(control) <= fds_before),
        "control leaked descriptors: {} before, {} after",
        fds_before,
        fd_count(control)
    );
    assert!(
        wait_for(Duration::from_secs(10), || server.tester_pids().is_empty()),
        "testers left behind: {:?}",
        server.tester_pids()
    );
    assert_eq!(control_pid(&server), control, "control did not restart");
    assert_server_accepts(&server);
}

#[test]
fn hundreds_of_idle_connections_do_not_stop_service() {
    let server = Server::start(&[]);
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..300 {
        let s = TcpStream::connect(server.addr).unwrap();
        idle.push(s);
    }
    // Partial writes on some of them.
    for s in idle.iter_mut().step_by(3) {
        let _ = s.write_all(&[0u8; 10]);
    }
    assert_server_accepts(&server);
    drop(idle);
    assert_server_accepts(&server);
}

#[test]
fn controltimeout_closes_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("owamp-server.conf"), "controltimeout 2\n").unwrap();
    let server = Server::start_in(
        dir,
        "127.0.0.1",
        e2e::free_port(),
        &["-c", conf.to_str().unwrap()],
    );
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.setup(Mode::Open, "", b"").unwrap(), 0);
    let start = Instant::now();
    raw.tcp()
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    assert!(raw.closed_without_reply());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "closed too early: {waited:?}"
    );
}
