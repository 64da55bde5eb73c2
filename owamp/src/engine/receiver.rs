//! The receiver loop (spec §3.4): timestamps, checks and records each datagram, and
//! declares packets lost once they are more than Timeout overdue.

use super::wait::{FALLBACK_SLICE, StopPoller, is_ready, tighten_timer_slack};
use super::{Received, RecordSink, SessionControl, TestSocket, abs_gap};
use crate::packet::{PacketError, PacketFormat};
use crate::schedule::Schedule;
use crate::time::{Clock, num64_to_duration};
use crate::types::{ErrorEstimate, Num64, PacketRecord, Timestamp};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// At most this many already-queued datagrams are still processed after a stop request.
const MAX_DRAIN_ON_STOP: usize = 100_000;

/// At most this many queued datagrams are read before the loop expires packets and asks
/// the control again, so a flood cannot starve either.
const MAX_DRAIN_BATCH: usize = 256;

/// Most packets the lost-packet window holds (16 octets each: 64 MiB). The window spans
/// the packets scheduled within about one Timeout (up to 2 × Timeout ahead for a packet
/// that arrives early), and both the rate and Timeout come from the peer's
/// Request-Session: 1 packet/s with a Timeout of years would otherwise make the tester
/// allocate 16 octets for every one of up to 2^32 packets. A session really that dense
/// sees its packets past the cap counted as off schedule (and later lost).
const MAX_WINDOW: usize = 1 << 22;

/// New records are flushed once the last flush is this old, so none waits longer than
/// 2 × this (design.md: ≤ 100 ms). At low rates every packet's wake-up flushes, and no
/// extra wake-up is needed for it.
const FLUSH_AFTER: Num64 = Num64(214_748_365); // 50 ms in 2^-32 s

/// What the receiver needs besides its socket, clock, format, schedule and sink.
#[derive(Clone, Copy, Debug)]
pub struct ReceiverParams {
    pub num_packets: u32,
    pub timeout: Num64,
    /// The sender's address and port; datagrams from anywhere else are ignored.
    pub expected_src: SocketAddr,
}

/// Datagrams dropped, by reason (none of them ends the session).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    pub wrong_source: u64,
    /// Shorter than the session's packet length.
    pub short: u64,
    pub bad_hmac: u64,
    /// `seq >= num_packets` (fatal in the reference, spec §3.4 step 5).
    pub seq_out_of_range: u64,
    /// Send Error Estimate multiplier 0 (fatal in the reference, step 7).
    pub invalid_send_err: u64,
    /// `|send - recv| > Timeout` (step 8).
    pub send_recv_gap: u64,
    /// `|send - sched(seq)| > Timeout` (step 9).
    pub schedule_gap: u64,
    /// Arrived after it had been declared lost (step 6).
    pub already_lost: u64,
}

/// The outcome of a receiving session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    /// Records written for received packets (duplicates included).
    pub received: u64,
    /// Of those, duplicates.
    pub duplicates: u64,
    /// Lost records written.
    pub lost: u64,
    pub drops: DropCounts,
    pub stopped: bool,
}

/// One expected packet in the lost-packet window.
#[derive(Clone, Copy, Debug)]
struct Expected {
    sched: Timestamp,
    received: bool,
}

/// The packets that are scheduled but not yet overdue: seqnos `head .. head+len`, where
/// `head + len` is the schedule's next position. It is extended only as far as needed
/// (to the present, or to a received packet's seqno), so its size is bounded by the send
/// rate times about Timeout, never by `num_packets`.
struct Window {
    head: u32,
    slots: VecDeque<Expected>,
    /// Every packet in `head .. scan` was received (a hint, so finding the next packet
    /// that can be lost is amortised O(1)).
    scan: u32,
}

impl Window {
    fn frontier(&self) -> u32 {
        self.head + self.slots.len() as u32
    }
}

struct Receiver<'a> {
    clock: &'a Clock,
    sched: &'a mut Schedule,
    sink: &'a mut dyn RecordSink,
    params: ReceiverParams,
    window: Window,
    report: ReceiverReport,
}

impl Receiver<'_> {
    /// Extends the window with every packet scheduled at or before `until`.
    fn extend_to(&mut self, until: Timestamp) {
        self.extend(until, u32::MAX);
    }

    /// Extends the window with the packets scheduled at or before `until`, up to seqno
    /// `last` at most.
    fn extend(&mut self, until: Timestamp, last: u32) {
        while self.window.frontier() < self.params.num_packets
            && self.window.frontier() <= last
            && self.window.slots.len() < MAX_WINDOW
        {
            let Some(t) = self.sched.send_time(self.window.frontier()) else {
                break;
            };
            if t > until {
                break;
            }
            self.window.slots.push_back(Expected {
                sched: t,
                received: false,
            });
        }
    }

    fn lost_record(&self, seq: u32, e: &Expected, recv_err: ErrorEstimate) -> PacketRecord {
        PacketRecord {
            seq,
            send_err: ErrorEstimate::UNSYNC,
            recv_err,
            send_ts: e.sched,
            recv_ts: Num64::ZERO,
            ttl: 255,
        }
    }

    /// Pops every packet whose `sched + Timeout` is before `now` (all of them when
    /// `all`), writing lost records for those never received.
    fn expire(&mut self, now: Timestamp, all: bool) -> io::Result<()> {
        let recv_err = self.clock.error_estimate();
        while let Some(e) = self.window.slots.front().copied() {
            if !all && e.sched.wrapping_add(self.params.timeout) >= now {
                break;
            }
            if !e.received {
                let r = self.lost_record(self.window.head, &e, recv_err);
                self.sink.record(&r)?;
                self.report.lost += 1;
            }
            self.window.slots.pop_front();
            self.window.head += 1;
        }
        Ok(())
    }

    /// When the loop must next wake for the window: when the first packet not yet
    /// received becomes overdue (its lost record is due), or, when all have arrived so
    /// far, when the next scheduled one would, or at the end when the last one does. A
    /// received packet needs no wake-up of its own: it leaves the window at the next one.
    fn next_expiry(&mut self) -> Option<Timestamp> {
        let t = self.params.timeout;
        let w = &mut self.window;
        w.scan = w.scan.max(w.head);
        while let Some(e) = w.slots.get((w.scan - w.head) as usize) {
            if !e.received {
                return Some(e.sched.wrapping_add(t));
            }
            w.scan += 1;
        }
        let f = w.frontier();
        if f < self.params.num_packets && w.slots.len() < MAX_WINDOW {
            if let Some(s) = self.sched.send_time(f) {
                return Some(s.wrapping_add(t));
            }
        } else if w.slots.len() >= MAX_WINDOW {
            // Full: nothing can join until the front leaves.
            return w.slots.front().map(|e| e.sched.wrapping_add(t));
        }
        w.slots.back().map(|e| e.sched.wrapping_add(t))
    }

    /// Steps 3–10 of spec §3.4 for one datagram.
    fn handle(
        &mut self,
        fmt: &PacketFormat,
        data: &[u8],
        src: SocketAddr,
        recv_ts: Timestamp,
        ttl: Option<u8>,
    ) -> io::Result<()> {
        let drops = &mut self.report.drops;
        if !same_endpoint(src, self.params.expected_src) {
            drops.wrong_source += 1;
            return Ok(());
        }
        let pkt = match fmt.decode(data) {
            Ok(p) => p,
            Err(PacketError::BadHmac { .. }) => {
                drops.bad_hmac += 1;
                return Ok(());
            }
            Err(_) => {
                drops.short += 1;
                return Ok(());
            }
        };
        let timeout = self.params.timeout.0;
        if pkt.seq >= self.params.num_packets {
            drops.seq_out_of_range += 1;
            return Ok(());
        }
        if pkt.seq < self.window.head {
            drops.already_lost += 1;
            return Ok(());
        }
        if !pkt.send_err.is_valid() {
            drops.invalid_send_err += 1;
            return Ok(());
        }
        if abs_gap(pkt.send_ts, recv_ts) > timeout {
            drops.send_recv_gap += 1;
            return Ok(());
        }
        // A valid packet has sched ≤ send + T ≤ recv + 2T: extending that far (and no
        // further than its own seqno) is bounded, and a seqno still beyond the window is
        // necessarily off schedule.
        self.extend(
            recv_ts.wrapping_add(Num64(timeout.saturating_mul(2))),
            pkt.seq,
        );
        let idx = (pkt.seq - self.window.head) as usize;
        let Some(slot) = self.window.slots.get_mut(idx) else {
            self.report.drops.schedule_gap += 1;
            return Ok(());
        };
        if abs_gap(pkt.send_ts, slot.sched) > timeout {
            self.report.drops.schedule_gap += 1;
            return Ok(());
        }
        if slot.received {
            self.report.duplicates += 1;
        }
        slot.received = true;
        let r = PacketRecord {
            seq: pkt.seq,
            send_err: pkt.send_err,
            recv_err: self.clock.error_estimate(),
            send_ts: pkt.send_ts,
            recv_ts,
            ttl: ttl.unwrap_or(255),
        };
        self.sink.record(&r)?;
        self.report.received += 1;
        Ok(())
    }
}

/// IP and port equal, an IPv4-mapped IPv6 address counting as the IPv4 address.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// Timestamps one received datagram (kernel time if there is one) and handles it.
/// Returns the receive time.
fn receive_one(
    rx: &mut Receiver<'_>,
    clock: &Clock,
    fmt: &PacketFormat,
    buf: &[u8],
    m: Received,
) -> io::Result<Timestamp> {
    let recv_ts = match m.kernel_ts {
        Some(k) => clock.from_realtime(k),
        None => clock.now().0,
    };
    let data = buf.get(..m.len.min(fmt.len())).unwrap_or_default();
    rx.handle(fmt, data, m.src, recv_ts, m.ttl)?;
    Ok(recv_ts)
}

/// Reads up to `max` datagrams already queued (no waiting). Returns whether the queue
/// was emptied and the receive time of the last datagram read.
fn drain(
    rx: &mut Receiver<'_>,
    sock: &mut dyn TestSocket,
    clock: &Clock,
    fmt: &PacketFormat,
    buf: &mut [u8],
    max: usize,
) -> io::Result<(bool, Option<Timestamp>)> {
    let mut last = None;
    for _ in 0..max {
        match sock.recv(buf, Duration::ZERO) {
            Ok(Some(m)) => last = Some(receive_one(rx, clock, fmt, buf, m)?),
            Ok(None) => return Ok((true, last)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((false, last))
}

/// `poll` timeout for waiting from `now` until `wake` (rounded up to the millisecond, so
/// a sub-millisecond wait does not become a busy loop; `None`: no timeout).
fn poll_timeout(now: Timestamp, wake: Option<Timestamp>) -> PollTimeout {
    let Some(w) = wake else {
        return PollTimeout::NONE;
    };
    let d = num64_to_duration(w.saturating_sub(now));
    let ms = d.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
}

/// Runs a receiving session until the last packet's `sched + Timeout` has passed, or
/// until stopped (then every outstanding packet is written as lost; the Stop-Sessions
/// cleanup of spec §7.8 trims them).
pub fn run_receiver(
    sock: &mut dyn TestSocket,
    clock: &Clock,
    fmt: &PacketFormat,
    sched: &mut Schedule,
    params: ReceiverParams,
    sink: &mut dyn RecordSink,
    ctl: &mut dyn SessionControl,
) -> io::Result<ReceiverReport> {
    tighten_timer_slack();
    sched.reset();
    let params = ReceiverParams {
        num_packets: params.num_packets.min(sched.num_packets()),
        ..params
    };
    let mut rx = Receiver {
        clock,
        sched,
        sink,
        params,
        window: Window {
            head: 0,
            slots: VecDeque::new(),
            scan: 0,
        },
        report: ReceiverReport::default(),
    };
    // One byte more than a packet is enough: longer datagrams are truncated and accepted.
    let mut buf = vec![0u8; fmt.len() + 1];
    // Waiting on the control's descriptor needs the socket's too (one poll on both).
    let use_fd = ctl.wait_fd().is_some() && sock.poll_fd().is_some();
    let mut poller = StopPoller::new(use_fd);
    let mut last_flush = clock.now().0;
    let mut flushed = 0u64;
    loop {
        let (now, _) = clock.now();
        // Datagrams already queued are read before anything is declared lost: after a
        // long descheduling they arrived in time (their kernel timestamps say so) and
        // expiring first would count them lost and then drop them as `already_lost`.
        // Packets are judged by receive time, so the window is expired only up to the
        // last datagram read when more are still queued.
        let (drained, last_ts) = drain(&mut rx, sock, clock, fmt, &mut buf, MAX_DRAIN_BATCH)?;
        let horizon = match (drained, last_ts) {
            (false, Some(t)) => t.min(now),
            _ => now,
        };
        rx.extend_to(horizon);
        rx.expire(horizon, false)?;
        if rx.window.frontier() >= params.num_packets && rx.window.slots.is_empty() {
            break;
        }
        if poller.should_stop(ctl, now) {
            rx.report.stopped = true;
            // Packets that already arrived are results, not losses: take what is queued
            // (bounded, so a flood cannot hold the stop) before flushing the rest.
            drain(&mut rx, sock, clock, fmt, &mut buf, MAX_DRAIN_ON_STOP)?;
            // Everything due by now, and nothing later: the cleanup of spec §7.8 keeps
            // only records with send_ts ≤ stoptime − Timeout.
            rx.extend_to(now);
            rx.expire(now, true)?;
            break;
        }
        let written = rx.report.received + rx.report.lost;
        if written != flushed && now.saturating_sub(last_flush) >= FLUSH_AFTER {
            rx.sink.flush()?;
            last_flush = now;
            flushed = written;
        }
        if !drained {
            continue;
        }
        // Sleep until a datagram, the control's news, the next possible loss, the next
        // flush or the fallback's next ask, whichever is first.
        let mut wake = rx.next_expiry().map(|t| t.wrapping_add(Num64(1)));
        let mut earliest = |t: Timestamp| wake = Some(wake.map_or(t, |w| w.min(t)));
        if written != flushed {
            earliest(last_flush.wrapping_add(FLUSH_AFTER));
        }
        if let Some(t) = poller.recheck_at() {
            earliest(t);
        }
        if use_fd {
            let ctl_ready = {
                let (Some(sfd), cfd) = (sock.poll_fd(), poller.fd(&*ctl, now)) else {
                    continue;
                };
                let mut fds = [
                    PollFd::new(sfd, PollFlags::POLLIN),
                    PollFd::new(cfd.unwrap_or(sfd), PollFlags::POLLIN),
                ];
                let n = if cfd.is_some() { 2 } else { 1 };
                let set = fds.get_mut(..n).unwrap_or_default();
                match poll(set, poll_timeout(now, wake)) {
                    Ok(_) => set.get(1).is_some_and(is_ready),
                    Err(Errno::EINTR) => false,
                    Err(e) => return Err(e.into()),
                }
            };
            if ctl_ready {
                poller.signal();
            }
        } else {
            let wait = wake.map_or(num64_to_duration(FALLBACK_SLICE), |w| {
                num64_to_duration(w.saturating_sub(now))
            });
            match sock.recv(&mut buf, wait) {
                Ok(Some(m)) => {
                    receive_one(&mut rx, clock, fmt, &buf, m)?;
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    rx.sink.flush()?;
    Ok(rx.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Sid, Slot, SlotKind};
    use proptest::prelude::*;

    proptest! {
        /// Datagrams come from the network: whatever they contain, handling them never
        /// panics, and the window never grows beyond what the receive time allows.
        #[test]
        fn arbitrary_datagrams_never_panic(
            packets in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), any::<u32>(), any::<u64>(), 0u64..4),
                1..30,
            ),
        ) {
            let clock = Clock::new(None, 0.0);
            let start = Num64(1 << 40);
            let slot = Slot { kind: SlotKind::Fixed, param: Num64(1 << 22) }; // ~1 ms
            let mut sched = Schedule::new(Sid([1; 16]), start, &[slot], 1_000_000);
            let mut sink: Vec<PacketRecord> = Vec::new();
            let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
            let params = ReceiverParams {
                num_packets: 1_000_000,
                timeout: Num64(1 << 32),
                expected_src: src,
            };
            let fmt = PacketFormat::new(crate::types::Mode::Open, None, 0).unwrap();
            let mut rx = Receiver {
                clock: &clock,
                sched: &mut sched,
                sink: &mut sink,
                params,
                window: Window { head: 0, slots: VecDeque::new(), scan: 0 },
                report: ReceiverReport::default(),
            };
            for (mut data, seq, ts, near) in packets {
                // Sometimes make the packet plausible: a sequence number and send time
                // near the schedule, so the later checks run too.
                let recv_ts = start.wrapping_add(Num64(near << 32));
                if near > 0 && data.len() >= 14 {
                    let seq = seq % 4096;
                    data[..4].copy_from_slice(&seq.to_be_bytes());
                    let send = recv_ts.wrapping_sub(Num64(ts % (1 << 31)));
                    data[4..12].copy_from_slice(&send.to_be_bytes());
                    data[13] |= 1;
                }
                rx.handle(&fmt, &data, src, recv_ts, None).unwrap();
                rx.expire(recv_ts, false).unwrap();
                // Window: at most the packets scheduled up to recv + 2T (≈ 1024 per s).
                prop_assert!(rx.window.slots.len() <= 4 * 1100);
            }
            let r = rx.report;
            prop_assert_eq!(r.received as usize + r.lost as usize, sink.len());
            // Every accepted record passed the Timeout checks of spec §3.4.
            for rec in sink.iter().filter(|r| !r.is_lost()) {
                prop_assert!(abs_gap(rec.send_ts, rec.recv_ts) <= 1 << 32);
                let t = sched.send_time(rec.seq).unwrap();
                prop_assert!(abs_gap(rec.send_ts, t) <= 1 << 32);
            }
        }
    }

    /// A Request-Session with a Timeout of ~68 years and 2^32-1 packets: the window
    /// stops at its cap instead of holding every packet.
    #[test]
    fn window_is_capped_whatever_the_timeout() {
        let clock = Clock::new(None, 0.0);
        let start = Num64(1 << 40);
        let slot = Slot {
            kind: SlotKind::Fixed,
            param: Num64(1 << 32),
        };
        let mut sched = Schedule::new(Sid([1; 16]), start, &[slot], u32::MAX);
        let mut sink: Vec<PacketRecord> = Vec::new();
        let mut rx = Receiver {
            clock: &clock,
            sched: &mut sched,
            sink: &mut sink,
            params: ReceiverParams {
                num_packets: u32::MAX,
                timeout: Num64(u64::MAX / 4),
                expected_src: "192.0.2.1:1".parse().unwrap(),
            },
            window: Window {
                head: 0,
                slots: VecDeque::new(),
                scan: 0,
            },
            report: ReceiverReport::default(),
        };
        rx.extend_to(start.wrapping_add(Num64(u64::MAX / 2)));
        assert_eq!(rx.window.slots.len(), MAX_WINDOW);
        rx.expire(start, false).unwrap();
        assert_eq!(rx.window.slots.len(), MAX_WINDOW);
    }

    /// The window holds what is due and no more: a packet extends it to its own seqno,
    /// not to `recv + 2 × Timeout` (which held ~3 × Timeout × rate entries).
    #[test]
    fn window_extends_only_as_far_as_needed() {
        let clock = Clock::new(None, 0.0);
        let start = Num64(1 << 40);
        let slot = Slot {
            kind: SlotKind::Fixed,
            param: Num64(1 << 22), // ~1 ms
        };
        let mut sched = Schedule::new(Sid([1; 16]), start, &[slot], 1_000_000);
        let mut sink: Vec<PacketRecord> = Vec::new();
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let mut fmt = PacketFormat::new(crate::types::Mode::Open, None, 0).unwrap();
        let mut rx = Receiver {
            clock: &clock,
            sched: &mut sched,
            sink: &mut sink,
            params: ReceiverParams {
                num_packets: 1_000_000,
                timeout: Num64(1 << 32), // 1 s: ~1000 packets per Timeout
                expected_src: src,
            },
            window: Window {
                head: 0,
                slots: VecDeque::new(),
                scan: 0,
            },
            report: ReceiverReport::default(),
        };
        // Packet q is scheduled at start + (q + 1) × interval.
        let at = |q: u64| start.wrapping_add(Num64((q + 1) << 22));
        let mut buf = vec![0u8; fmt.len()];
        fmt.prepare(5, &mut buf).unwrap();
        fmt.stamp(&mut buf, at(5), ErrorEstimate::UNSYNC).unwrap();
        rx.handle(&fmt, &buf, src, at(5), None).unwrap();
        assert_eq!(rx.report.received, 1, "{:?}", rx.report);
        assert_eq!(rx.window.slots.len(), 6);
        rx.extend_to(at(10));
        assert_eq!(rx.window.slots.len(), 11);
        // The next wake-up is for the first packet that can still be lost (seq 0).
        assert_eq!(rx.next_expiry(), Some(at(0).wrapping_add(Num64(1 << 32))));
    }

    #[test]
    fn endpoints_compare_v4_mapped_as_v4() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let m: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let p: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        assert!(same_endpoint(a, m));
        assert!(same_endpoint(m, a));
        assert!(!same_endpoint(a, p));
        assert!(!same_endpoint(a, b));
    }
}
