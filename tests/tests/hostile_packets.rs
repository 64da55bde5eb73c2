//! Hostile test traffic against the real owampd and owping, each test in a network
//! namespace of its own (so root): a flood from a foreign loopback source, and an
//! attacker replaying captured authentic packets with the sender's address as source.

use e2e::{Server, enter_private_netns, machine_values, require_root, wait_for};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recv, sendto,
    setsockopt, socket, sockopt,
};
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn owping(args: &[&str]) -> String {
    e2e::owping_ok(args, LONG)
}

/// Test ports of the server and of owping, so the attacks know where to aim.
const SERVER_PORTS: (u16, u16) = (20000, 20009);
const CLIENT_PORTS: (u16, u16) = (20010, 20019);

fn server_ports() -> String {
    format!("{}-{}", SERVER_PORTS.0, SERVER_PORTS.1)
}

/// Up to 200,000 datagrams a second from 127.0.0.2 at every test port of both ends, all
/// through a 100 packets/s session in each direction: the test sockets are connected
/// to their peers, so the kernel drops the flood (the server's testers, which count
/// datagrams from a wrong source, see none of them) and neither direction loses a
/// packet.
#[test]
fn a_foreign_flood_costs_no_packet_as_root() {
    if !require_root("a_foreign_flood_costs_no_packet_as_root") {
        return;
    }
    enter_private_netns();
    let server = Server::start(&["-P", &server_ports()]);
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (done, sent) = (done.clone(), sent.clone());
        std::thread::spawn(move || {
            let f = UdpSocket::bind("127.0.0.2:0").unwrap();
            f.set_nonblocking(true).unwrap();
            let junk = [0u8; 48];
            let ports: Vec<u16> = (SERVER_PORTS.0..=CLIENT_PORTS.1).collect();
            // Up to 200,000 a second (ten rounds of the 20 ports every millisecond): the
            // rate that cost sessions packets when the sockets were not connected. The
            // sleep paces the flood; it waits for no state.
            while !done.load(Ordering::SeqCst) {
                for _ in 0..10 {
                    for &p in &ports {
                        if f.send_to(&junk, (Ipv4Addr::LOCALHOST, p)).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let target = server.target();
    let ports = format!("{}-{}", CLIENT_PORTS.0, CLIENT_PORTS.1);
    let out = owping(&[
        "-c", "200", "-i", "0.01f", "-L", "2", "-M", "-P", &ports, &target,
    ]);
    done.store(true, Ordering::SeqCst);
    flood.join().unwrap();
    let flooded = sent.load(Ordering::Relaxed);
    assert!(flooded > 50_000, "the flood sent only {flooded} datagrams");
    assert_eq!(machine_values(&out, "SENT"), ["200", "200"], "{out}");
    assert_eq!(machine_values(&out, "LOST"), ["0", "0"], "{out}");
    let log = server.stderr();
    assert!(
        log.contains("session accepted: server is receiver"),
        "no receiving tester in the log:\n{log}"
    );
    assert!(
        !log.contains("wrong source"),
        "the flood reached a tester's socket ({flooded} sent):\n{log}"
    );
}

/// A raw IPv4 socket seeing every UDP datagram of the namespace, and able to send UDP
/// with any source port (the kernel adds the IP header, from 127.0.0.1).
fn raw_udp() -> OwnedFd {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::Udp,
    )
    .expect("raw socket (needs root)");
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(0, 100_000),
    )
    .unwrap();
    fd
}

/// The UDP datagram in an IPv4 packet: (source port, destination port, payload).
fn udp_of(ip: &[u8]) -> Option<(u16, u16, &[u8])> {
    let ihl = usize::from(ip.first()? & 0x0F) * 4;
    if ip.get(9) != Some(&17) {
        return None;
    }
    let udp = ip.get(ihl..)?;
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    Some((sport, dport, udp.get(8..)?))
}

/// What an attacker on the path does: captures each test packet on its way to the
/// server and sends `copies` more of it at once, with the genuine source address and
/// port (no checksum: 0 is "none" in IPv4 UDP). Returns the copies sent.
fn replay_until(done: &AtomicBool, copies: u32) -> u64 {
    let fd = raw_udp();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut buf = vec![0u8; 65_536];
    let mut replayed = 0u64;
    let to = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
    while !done.load(Ordering::SeqCst) {
        let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        let Some((sport, dport, payload)) = udp_of(&buf[..n]) else {
            continue;
        };
        if !(SERVER_PORTS.0..=SERVER_PORTS.1).contains(&dport) || !seen.insert(payload.to_vec()) {
            continue;
        }
        let mut dgram = Vec::with_capacity(8 + payload.len());
        dgram.extend_from_slice(&sport.to_be_bytes());
        dgram.extend_from_slice(&dport.to_be_bytes());
        dgram.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        dgram.extend_from_slice(&[0, 0]);
        dgram.extend_from_slice(payload);
        for _ in 0..copies {
            if sendto(fd.as_raw_fd(), &dgram, &to, MsgFlags::empty()).is_ok() {
                replayed += 1;
            }
        }
    }
    replayed
}

/// An authenticated session whose every packet is replayed 40 times by an attacker
/// that spoofs the sender's address and port: the copies pass the HMAC check and are
/// duplicates. Once 1124 of them (one per packet plus 1024) are recorded the rest are
/// only counted, so the data file stays far below its size limit, the session keeps
/// every genuine packet, and the server says what it did not record.
#[test]
fn replayed_packets_do_not_cost_the_session_as_root() {
    if !require_root("replayed_packets_do_not_cost_the_session_as_root") {
        return;
    }
    enter_private_netns();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let conf = confdir(&root);
    let server = Server::start_in(
        dir,
        "127.0.0.1",
        e2e::free_port(),
        &["-c", conf.to_str().unwrap(), "-P", &server_ports()],
    );
    let done = Arc::new(AtomicBool::new(false));
    let attacker = {
        let done = done.clone();
        std::thread::spawn(move || replay_until(&done, 40))
    };
    let pfs = root.join("client.pfs");
    let target = server.target();
    let out = owping(&[
        "-t",
        "-A",
        "A",
        "-u",
        "alice",
        "-k",
        pfs.to_str().unwrap(),
        "-c",
        "100",
        "-i",
        "0.01f",
        "-L",
        "2",
        "-M",
        &target,
    ]);
    done.store(true, Ordering::SeqCst);
    let replayed = attacker.join().unwrap();
    assert_eq!(replayed, 4000, "the attacker replayed {replayed} packets");
    assert_eq!(machine_values(&out, "SENT"), ["100"], "{out}");
    assert_eq!(machine_values(&out, "LOST"), ["0"], "{out}");
    assert_eq!(machine_values(&out, "DUPS"), ["1124"], "{out}");
    let log = server.stderr();
    assert!(
        wait_for(Duration::from_secs(10), || server.stderr().contains(
            "4000 duplicates received, 2876 of them counted but not recorded"
        )),
        "{log}"
    );
    assert!(!log.contains("discarded"), "{log}");
}

/// A confdir with a pfs for alice ("testpass"), and the client's copy.
fn confdir(root: &Path) -> std::path::PathBuf {
    let c = root.join("etc");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("owamp-server.pfs"), "alice 7465737470617373\n").unwrap();
    std::fs::write(c.join("owamp-server.conf"), "# test\n").unwrap();
    std::fs::write(root.join("client.pfs"), "alice 7465737470617373\n").unwrap();
    c
}
