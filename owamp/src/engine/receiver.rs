//! The receiver loop (spec §3.4): timestamps, checks and records each datagram, and
//! declares packets lost once they are more than Timeout overdue.

use super::wait::{POLL_SLICE, tighten_timer_slack};
use super::{Received, RecordSink, SessionControl, TestSocket, abs_gap};
use crate::packet::{PacketError, PacketFormat};
use crate::schedule::Schedule;
use crate::time::{Clock, num64_to_duration};
use crate::types::{ErrorEstimate, Num64, PacketRecord, Timestamp};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// At most this many already-queued datagrams are still processed after a stop request.
const MAX_DRAIN_ON_STOP: usize = 100_000;

/// Most packets the lost-packet window holds (16 octets each: 64 MiB). The window spans
/// the packets scheduled within 3 × Timeout, and both the rate and Timeout come from the
/// peer's Request-Session: 1 packet/s with a Timeout of years would otherwise make the
/// tester allocate 16 octets for every one of up to 2^32 packets. A session really that
/// dense sees its packets past the cap counted as off schedule (and later lost).
const MAX_WINDOW: usize = 1 << 22;

/// Records are flushed to the sink at least this often (design.md: ≤ 100 ms).
const FLUSH_EVERY: Num64 = Num64(429_496_730); // 100 ms in 2^-32 s

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
/// `head + len` is the schedule's next position. Its size is bounded by the send rate
/// times 3 × Timeout, never by `num_packets`.
struct Window {
    head: u32,
    slots: VecDeque<Expected>,
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
        while self.window.frontier() < self.params.num_packets
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
        // A valid packet has sched ≤ send + T ≤ recv + 2T: extending that far is bounded,
        // and a seqno still beyond the window is necessarily off schedule.
        self.extend_to(recv_ts.wrapping_add(Num64(timeout.saturating_mul(2))));
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
fn receive_one(
    rx: &mut Receiver<'_>,
    clock: &Clock,
    fmt: &PacketFormat,
    buf: &[u8],
    m: Received,
) -> io::Result<()> {
    let recv_ts = match m.kernel_ts {
        Some(k) => clock.from_realtime(k),
        None => clock.now().0,
    };
    let data = buf.get(..m.len.min(fmt.len())).unwrap_or_default();
    rx.handle(fmt, data, m.src, recv_ts, m.ttl)
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
        },
        report: ReceiverReport::default(),
    };
    // One byte more than a packet is enough: longer datagrams are truncated and accepted.
    let mut buf = vec![0u8; fmt.len() + 1];
    let two_t = Num64(params.timeout.0.saturating_mul(2));
    let mut last_flush = clock.now().0;
    loop {
        let (now, _) = clock.now();
        rx.extend_to(now.wrapping_add(two_t));
        rx.expire(now, false)?;
        if rx.window.frontier() >= params.num_packets && rx.window.slots.is_empty() {
            break;
        }
        if ctl.poll_stop() {
            rx.report.stopped = true;
            // Packets that already arrived are results, not losses: take what is queued
            // (bounded, so a flood cannot hold the stop) before flushing the rest.
            for _ in 0..MAX_DRAIN_ON_STOP {
                match sock.recv(&mut buf, Duration::ZERO) {
                    Ok(Some(m)) => receive_one(&mut rx, clock, fmt, &buf, m)?,
                    Ok(None) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            rx.expire(now, true)?;
            break;
        }
        if now.saturating_sub(last_flush) >= FLUSH_EVERY {
            rx.sink.flush()?;
            last_flush = now;
        }
        // Wake for the next expiry, the next flush, or the control poll, whichever is first.
        let mut wake = now.wrapping_add(POLL_SLICE);
        if let Some(e) = rx.window.slots.front() {
            wake = wake.min(e.sched.wrapping_add(params.timeout).wrapping_add(Num64(1)));
        }
        let wait = num64_to_duration(wake.saturating_sub(now));
        match sock.recv(&mut buf, wait) {
            Ok(Some(m)) => receive_one(&mut rx, clock, fmt, &buf, m)?,
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
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
                window: Window { head: 0, slots: VecDeque::new() },
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
            },
            report: ReceiverReport::default(),
        };
        rx.extend_to(start.wrapping_add(Num64(u64::MAX / 2)));
        assert_eq!(rx.window.slots.len(), MAX_WINDOW);
        rx.expire(start, false).unwrap();
        assert_eq!(rx.window.slots.len(), MAX_WINDOW);
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
