//! Real sessions over loopback under attack: a flood from a foreign source, and a peer
//! replaying authentic packets (RFC 4656 §3.4 records duplicates).

use super::{
    Never, ReceiverParams, ReceiverReport, SenderParams, SocketOptions, StopFlag, TestSocket,
    UdpTestSocket, max_duplicate_records, run_receiver, run_sender,
};
use crate::packet::{PacketFormat, TestKeys};
use crate::schedule::Schedule;
use crate::time::Clock;
use crate::types::{Mode, Num64, PacketRecord, Sid, Slot, SlotKind};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const SID: Sid = Sid([7; 16]);

fn opts(pps: f64, len: usize) -> SocketOptions {
    SocketOptions {
        dscp: None,
        packet_len: len,
        packets_per_second: pps,
    }
}

/// Sends every packet `copies` times: what a peer replaying captured packets at once
/// does (from the sender's address and port, as a spoofing attacker would).
struct Replaying<'a> {
    inner: &'a mut UdpTestSocket,
    copies: u32,
}

impl TestSocket for Replaying<'_> {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        for _ in 0..self.copies {
            self.inner.send(buf)?;
        }
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<super::Received>> {
        self.inner.recv(buf, timeout)
    }
}

/// One session of `n` packets every `interval` (2^-32 s), `copies` of each sent, while
/// `during` runs beside it (given the receiver's address, a flag raised at the end).
fn session(
    mode: Mode,
    n: u32,
    interval: u64,
    copies: u32,
    during: impl FnOnce(SocketAddr, Arc<AtomicBool>) + Send,
) -> (ReceiverReport, Vec<PacketRecord>, UdpTestSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (sa, ra) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let keys = mode
        .is_secure()
        .then(|| TestKeys::derive(SID, &[0x11; 16], &[0x22; 32]));
    let fmt = || PacketFormat::new(mode, keys.as_ref(), 0).unwrap();
    let slot = Slot {
        kind: SlotKind::Fixed,
        param: Num64(interval),
    };
    let pps = (1u64 << 32) as f64 / interval as f64;
    let clock = Clock::new(None, 0.0);
    let start = clock.now().0.wrapping_add(Num64(1 << 28)); // in ~60 ms
    let timeout = Num64(2 << 32);
    let len = fmt().len();
    let mut tx = UdpTestSocket::new(a, ra, opts(pps, len)).unwrap();
    let mut rx = UdpTestSocket::new(b, sa, opts(pps, len)).unwrap();
    assert_eq!(rx.unconnected_reason(), None);
    assert_eq!(tx.unconnected_reason(), None);
    let done = Arc::new(AtomicBool::new(false));
    let stop = StopFlag::new();
    std::thread::scope(|sc| {
        let d = done.clone();
        sc.spawn(move || during(ra, d));
        let mut ctl = stop.clone();
        let rxh = sc.spawn(move || {
            let mut sched = Schedule::new(SID, start, &[slot], n);
            let mut records = Vec::new();
            let params = ReceiverParams {
                num_packets: n,
                timeout,
                expected_src: sa,
            };
            let rep = run_receiver(
                &mut rx,
                &Clock::new(None, 0.0),
                &fmt(),
                &mut sched,
                params,
                &mut records,
                &mut ctl,
            )
            .unwrap();
            (rep, records, rx)
        });
        let mut sched = Schedule::new(SID, start, &[slot], n);
        let params = SenderParams {
            num_packets: n,
            timeout,
            end_delay: Duration::ZERO,
        };
        let mut sock = Replaying {
            inner: &mut tx,
            copies,
        };
        let srep = run_sender(
            &mut sock,
            &clock,
            &mut fmt(),
            &mut sched,
            params,
            &mut Never,
        )
        .unwrap();
        assert_eq!(srep.sent, u64::from(n));
        let out = rxh.join().unwrap();
        done.store(true, Ordering::SeqCst);
        out
    })
}

/// At its most aggressive (every packet replayed at once, in time, from the sender's
/// own address and port), a replaying peer gets `n + 1024` duplicate records written and
/// the rest only counted: every genuine packet is still recorded once, and nothing is
/// lost. 40 copies of each packet of a 100 packets/s session are far more than the
/// receiver's read interval leaves room for in its socket buffer: it must notice and
/// read them as they come, or the buffer overflows and genuine packets are lost.
#[test]
fn replayed_authentic_packets_are_counted_beyond_the_bound() {
    let n = 100;
    let copies = 41; // 40 replays of each: 4000 duplicates, over n + 1024
    let (rep, records, _) = session(Mode::Authenticated, n, (1 << 32) / 100, copies, |_, _| {});
    let dups = u64::from(n) * u64::from(copies - 1);
    assert_eq!(rep.lost, 0, "{rep:?}");
    assert_eq!(rep.duplicates, dups, "{rep:?}");
    let bound = max_duplicate_records(n);
    assert_eq!(rep.duplicates_unrecorded, dups - bound, "{rep:?}");
    assert_eq!(records.len() as u64, u64::from(n) + bound);
    assert_eq!(rep.received, records.len() as u64);
    let mut per_seq = vec![0u32; n as usize];
    for r in &records {
        assert!(!r.is_lost());
        per_seq[r.seq as usize] += 1;
    }
    assert!(
        per_seq.iter().all(|&c| c >= 1),
        "a genuine packet went unrecorded"
    );
}

/// A flood of datagrams from another loopback address (up to 200,000 a second) all
/// through a 100 packets/s session: the receiver's socket is connected to the
/// sender, so the kernel drops the flood before it reaches the socket (not one is seen
/// by the receiver) and the session loses nothing.
#[test]
fn foreign_flood_never_reaches_a_connected_receiver() {
    let flooded = Arc::new(AtomicU64::new(0));
    let count = flooded.clone();
    let n = 150;
    let (rep, records, _) = session(Mode::Open, n, (1 << 32) / 100, 1, move |to, done| {
        // 127.0.0.2 is loopback too (127.0.0.0/8); the port is any.
        let f = UdpSocket::bind("127.0.0.2:0").unwrap();
        let junk = [0u8; 14];
        // Up to 200,000 a second: 200 back to back every millisecond, the rate that cost
        // sessions packets, without taking a whole core from the tests beside it. The
        // sleep paces the flood; it waits for no state.
        while !done.load(Ordering::SeqCst) {
            for _ in 0..200 {
                if f.send_to(&junk, to).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let sent = flooded.load(Ordering::Relaxed);
    // The flood ran through the session (1.5 s): tens of thousands of datagrams.
    assert!(sent > 10_000, "the flood sent only {sent}");
    assert_eq!(rep.drops.wrong_source, 0, "{rep:?} after {sent} flooded");
    assert_eq!((rep.received, rep.lost), (u64::from(n), 0), "{rep:?}");
    assert_eq!(records.len(), n as usize);
}

/// A socket whose peer's port is not known yet (0) stays unconnected and says why.
#[test]
fn unknown_peer_port_leaves_the_socket_unconnected() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = UdpTestSocket::new(a, peer, opts(10.0, 14)).unwrap();
    assert!(
        s.unconnected_reason()
            .is_some_and(|r| r.contains("127.0.0.1:0"))
    );
}
