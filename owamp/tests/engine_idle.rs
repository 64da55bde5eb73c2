//! What an idle session costs and how fast it stops (bench/README.md "Performance bugs
//! found"): a control with a descriptor is asked only at the start and when it has news,
//! one without is asked per wake-up and every 200 ms, not every 10 ms; and a receiver
//! that starts late reads what is queued before declaring anything lost.
//!
//! No timing thresholds: these count asks and receive calls, and check that the loops
//! return after (and because of) the stop.

use owamp::engine::{
    Never, Received, ReceiverParams, ReceiverReport, SenderParams, SenderReport, SessionControl,
    SocketOptions, StopFlag, TestSocket, UdpTestSocket, run_receiver, run_sender,
};
use owamp::packet::PacketFormat;
use owamp::schedule::Schedule;
use owamp::time::Clock;
use owamp::{Mode, Num64, PacketRecord, Sid, Slot, SlotKind, Timestamp};
use std::io;
use std::net::UdpSocket;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SID: Sid = Sid([7; 16]);

fn ms(v: u64) -> Num64 {
    Num64::from_micros(v * 1000)
}

/// A control that counts how often it is asked; with a [`StopFlag`], it has its pipe as
/// descriptor and stops when the flag is set.
struct Counting {
    flag: Option<StopFlag>,
    asks: Arc<AtomicU32>,
}

impl SessionControl for Counting {
    fn poll_stop(&mut self) -> bool {
        self.asks.fetch_add(1, Ordering::SeqCst);
        self.flag.as_ref().is_some_and(StopFlag::is_stopped)
    }
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.flag.as_ref().and_then(|f| f.wait_fd())
    }
}

/// A UDP test socket that counts its receive calls (each receiver wake-up makes at
/// least one).
struct CountingSocket {
    inner: UdpTestSocket,
    recvs: u32,
}

impl TestSocket for CountingSocket {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.send(buf)
    }
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
        self.recvs += 1;
        self.inner.recv(buf, timeout)
    }
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.poll_fd()
    }
}

struct Plan {
    n: u32,
    interval_ms: u64,
    start: Timestamp,
    timeout_ms: u64,
}

impl Plan {
    fn new(n: u32, interval_ms: u64, start_in_ms: u64, timeout_ms: u64) -> Plan {
        let (now, _) = Clock::new(None, 0.0).now();
        Plan {
            n,
            interval_ms,
            start: now.wrapping_add(ms(start_in_ms)),
            timeout_ms,
        }
    }
    fn schedule(&self) -> Schedule {
        let slot = Slot {
            kind: SlotKind::Fixed,
            param: ms(self.interval_ms),
        };
        Schedule::new(SID, self.start, &[slot], self.n)
    }
    fn format(&self) -> PacketFormat {
        PacketFormat::new(Mode::Open, None, 0).unwrap()
    }
}

/// A connected pair of test sockets on loopback: (sender's, receiver's, sender's address).
fn sockets(p: &Plan) -> (CountingSocket, CountingSocket, std::net::SocketAddr) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let opts = SocketOptions {
        dscp: None,
        packet_len: p.format().len(),
        packets_per_second: 1000.0 / p.interval_ms as f64,
    };
    let wrap = |s, peer| CountingSocket {
        inner: UdpTestSocket::new(s, peer, opts).unwrap(),
        recvs: 0,
    };
    (wrap(a, ba), wrap(b, aa), aa)
}

fn send(p: &Plan, sock: &mut dyn TestSocket, ctl: &mut dyn SessionControl) -> SenderReport {
    let params = SenderParams {
        num_packets: p.n,
        timeout: ms(p.timeout_ms),
        end_delay: Duration::ZERO,
    };
    let clock = Clock::new(None, 0.0);
    run_sender(
        sock,
        &clock,
        &mut p.format(),
        &mut p.schedule(),
        params,
        ctl,
    )
    .unwrap()
}

fn receive(
    p: &Plan,
    sock: &mut dyn TestSocket,
    from: std::net::SocketAddr,
    ctl: &mut dyn SessionControl,
) -> (ReceiverReport, Vec<PacketRecord>) {
    let params = ReceiverParams {
        num_packets: p.n,
        timeout: ms(p.timeout_ms),
        expected_src: from,
    };
    let clock = Clock::new(None, 0.0);
    let mut recs = Vec::new();
    let rep = run_receiver(
        sock,
        &clock,
        &p.format(),
        &mut p.schedule(),
        params,
        &mut recs,
        ctl,
    )
    .unwrap();
    (rep, recs)
}

/// Runs a whole session with `Counting` controls (with or without descriptor); returns
/// the reports, the asks of sender and receiver, and the receiver's receive calls.
fn counted_session(p: &Plan, with_fd: bool) -> (SenderReport, ReceiverReport, u32, u32, u32) {
    let (mut ssock, mut rsock, from) = sockets(p);
    let flag = || with_fd.then(StopFlag::new);
    let (sa, ra) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut sctl = Counting {
        flag: flag(),
        asks: sa.clone(),
    };
    let mut rctl = Counting {
        flag: flag(),
        asks: ra.clone(),
    };
    let (srep, (rrep, _)) = std::thread::scope(|sc| {
        let r = sc.spawn(|| receive(p, &mut rsock, from, &mut rctl));
        let s = send(p, &mut ssock, &mut sctl);
        (s, r.join().unwrap())
    });
    (
        srep,
        rrep,
        sa.load(Ordering::SeqCst),
        ra.load(Ordering::SeqCst),
        rsock.recvs,
    )
}

#[test]
fn idle_session_with_a_descriptor_is_asked_only_at_the_start() {
    // 10 packets, 100 ms apart: ~1.2 s, which the old 10 ms slices made ~120 asks each.
    let p = Plan::new(10, 100, 50, 200);
    let (s, r, sender_asks, receiver_asks, recvs) = counted_session(&p, true);
    assert_eq!((s.sent, s.stopped), (10, false));
    assert_eq!((r.received, r.lost, r.stopped), (10, 0, false), "{r:?}");
    // The descriptor never became readable: one ask each, at the start.
    assert_eq!(sender_asks, 1);
    assert_eq!(receiver_asks, 1);
    // Each wake-up reads until the queue is empty (one call more than datagrams): the
    // receiver woke for its packets and a handful of times besides (flush, end).
    assert!(recvs <= 2 * 10 + 6, "{recvs} receive calls for 10 packets");
}

#[test]
fn idle_session_without_a_descriptor_is_asked_per_wakeup_and_every_200_ms() {
    let p = Plan::new(10, 100, 50, 200);
    let (s, r, sender_asks, receiver_asks, _) = counted_session(&p, false);
    assert_eq!(s.sent, 10);
    assert_eq!(r.received, 10, "{r:?}");
    // ~1.25 s: twice per packet (before and after its sleep), plus every 200 ms (≤ 7),
    // plus a few; 10 ms slices were ~125.
    assert!(sender_asks <= 2 * 10 + 7 + 4, "{sender_asks}");
    assert!(receiver_asks <= 2 * 10 + 7 + 4, "{receiver_asks}");
    assert!(sender_asks >= 10, "asked at every packet: {sender_asks}");
}

#[test]
fn stop_wakes_idle_sender_and_receiver_at_once() {
    // 100 packets a second apart: 100 s if nothing stopped it.
    let p = Plan::new(100, 1000, 100, 1000);
    let (mut ssock, mut rsock, from) = sockets(&p);
    let stop = StopFlag::new();
    let (sa, ra) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut sctl = Counting {
        flag: Some(stop.clone()),
        asks: sa.clone(),
    };
    let mut rctl = Counting {
        flag: Some(stop.clone()),
        asks: ra.clone(),
    };
    let (stopped_at, (srep, s_done), (rrep, r_done)) = std::thread::scope(|sc| {
        let r = sc.spawn(|| {
            let rep = receive(&p, &mut rsock, from, &mut rctl);
            (rep, Instant::now())
        });
        let s = sc.spawn(|| {
            let rep = send(&p, &mut ssock, &mut sctl);
            (rep, Instant::now())
        });
        // After the first packet (at 100 ms), well before the second (at 1.1 s): a point
        // of the schedule, which is what this sleep waits for (no state to poll).
        std::thread::sleep(Duration::from_millis(400));
        let at = Instant::now();
        stop.stop();
        (at, s.join().unwrap(), r.join().unwrap())
    });
    assert!(srep.stopped && rrep.0.stopped);
    // Both returned because of the stop, not at the session's end 100 s away.
    assert!(s_done >= stopped_at && r_done >= stopped_at);
    assert!(s_done.duration_since(stopped_at) < Duration::from_secs(30));
    assert!(r_done.duration_since(stopped_at) < Duration::from_secs(30));
    assert!(srep.next_seqno <= 2, "{srep:?}");
    // Asked at the start and once the pipe became readable; no polling in between.
    assert_eq!(sa.load(Ordering::SeqCst), 2);
    assert_eq!(ra.load(Ordering::SeqCst), 2);
}

#[test]
fn receiver_started_late_records_what_arrived_in_time() {
    // 20 packets 5 ms apart with a 200 ms Timeout, all sent (and queued in the receive
    // socket) before the receiver runs, which starts after every sched + Timeout has
    // passed: their kernel timestamps say they arrived in time, so none is lost.
    let p = Plan::new(20, 5, 20, 200);
    let (mut ssock, mut rsock, from) = sockets(&p);
    let s = send(&p, &mut ssock, &mut Never);
    assert_eq!(s.sent, 20);
    // Until every packet's send time + Timeout is past: the time itself is the
    // condition under test, so a sleep, not a poll.
    std::thread::sleep(Duration::from_millis(300));
    let (r, recs) = receive(&p, &mut rsock, from, &mut Never);
    assert_eq!(r.received, 20, "{r:?}");
    assert_eq!(r.lost, 0);
    assert_eq!(r.drops.already_lost, 0);
    let seqs: Vec<u32> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
}

/// A test socket that counts the receiver's reads ([`TestSocket::recv_queued`] and
/// [`TestSocket::recv`]) and, unlike [`CountingSocket`], reports its buffer size, so the
/// receiver may read on an interval as the tester and owping do.
struct ReadCounting {
    inner: UdpTestSocket,
    reads: u32,
}

impl TestSocket for ReadCounting {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.send(buf)
    }
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
        self.reads += 1;
        self.inner.recv(buf, timeout)
    }
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.poll_fd()
    }
    fn recv_queued(&mut self, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> io::Result<usize> {
        self.reads += 1;
        self.inner.recv_queued(bufs, out)
    }
    fn recv_buffer_size(&self) -> Option<usize> {
        self.inner.recv_buffer_size()
    }
}

#[test]
fn a_paced_receiver_reads_on_an_interval_not_per_packet() {
    // 20 packets 50 ms apart (about 1 s) with a 1 s Timeout: a receiver woken by each
    // datagram reads at least 20 times; one that reads every second (the socket buffer
    // holds far more than a second at 20 packets/s) reads a handful of times, and still
    // records every packet with its kernel receive time.
    let p = Plan::new(20, 50, 50, 1000);
    let (mut ssock, rsock, from) = sockets(&p);
    let mut rsock = ReadCounting {
        inner: rsock.inner,
        reads: 0,
    };
    let mut rctl = StopFlag::new();
    let (s, (r, recs)) = std::thread::scope(|sc| {
        let r = sc.spawn(|| receive(&p, &mut rsock, from, &mut rctl));
        let s = send(&p, &mut ssock, &mut Never);
        (s, r.join().unwrap())
    });
    assert_eq!(s.sent, 20);
    assert_eq!((r.received, r.lost, r.stopped), (20, 0, false), "{r:?}");
    assert!(
        rsock.reads <= 10,
        "{} reads for 20 packets: woken per datagram",
        rsock.reads
    );
    for rec in &recs {
        // Kernel receive times: after the send time and well before the next read.
        assert!(rec.recv_ts >= rec.send_ts, "{rec:?}");
        assert!(rec.recv_ts.saturating_sub(rec.send_ts) < ms(20), "{rec:?}");
    }
}
