//! The receiver loop (protocol.md §3.4): timestamps, checks and records each datagram, and
//! declares packets lost once they are more than Timeout overdue.

use super::wait::{FALLBACK_SLICE, StopPoller, is_ready};
use super::{Received, RecordSink, SessionControl, TestSocket, abs_gap};
use crate::packet::{PacketError, PacketFormat};
use crate::schedule::{Schedule, ScheduleCursor};
use crate::time::{Clock, duration_to_num64, num64_to_duration};
use crate::types::{ErrorEstimate, Num64, PacketRecord, Timestamp};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// At most this many already-queued datagrams are still processed after a stop request.
const MAX_DRAIN_ON_STOP: usize = 100_000;

/// At most this many queued datagrams are read before the loop expires packets and asks
/// the control again, so a flood cannot starve either.
const MAX_DRAIN_BATCH: usize = 256;

/// Datagrams per `recvmmsg`, and the most octets of buffers that batch may take.
const RECV_BATCH: usize = 32;
const RECV_BATCH_OCTETS: usize = 64 << 10;

/// Most packets the lost-packet window holds (one bit each plus a 48-octet schedule
/// checkpoint per 64: about 3 MiB at the cap). The window spans the packets scheduled
/// within about one Timeout (up to 2 × Timeout ahead for a packet that arrives early),
/// and both the rate and Timeout come from the peer's Request-Session: 1 packet/s with a
/// Timeout of years would otherwise make the tester hold every one of up to 2^32
/// packets. A session really that dense sees its packets past the cap counted as off
/// schedule (and later lost).
const MAX_WINDOW: usize = 1 << 22;

/// Packets per window chunk: the chunk holds their received bits and one schedule
/// checkpoint, so any send time in the window is at most `CHUNK - 1` schedule steps away.
const CHUNK: u32 = 64;

/// New records are flushed once the last flush is this old. A receiver that reads its
/// socket every [`READ_INTERVAL_MAX`] flushes at each of those wake-ups; at higher rates
/// the records wait at most 2 × this before a fetcher or a crash can see them.
const FLUSH_AFTER: Num64 = Num64(214_748_365); // 50 ms in 2^-32 s

/// The longest the receiver leaves datagrams queued in its socket before it reads them.
/// Receive times are the kernel's (`SO_TIMESTAMPNS`, taken when a datagram is queued), so
/// reading later changes no result: a session at 10 packets/s wakes once a second instead
/// of ten times, and a datagram arriving at a socket nobody waits on wakes nobody (the
/// kernel's cost of a wake-up, and of the context switch, is most of what a packet costs
/// a paced session). Lost records and flushes are late by at most this.
const READ_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// Below this (poll's resolution) reading on an interval is not worth it: the receiver
/// waits on its socket instead.
const READ_INTERVAL_MIN: Duration = Duration::from_millis(1);

/// A conservative estimate of what one queued datagram costs the receive buffer: the
/// kernel charges its `truesize` (about 800 octets to 1.3 KiB on loopback for a small
/// payload), counted against the SO_RCVBUF that getsockopt reports.
const TRUESIZE_ESTIMATE: usize = 2048;

/// How many duplicates a session records, at most: one per packet on average, plus 1024.
///
/// Duplicates are recorded like any packet (RFC 4656 §3.4 and the reference do), but a
/// peer replaying captured packets (authentic ones pass the HMAC check of the
/// authenticated and encrypted modes), or anyone spoofing the sender in open mode, would
/// otherwise make a session write records without end until the data file or owping's
/// memory reached its limit and the whole session was lost. Past this bound duplicates
/// are only counted ([`ReceiverReport::duplicates_unrecorded`]), so a session writes at
/// most `2 × num_packets + 1024` records: one per packet (received or lost) and these.
pub fn max_duplicate_records(num_packets: u32) -> u64 {
    u64::from(num_packets).saturating_add(1024)
}

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
    /// `seq >= num_packets` (fatal in the reference, protocol.md §3.4 step 5).
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
    /// Duplicates received, recorded or not.
    pub duplicates: u64,
    /// Of those, the ones counted but not recorded: past [`max_duplicate_records`].
    pub duplicates_unrecorded: u64,
    /// Lost records written.
    pub lost: u64,
    pub drops: DropCounts,
    pub stopped: bool,
}

/// 64 consecutive packets of the window, from seqno `CHUNK × c`.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    /// Bit `i`: packet `CHUNK × c + i` was received.
    received: u64,
    /// The schedule just after computing `sched(CHUNK × c)` (position `CHUNK × c + 1`).
    at: ScheduleCursor,
}

/// The packets that are scheduled but not yet overdue: seqnos `head .. frontier`, where
/// `frontier` is the frontier schedule's next position. It is extended only as far as
/// needed (to the present, or to a received packet's seqno), so its size is bounded by
/// the send rate times about Timeout, never by `num_packets`.
///
/// Compact (a bit per packet, a checkpoint per 64): send times are recomputed from the
/// checkpoints when needed, exactly as a fresh schedule gives them (protocol.md §5.3), so lost
/// records carry the exact scheduled time and step 9 of §3.4 compares with the exact
/// `sched(seq)`. Three schedule cursors keep the common paths O(1) per packet: the
/// frontier (the receiver's schedule, extending), `head_sched` (expiry) and `any_sched`
/// (out of order, duplicates, the next expiry), which seeks to a checkpoint when it would
/// otherwise go back or more than 63 steps forward.
struct Window {
    head: u32,
    frontier: u32,
    /// Chunks `head / 64 ..= (frontier - 1) / 64`.
    chunks: VecDeque<Chunk>,
    /// Every packet in `head .. scan` was received (a hint, so finding the next packet
    /// that can be lost is amortised O(1)).
    scan: u32,
    head_sched: Schedule,
    any_sched: Schedule,
}

impl Window {
    /// An empty window at seqno 0; `sched` is the session's schedule (cloned as cursors).
    fn new(sched: &Schedule) -> Window {
        let mut s = sched.clone();
        s.reset();
        Window {
            head: 0,
            frontier: 0,
            chunks: VecDeque::new(),
            scan: 0,
            head_sched: s.clone(),
            any_sched: s,
        }
    }

    fn len(&self) -> usize {
        (self.frontier - self.head) as usize
    }

    fn is_empty(&self) -> bool {
        self.frontier == self.head
    }

    /// The chunk holding `seq` (any `seq` in `head .. frontier`).
    fn chunk(&self, seq: u32) -> Option<&Chunk> {
        self.chunks.get((seq / CHUNK - self.head / CHUNK) as usize)
    }

    fn is_received(&self, seq: u32) -> bool {
        self.chunk(seq)
            .is_some_and(|c| c.received & (1 << (seq % CHUNK)) != 0)
    }

    /// Marks `seq` received; returns whether it already was (a duplicate).
    fn set_received(&mut self, seq: u32) -> bool {
        let i = (seq / CHUNK - self.head / CHUNK) as usize;
        let Some(c) = self.chunks.get_mut(i) else {
            return false;
        };
        let bit = 1 << (seq % CHUNK);
        let was = c.received & bit != 0;
        c.received |= bit;
        was
    }

    /// Appends packet `frontier`; `at` is the frontier schedule's cursor just after
    /// computing its send time.
    fn push(&mut self, at: ScheduleCursor) {
        if self.frontier.is_multiple_of(CHUNK) {
            self.chunks.push_back(Chunk { received: 0, at });
        }
        self.frontier += 1;
    }

    /// Drops packet `head`.
    fn pop(&mut self) {
        self.head += 1;
        if self.head.is_multiple_of(CHUNK) {
            self.chunks.pop_front();
        }
    }

    /// `sched(head)` (head cursor: moves forward one step per expired packet).
    fn head_time(&mut self) -> Option<Timestamp> {
        if self.is_empty() {
            return None;
        }
        self.head_sched.send_time(self.head)
    }

    /// `sched(seq)` for `seq` in the window, from the random-access cursor: at most
    /// `CHUNK - 1` steps after a seek to `seq`'s checkpoint.
    fn any_time(&mut self, seq: u32) -> Option<Timestamp> {
        if seq < self.head || seq >= self.frontier {
            return None;
        }
        let p = self.any_sched.position();
        if p > seq + 1 || seq + 1 - p >= CHUNK {
            let at = self.chunk(seq)?.at;
            self.any_sched.seek(&at);
        }
        self.any_sched.send_time(seq)
    }
}

struct Receiver<'a> {
    clock: &'a Clock,
    /// The frontier cursor: positioned just after the last packet pushed or peeked.
    sched: &'a mut Schedule,
    sink: &'a mut dyn RecordSink,
    params: ReceiverParams,
    window: Window,
    report: ReceiverReport,
    /// A datagram came without a kernel timestamp: its receive time was taken in user
    /// space, which needs a prompt wake-up, so reading on an interval stops for the session.
    user_timestamps: bool,
    /// The latest send time of a packet recorded as received (zero before the first).
    /// The session does not end before it is a Timeout old: see [`Receiver::keep_until`].
    latest_send: Timestamp,
}

impl<'a> Receiver<'a> {
    fn new(
        clock: &'a Clock,
        sched: &'a mut Schedule,
        sink: &'a mut dyn RecordSink,
        params: ReceiverParams,
    ) -> Receiver<'a> {
        sched.reset();
        let window = Window::new(sched);
        Receiver {
            clock,
            sched,
            sink,
            params,
            window,
            report: ReceiverReport::default(),
            user_timestamps: false,
            latest_send: Num64::ZERO,
        }
    }

    /// When every packet is accounted for, the receiver is done; the Stop-Sessions that
    /// follows keeps only the records sent at or before its stop time less Timeout
    /// (RFC 4656 §3.8, protocol.md §7.8). Ending at `sched(last) + Timeout` would drop a
    /// last packet that was sent late but arrived in time (a busy sender): so the end
    /// also waits until the latest send time recorded is a Timeout old. Bounded: an
    /// accepted packet is sent within Timeout of its schedule, so this is at most
    /// `sched(last) + 2 × Timeout`.
    fn keep_until(&self) -> Option<Timestamp> {
        (self.latest_send != Num64::ZERO)
            .then(|| self.latest_send.wrapping_add(self.params.timeout))
    }

    /// Extends the window with every packet scheduled at or before `until`.
    fn extend_to(&mut self, until: Timestamp) {
        self.extend(until, u32::MAX);
    }

    /// Extends the window with the packets scheduled at or before `until`, up to seqno
    /// `last` at most.
    fn extend(&mut self, until: Timestamp, last: u32) {
        while self.window.frontier < self.params.num_packets
            && self.window.frontier <= last
            && self.window.len() < MAX_WINDOW
        {
            let Some(t) = self.sched.send_time(self.window.frontier) else {
                break;
            };
            if t > until {
                break;
            }
            self.window.push(self.sched.cursor());
        }
    }

    /// `sched(seq)` for a packet in the window, from whichever cursor is nearest.
    fn sched_at(&mut self, seq: u32) -> Option<Timestamp> {
        if seq < self.window.head || seq >= self.window.frontier {
            return None;
        }
        if self.sched.position() == seq + 1 {
            return self.sched.send_time(seq);
        }
        if self.window.head_sched.position() == seq + 1 {
            return self.window.head_sched.send_time(seq);
        }
        self.window.any_time(seq)
    }

    fn lost_record(&self, seq: u32, sched: Timestamp, recv_err: ErrorEstimate) -> PacketRecord {
        PacketRecord {
            seq,
            send_err: ErrorEstimate::UNSYNC,
            recv_err,
            send_ts: sched,
            recv_ts: Num64::ZERO,
            ttl: 255,
        }
    }

    /// Pops every packet whose `sched + Timeout` is before `now` (all of them when
    /// `all`), writing lost records for those never received.
    fn expire(&mut self, now: Timestamp, all: bool) -> io::Result<()> {
        // Read the clock's estimate only for a lost record: this runs for every received
        // packet, and most find nothing overdue.
        let mut recv_err = None;
        while let Some(t) = self.window.head_time() {
            if !all && t.wrapping_add(self.params.timeout) >= now {
                break;
            }
            let head = self.window.head;
            if !self.window.is_received(head) {
                let err = *recv_err.get_or_insert_with(|| self.clock.error_estimate());
                let r = self.lost_record(head, t, err);
                self.sink.record(&r)?;
                self.report.lost += 1;
            }
            self.window.pop();
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
        while w.scan < w.frontier {
            if !w.is_received(w.scan) {
                let s = w.scan;
                return self.sched_at(s).map(|x| x.wrapping_add(t));
            }
            w.scan += 1;
        }
        let f = w.frontier;
        let full = w.len() >= MAX_WINDOW;
        if f < self.params.num_packets && !full {
            if let Some(s) = self.sched.send_time(f) {
                return Some(s.wrapping_add(t));
            }
        } else if full {
            // Full: nothing can join until the front leaves.
            return self.window.head_time().map(|x| x.wrapping_add(t));
        }
        if self.window.is_empty() {
            return None;
        }
        self.sched_at(f - 1).map(|x| x.wrapping_add(t))
    }

    /// Steps 3–10 of protocol.md §3.4 for one datagram.
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
        let Some(sched) = self.sched_at(pkt.seq) else {
            self.report.drops.schedule_gap += 1;
            return Ok(());
        };
        if abs_gap(pkt.send_ts, sched) > timeout {
            self.report.drops.schedule_gap += 1;
            return Ok(());
        }
        if self.window.set_received(pkt.seq) {
            self.report.duplicates += 1;
            let recorded = self.report.duplicates - self.report.duplicates_unrecorded;
            if recorded > max_duplicate_records(self.params.num_packets) {
                self.report.duplicates_unrecorded += 1;
                return Ok(());
            }
        }
        // Packets overdue by this one's arrival get their lost records first. Datagrams
        // are read in arrival order, so none of those can still arrive in time; and a
        // reader summarising in file order (the reference's owstats and owping) takes a
        // received record as the point past which no packet scheduled more than Timeout
        // earlier is outstanding: a lost record after it is an error there.
        self.expire(recv_ts, false)?;
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
        self.latest_send = self.latest_send.max(pkt.send_ts);
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
    m: &Received,
) -> io::Result<Timestamp> {
    let recv_ts = match m.kernel_ts {
        Some(k) => clock.from_realtime(k),
        None => {
            rx.user_timestamps = true;
            clock.now().0
        }
    };
    let data = buf.get(..m.len.min(fmt.len())).unwrap_or_default();
    rx.handle(fmt, data, m.src, recv_ts, m.ttl)?;
    Ok(recv_ts)
}

/// The receive buffers: one batch of datagrams for [`TestSocket::recv_queued`].
struct Batch {
    bufs: Vec<Vec<u8>>,
    metas: Vec<Received>,
}

impl Batch {
    fn new(packet_len: usize) -> Batch {
        // One byte more than a packet is enough: longer datagrams are truncated and
        // accepted.
        let len = packet_len + 1;
        let n = (RECV_BATCH_OCTETS / len).clamp(1, RECV_BATCH);
        Batch {
            bufs: vec![vec![0u8; len]; n],
            metas: Vec::with_capacity(n),
        }
    }
}

/// What one [`drain`] did.
struct Drained {
    /// The queue was emptied (not stopped by `max`).
    empty: bool,
    /// The receive time of the last datagram read.
    last: Option<Timestamp>,
    /// Datagrams read.
    count: usize,
}

/// Reads up to `max` datagrams already queued (no waiting), a batch per system call.
fn drain(
    rx: &mut Receiver<'_>,
    sock: &mut dyn TestSocket,
    clock: &Clock,
    fmt: &PacketFormat,
    batch: &mut Batch,
    max: usize,
) -> io::Result<Drained> {
    let mut d = Drained {
        empty: false,
        last: None,
        count: 0,
    };
    while d.count < max {
        let want = (max - d.count).min(batch.bufs.len());
        let bufs = batch.bufs.get_mut(..want).unwrap_or_default();
        let got = match sock.recv_queued(bufs, &mut batch.metas) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for (m, buf) in batch.metas.iter().zip(&batch.bufs) {
            d.last = Some(receive_one(rx, clock, fmt, buf, m)?);
        }
        d.count += got;
        // A short batch: nothing more was queued.
        if got < want {
            d.empty = true;
            return Ok(d);
        }
    }
    Ok(d)
}

/// How long the receiver may leave datagrams queued before reading them, or `None` when
/// it must wait on its socket and read each as it comes. Reading late changes no result
/// (receive times are the kernel's), so the interval is as long as the socket buffer
/// allows: at most a quarter of it filled meanwhile (`rcvbuf` is getsockopt's SO_RCVBUF,
/// in the kernel's truesize accounting), at most [`READ_INTERVAL_MAX`]. Back-to-back
/// schedules (an infinite rate), an unknown buffer, or a rate too high for the buffer
/// give `None`.
fn read_interval(pps: f64, rcvbuf: Option<usize>, packet_len: usize) -> Option<Duration> {
    let rcvbuf = rcvbuf? as f64;
    if !(pps.is_finite() && pps > 0.0) {
        return None;
    }
    let per = TRUESIZE_ESTIMATE.max(packet_len.saturating_add(256).saturating_mul(2)) as f64;
    let secs = (rcvbuf / per / pps / 4.0).min(READ_INTERVAL_MAX.as_secs_f64());
    // Whole milliseconds (poll's unit, rounded down, so the wait is not longer).
    let w = Duration::from_millis((secs * 1000.0) as u64);
    (w >= READ_INTERVAL_MIN).then_some(w)
}

/// Whether, and for how long, the receiver may leave datagrams queued.
///
/// The full read interval fills at most a quarter of the socket's buffer at the
/// session's own rate. Someone sending far more from the sender's address (replays of
/// authentic packets, or a spoofed flood in open mode: the connected socket cannot tell
/// them apart) would overflow it within one interval, and the kernel would then drop the
/// session's own packets too. So the interval grows from a sixteenth of it, doubling
/// after each read that found no more datagrams than twice the schedule's for the time
/// waited (plus two batches), and the receiver stops reading on an interval for good as
/// soon as one read finds more: it then reads each datagram as it comes. Before the
/// first send time it waits on the socket (an idle socket costs nothing either way). A
/// flood that starts late in a session can cost at most the one interval before it is
/// seen.
struct Pace {
    /// The full read interval (`None`: never read on an interval).
    full: Option<Num64>,
    /// The interval now (from a sixteenth of `full` up to it).
    current: Num64,
    pps: f64,
    first_send: Timestamp,
    /// Datagrams read since the last wait.
    count: usize,
    flooded: bool,
}

impl Pace {
    fn new(full: Option<Num64>, pps: f64, first_send: Option<Timestamp>) -> Pace {
        let min = duration_to_num64(READ_INTERVAL_MIN);
        Pace {
            full,
            current: full.map_or(min, |w| Num64(w.0 / 16).max(min).min(w)),
            pps,
            first_send: first_send.unwrap_or(Num64::ZERO),
            count: 0,
            flooded: false,
        }
    }

    /// Datagrams the schedule explains in `w`, twice over, plus two batches.
    fn budget(&self, w: Num64) -> usize {
        (2.0 * self.pps * num64_to_duration(w).as_secs_f64()) as usize + 2 * RECV_BATCH
    }

    /// `n` datagrams were read.
    fn read(&mut self, n: usize) {
        self.count = self.count.saturating_add(n);
        if self.full.is_some() && self.count > self.budget(self.current) {
            self.flooded = true;
        }
    }

    /// The interval to read on now (`None`: wait on the socket), just before a wait;
    /// `lazy_before`: the previous wait was on an interval.
    fn lazy(&mut self, now: Timestamp, lazy_before: bool) -> Option<Num64> {
        let full = self.full?;
        if self.flooded || now < self.first_send {
            self.count = 0;
            return None;
        }
        if lazy_before && self.count <= self.budget(self.current) {
            self.current = Num64(self.current.0.saturating_mul(2)).min(full);
        }
        self.count = 0;
        Some(self.current)
    }
}

/// Waits until the test socket or the control's descriptor is readable (either may be
/// left out; with neither this is a plain sleep), or until `timeout`. Returns whether
/// the control's descriptor had news.
fn wait_readable(
    sock: Option<BorrowedFd<'_>>,
    ctl: Option<BorrowedFd<'_>>,
    timeout: PollTimeout,
) -> io::Result<bool> {
    let r = |fd| PollFd::new(fd, PollFlags::POLLIN);
    // A fixed array (no allocation per wait): the unused second entry repeats the first
    // and is left out of the slice polled.
    let (mut fds, n, ctl_at) = match (sock, ctl) {
        (Some(s), Some(c)) => ([r(s), r(c)], 2, Some(1)),
        (Some(s), None) => ([r(s), r(s)], 1, None),
        (None, Some(c)) => ([r(c), r(c)], 1, Some(0)),
        (None, None) => {
            return match poll(&mut [], timeout) {
                Ok(_) | Err(Errno::EINTR) => Ok(false),
                Err(e) => Err(e.into()),
            };
        }
    };
    let set = fds.get_mut(..n).unwrap_or_default();
    match poll(set, timeout) {
        Ok(_) => Ok(ctl_at.and_then(|i| set.get(i)).is_some_and(is_ready)),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
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
/// cleanup of protocol.md §7.8 trims them).
///
/// With a [`read_interval`], the receiver does not wait on its socket at all: it sleeps
/// on the control's descriptor alone (Stop-Sessions still ends it at once) until the
/// interval is over or a packet may be declared lost, then reads everything queued in
/// batches, a `recvmmsg` each.
pub fn run_receiver(
    sock: &mut dyn TestSocket,
    clock: &Clock,
    fmt: &PacketFormat,
    sched: &mut Schedule,
    params: ReceiverParams,
    sink: &mut dyn RecordSink,
    ctl: &mut dyn SessionControl,
) -> io::Result<ReceiverReport> {
    sched.reset();
    let params = ReceiverParams {
        num_packets: params.num_packets.min(sched.num_packets()),
        ..params
    };
    let interval = read_interval(
        sched.packets_per_second(),
        sock.recv_buffer_size(),
        fmt.len(),
    )
    .map(duration_to_num64);
    let first_send = sched.send_time(0);
    sched.reset();
    let mut pace = Pace::new(interval, sched.packets_per_second(), first_send);
    let mut was_lazy = false;
    let mut rx = Receiver::new(clock, sched, sink, params);
    let mut batch = Batch::new(fmt.len());
    // Waiting on the control's descriptor needs the socket's too (one poll on both).
    let use_fd = ctl.wait_fd().is_some() && sock.poll_fd().is_some();
    let mut poller = StopPoller::new(use_fd);
    let mut last_flush = clock.now().0;
    let mut flushed = 0u64;
    loop {
        let (now, _) = clock.now();
        // Datagrams already queued are read before anything is declared lost: after a
        // long descheduling (or a sleep of the read interval) they arrived in time (their kernel
        // timestamps say so) and expiring first would count them lost and then drop them
        // as `already_lost`. Packets are judged by receive time, so the window is
        // expired only up to the last datagram read when more are still queued.
        let d = drain(&mut rx, sock, clock, fmt, &mut batch, MAX_DRAIN_BATCH)?;
        pace.read(d.count);
        let horizon = match (d.empty, d.last) {
            (false, Some(t)) => t.min(now),
            _ => now,
        };
        rx.extend_to(horizon);
        rx.expire(horizon, false)?;
        let mut hold = None;
        if rx.window.frontier >= params.num_packets && rx.window.is_empty() {
            match rx.keep_until() {
                Some(t) if now <= t => hold = Some(t),
                _ => break,
            }
        }
        if poller.should_stop(ctl, now) {
            rx.report.stopped = true;
            // Packets that already arrived are results, not losses: take what is queued
            // (bounded, so a flood cannot hold the stop) before flushing the rest.
            drain(&mut rx, sock, clock, fmt, &mut batch, MAX_DRAIN_ON_STOP)?;
            // Everything due by now, and nothing later: the cleanup of protocol.md §7.8 keeps
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
        if !d.empty {
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
        if let Some(t) = hold {
            earliest(t.wrapping_add(Num64(1)));
        }
        // Let the datagrams queue for an interval instead of waking for each. A datagram
        // that came without a kernel timestamp was stamped when read, so then every one
        // must be read as it comes.
        let lazy = pace.lazy(now, was_lazy).filter(|_| !rx.user_timestamps);
        was_lazy = lazy.is_some();
        if let Some(w) = lazy {
            earliest(now.wrapping_add(w));
        }
        if lazy.is_some() || use_fd {
            // While reading on an interval the socket is left out: only the control (if
            // it has a descriptor), a due loss or the interval's end wakes us; without a
            // descriptor the control is asked at the next turn, as the fallback does at
            // every wake-up.
            let sfd = if lazy.is_some() { None } else { sock.poll_fd() };
            if wait_readable(sfd, poller.fd(&*ctl, now), poll_timeout(now, wake))? {
                poller.signal();
            }
        } else {
            let wait = wake.map_or(num64_to_duration(FALLBACK_SLICE), |w| {
                num64_to_duration(w.saturating_sub(now))
            });
            let Some(buf) = batch.bufs.first_mut() else {
                continue;
            };
            match sock.recv(buf, wait) {
                Ok(Some(m)) => {
                    receive_one(&mut rx, clock, fmt, buf, &m)?;
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
            let mut rx = Receiver::new(&clock, &mut sched, &mut sink, params);
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
                prop_assert!(rx.window.len() <= 4 * 1100);
            }
            let r = rx.report;
            prop_assert_eq!(r.received as usize + r.lost as usize, sink.len());
            // Every accepted record passed the Timeout checks of protocol.md §3.4.
            for rec in sink.iter().filter(|r| !r.is_lost()) {
                prop_assert!(abs_gap(rec.send_ts, rec.recv_ts) <= 1 << 32);
                let t = sched.send_time(rec.seq).unwrap();
                prop_assert!(abs_gap(rec.send_ts, t) <= 1 << 32);
            }
        }
    }

    /// The receiver's window as it was before it was made compact (16 octets per packet,
    /// every send time from a fresh schedule computed up front): the reference the
    /// compact window must match record for record.
    struct Reference {
        times: Vec<Timestamp>,
        timeout: Num64,
        head: u32,
        slots: VecDeque<(Timestamp, bool)>,
        scan: u32,
        records: Vec<PacketRecord>,
        report: ReceiverReport,
        recv_err: ErrorEstimate,
    }

    impl Reference {
        fn frontier(&self) -> u32 {
            self.head + self.slots.len() as u32
        }

        fn extend(&mut self, until: Timestamp, last: u32) {
            while let Some(&t) = self.times.get(self.frontier() as usize) {
                if self.frontier() > last || t > until {
                    break;
                }
                self.slots.push_back((t, false));
            }
        }

        fn expire(&mut self, now: Timestamp, all: bool) {
            while let Some(&(t, got)) = self.slots.front() {
                if !all && t.wrapping_add(self.timeout) >= now {
                    break;
                }
                if !got {
                    self.records.push(PacketRecord {
                        seq: self.head,
                        send_err: ErrorEstimate::UNSYNC,
                        recv_err: self.recv_err,
                        send_ts: t,
                        recv_ts: Num64::ZERO,
                        ttl: 255,
                    });
                    self.report.lost += 1;
                }
                self.slots.pop_front();
                self.head += 1;
            }
        }

        fn next_expiry(&mut self) -> Option<Timestamp> {
            let t = self.timeout;
            self.scan = self.scan.max(self.head);
            while let Some(&(s, got)) = self.slots.get((self.scan - self.head) as usize) {
                if !got {
                    return Some(s.wrapping_add(t));
                }
                self.scan += 1;
            }
            if let Some(&s) = self.times.get(self.frontier() as usize) {
                return Some(s.wrapping_add(t));
            }
            self.slots.back().map(|e| e.0.wrapping_add(t))
        }

        fn handle(&mut self, seq: u32, send_ts: Timestamp, recv_ts: Timestamp) {
            let timeout = self.timeout.0;
            if seq as usize >= self.times.len() {
                self.report.drops.seq_out_of_range += 1;
                return;
            }
            if seq < self.head {
                self.report.drops.already_lost += 1;
                return;
            }
            if abs_gap(send_ts, recv_ts) > timeout {
                self.report.drops.send_recv_gap += 1;
                return;
            }
            self.extend(recv_ts.wrapping_add(Num64(timeout.saturating_mul(2))), seq);
            let Some(slot) = self.slots.get_mut((seq - self.head) as usize) else {
                self.report.drops.schedule_gap += 1;
                return;
            };
            if abs_gap(send_ts, slot.0) > timeout {
                self.report.drops.schedule_gap += 1;
                return;
            }
            if slot.1 {
                self.report.duplicates += 1;
                let recorded = self.report.duplicates - self.report.duplicates_unrecorded;
                if recorded > max_duplicate_records(self.times.len() as u32) {
                    self.report.duplicates_unrecorded += 1;
                    return;
                }
            }
            slot.1 = true;
            self.expire(recv_ts, false);
            self.records.push(PacketRecord {
                seq,
                send_err: ErrorEstimate::UNSYNC,
                recv_err: self.recv_err,
                send_ts,
                recv_ts,
                ttl: 255,
            });
            self.report.received += 1;
        }
    }

    /// One step of a simulated session: a datagram `(seq − due, send jitter, read
    /// lateness)` relative to the packet due now, or time moving on by `dt`.
    #[derive(Clone, Debug)]
    enum Step {
        Packet(i32, i64, u64),
        Tick(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (-150i32..20, -(1i64 << 27)..(1i64 << 27), 0u64..(1 << 24))
                .prop_map(|(d, j, l)| Step::Packet(d, j, l)),
            // Mostly in-order, on time: the common path.
            3 => (0u64..(1 << 20)).prop_map(|l| Step::Packet(0, 0, l)),
            2 => (0u64..(1 << 24)).prop_map(Step::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// The compact window (a bit per packet, send times recomputed from checkpoints)
        /// writes exactly the records of the straightforward one (every send time from a
        /// fresh schedule), in the same order, with the same counts and wake-ups: over
        /// random arrival orders, duplicates, losses, early and late packets, and both
        /// slot kinds.
        #[test]
        fn compact_window_matches_reference(
            kinds in proptest::collection::vec((any::<bool>(), (1u64 << 20)..(1 << 23)), 1..4),
            num_packets in 1u32..1500,
            timeout_log in 22u32..30,
            steps in proptest::collection::vec(step(), 1..1500),
        ) {
            let slots: Vec<Slot> = kinds
                .iter()
                .map(|&(e, p)| Slot {
                    kind: if e { SlotKind::Exponential } else { SlotKind::Fixed },
                    param: Num64(p),
                })
                .collect();
            let sid = Sid([3; 16]);
            let start = Num64(1 << 40);
            let timeout = Num64(1 << timeout_log);
            let clock = Clock::new(None, 0.0);
            let mut fresh = Schedule::new(sid, start, &slots, num_packets);
            let times: Vec<Timestamp> = (0..num_packets)
                .map(|i| fresh.send_time(i).unwrap())
                .collect();
            let mut reference = Reference {
                times: times.clone(),
                timeout,
                head: 0,
                slots: VecDeque::new(),
                scan: 0,
                records: Vec::new(),
                report: ReceiverReport::default(),
                recv_err: clock.error_estimate(),
            };
            let mut sched = Schedule::new(sid, start, &slots, num_packets);
            let mut sink: Vec<PacketRecord> = Vec::new();
            let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
            let params = ReceiverParams { num_packets, timeout, expected_src: src };
            let mut fmt = PacketFormat::new(crate::types::Mode::Open, None, 0).unwrap();
            let mut buf = vec![0u8; fmt.len()];
            let mut rx = Receiver::new(&clock, &mut sched, &mut sink, params);
            let mut now = start;
            for s in &steps {
                match *s {
                    Step::Packet(d, jitter, late) => {
                        let due = times.partition_point(|&t| t <= now) as i64;
                        let seq = (due + i64::from(d)).clamp(0, i64::from(num_packets) + 3) as u32;
                        let base = times.get(seq as usize).copied().unwrap_or(now);
                        let send = Num64(base.0.wrapping_add_signed(jitter));
                        let recv = now.wrapping_sub(Num64(late));
                        fmt.prepare(seq, &mut buf).unwrap();
                        fmt.stamp(&mut buf, send, ErrorEstimate::UNSYNC).unwrap();
                        rx.handle(&fmt, &buf, src, recv, None).unwrap();
                        reference.handle(seq, send, recv);
                    }
                    Step::Tick(dt) => {
                        now = now.wrapping_add(Num64(dt));
                        rx.extend_to(now);
                        rx.expire(now, false).unwrap();
                        reference.extend(now, u32::MAX);
                        reference.expire(now, false);
                    }
                }
                prop_assert_eq!(rx.window.head, reference.head);
                prop_assert_eq!(rx.window.frontier, reference.frontier());
                prop_assert_eq!(rx.next_expiry(), reference.next_expiry());
            }
            rx.extend_to(now);
            rx.expire(now, true).unwrap();
            reference.extend(now, u32::MAX);
            reference.expire(now, true);
            let report = rx.report;
            prop_assert_eq!(report, reference.report);
            prop_assert_eq!(&sink, &reference.records);
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
        let params = ReceiverParams {
            num_packets: u32::MAX,
            timeout: Num64(u64::MAX / 4),
            expected_src: "192.0.2.1:1".parse().unwrap(),
        };
        let mut rx = Receiver::new(&clock, &mut sched, &mut sink, params);
        rx.extend_to(start.wrapping_add(Num64(u64::MAX / 2)));
        assert_eq!(rx.window.len(), MAX_WINDOW);
        rx.expire(start, false).unwrap();
        assert_eq!(rx.window.len(), MAX_WINDOW);
        // Compact: a bit per packet and a checkpoint per 64, not 16 octets each.
        assert_eq!(rx.window.chunks.len(), MAX_WINDOW / CHUNK as usize);
        assert!(rx.window.chunks.len() * std::mem::size_of::<Chunk>() <= 3 << 20);
    }

    /// The window holds what is due and no more: a packet extends it to its own seqno,
    /// not to `recv + 2 × Timeout` (which held ~3 × Timeout × rate entries).
    /// A sender that starts late skips its first packets; the first one it sends arrives
    /// after the skipped ones are overdue. Their lost records come before its received
    /// one in the file, as the reference's summary code requires.
    #[test]
    fn lost_records_of_overdue_packets_precede_a_later_arrival() {
        let clock = Clock::new(None, 0.0);
        let start = Num64(1 << 40);
        let slot = Slot {
            kind: SlotKind::Fixed,
            param: Num64(1 << 30), // 0.25 s
        };
        let timeout = Num64(1 << 32); // 1 s
        let mut sched = Schedule::new(Sid([2; 16]), start, &[slot], 10);
        let mut sink: Vec<PacketRecord> = Vec::new();
        let src: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let mut fmt = PacketFormat::new(crate::types::Mode::Open, None, 0).unwrap();
        let params = ReceiverParams {
            num_packets: 10,
            timeout,
            expected_src: src,
        };
        let mut rx = Receiver::new(&clock, &mut sched, &mut sink, params);
        // Packet q is scheduled at start + (q + 1) × 0.25 s; 0..=3 were skipped, and 4
        // is sent and received at 1.75 s: packets 0..=2 are then more than 1 s overdue.
        let at = |q: u64| start.wrapping_add(Num64((q + 1) << 30));
        let now = at(6).wrapping_add(Num64(1));
        let mut buf = vec![0u8; fmt.len()];
        fmt.build(4, now, ErrorEstimate::UNSYNC, &mut buf).unwrap();
        rx.handle(&fmt, &buf, src, now, None).unwrap();
        assert_eq!(
            (rx.report.received, rx.report.lost),
            (1, 3),
            "{:?}",
            rx.report
        );
        drop(rx);
        let order: Vec<(u32, bool)> = sink.iter().map(|r| (r.seq, r.is_lost())).collect();
        assert_eq!(order, vec![(0, true), (1, true), (2, true), (4, false)]);
    }

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
        let params = ReceiverParams {
            num_packets: 1_000_000,
            timeout: Num64(1 << 32), // 1 s: ~1000 packets per Timeout
            expected_src: src,
        };
        let mut rx = Receiver::new(&clock, &mut sched, &mut sink, params);
        // Packet q is scheduled at start + (q + 1) × interval.
        let at = |q: u64| start.wrapping_add(Num64((q + 1) << 22));
        let mut buf = vec![0u8; fmt.len()];
        fmt.prepare(5, &mut buf).unwrap();
        fmt.stamp(&mut buf, at(5), ErrorEstimate::UNSYNC).unwrap();
        rx.handle(&fmt, &buf, src, at(5), None).unwrap();
        assert_eq!(rx.report.received, 1, "{:?}", rx.report);
        assert_eq!(rx.window.len(), 6);
        rx.extend_to(at(10));
        assert_eq!(rx.window.len(), 11);
        // The next wake-up is for the first packet that can still be lost (seq 0).
        assert_eq!(rx.next_expiry(), Some(at(0).wrapping_add(Num64(1 << 32))));
    }

    /// The interval is whole milliseconds, at most a second, and short enough that the
    /// socket buffer stays at most a quarter full.
    #[test]
    fn read_interval_bounds() {
        // Kernel default 208 KiB, reported doubled: 425,984 / 2048 / 10,000 / 4 = 5.2 ms.
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(read_interval(10_000.0, Some(425_984), 14), ms(5));
        assert_eq!(read_interval(1_000.0, Some(425_984), 14), ms(52));
        assert_eq!(read_interval(100.0, Some(425_984), 14), ms(520));
        assert_eq!(read_interval(10.0, Some(425_984), 14), ms(1000));
        assert_eq!(read_interval(100_000.0, Some(8 << 20), 14), ms(10));
        // Too fast for this buffer (0.52 ms), unknown buffer, back-to-back or no rate at
        // all: the socket is waited on.
        assert_eq!(read_interval(100_000.0, Some(425_984), 14), None);
        assert_eq!(read_interval(10_000.0, None, 14), None);
        assert_eq!(read_interval(f64::INFINITY, Some(8 << 20), 14), None);
        assert_eq!(read_interval(0.0, Some(8 << 20), 14), None);
        assert_eq!(read_interval(f64::NAN, Some(8 << 20), 14), None);
        // Big datagrams are charged more than 2 KiB each: 2 × (4000 + 256) octets.
        assert_eq!(read_interval(10_000.0, Some(425_984), 4000), ms(1));
        assert_eq!(read_interval(10_000.0, Some(425_984), 16_000), None);
    }

    proptest! {
        #[test]
        fn reading_late_never_fills_a_quarter_of_the_buffer(
            pps in 0.0f64..1e7,
            rcvbuf in 0usize..(64 << 20),
            len in 0usize..65_536,
        ) {
            if let Some(w) = read_interval(pps, Some(rcvbuf), len) {
                let per = (len + 256).max(1024) * 2;
                prop_assert!(pps * w.as_secs_f64() * per as f64 <= rcvbuf as f64 / 4.0);
                prop_assert!(w <= READ_INTERVAL_MAX && w >= READ_INTERVAL_MIN);
            }
        }
    }

    /// A connected pair of loopback test sockets: (sender's, receiver's, sender's address).
    fn loopback_pair(
        pps: f64,
    ) -> (
        crate::engine::UdpTestSocket,
        crate::engine::UdpTestSocket,
        SocketAddr,
    ) {
        use crate::engine::{SocketOptions, UdpTestSocket};
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (sa, ra) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let opts = SocketOptions {
            dscp: None,
            packet_len: 14,
            packets_per_second: pps,
        };
        let tx = UdpTestSocket::new(a, ra, opts).unwrap();
        let rx = UdpTestSocket::new(b, sa, opts).unwrap();
        (tx, rx, sa)
    }

    /// Runs an open-mode receiver of `n` packets of schedule (`sid`, `start`, `slot`) from
    /// `src` to its end: its report, its records and the clock's time when it returned.
    #[allow(clippy::too_many_arguments)]
    fn receive_open(
        rsock: &mut dyn crate::engine::TestSocket,
        src: SocketAddr,
        sid: Sid,
        start: Timestamp,
        slot: Slot,
        n: u32,
        timeout: Num64,
        ctl: &mut dyn SessionControl,
    ) -> (ReceiverReport, Vec<PacketRecord>, Timestamp) {
        let clock = Clock::new(None, 0.0);
        let fmt = PacketFormat::new(crate::types::Mode::Open, None, 0).unwrap();
        let mut sched = Schedule::new(sid, start, &[slot], n);
        let mut records = Vec::new();
        let params = ReceiverParams {
            num_packets: n,
            timeout,
            expected_src: src,
        };
        let rep = run_receiver(rsock, &clock, &fmt, &mut sched, params, &mut records, ctl).unwrap();
        (rep, records, clock.now().0)
    }

    /// A real session at 10,000 packets/s over loopback, with a control descriptor (the
    /// tester's and owping's way): the receiver reads on an interval, in batches (recvmmsg),
    /// and still records every packet once with its kernel timestamp and TTL. With
    /// `sent < 3000`, that many are sent at once and the session is stopped right after:
    /// what is queued at the stop is read, not declared lost.
    fn udp_session(sent: u32) -> (ReceiverReport, Vec<PacketRecord>, Option<Duration>) {
        use crate::engine::{Never, SenderParams, StopFlag, TestSocket, run_sender};
        let n = 3000;
        let (mut tx, mut rsock, sa) = loopback_pair(10_000.0);
        let slot = Slot {
            kind: SlotKind::Fixed,
            param: Num64(429_497), // 100 µs
        };
        let clock = Clock::new(None, 0.0);
        let start = clock.now().0.wrapping_add(Num64(1 << 26)); // in ~16 ms
        let timeout = Num64(1 << 31); // 0.5 s
        let sid = Sid([9; 16]);
        let window = read_interval(10_000.0, rsock.recv_buffer_size(), 14);
        let stop = StopFlag::new();
        std::thread::scope(|sc| {
            let mut ctl = stop.clone();
            let r = sc.spawn(move || {
                receive_open(&mut rsock, sa, sid, start, slot, n, timeout, &mut ctl)
            });
            let mut fmt = PacketFormat::new(crate::types::Mode::Open, None, 0).unwrap();
            let mut sched = Schedule::new(sid, start, &[slot], sent);
            if sent == n {
                let params = SenderParams {
                    num_packets: sent,
                    timeout,
                    end_delay: Duration::ZERO,
                };
                let srep =
                    run_sender(&mut tx, &clock, &mut fmt, &mut sched, params, &mut Never).unwrap();
                assert_eq!(srep.sent, u64::from(sent));
            } else {
                // At the start time, `sent` packets at once (stamped with their scheduled
                // times, all within Timeout of now), then the stop: most of them are
                // still queued when it arrives. 400 of them (more than one drain's 256)
                // fit the kernel's default 208 KiB buffer (~800 octets each).
                let wait = start.saturating_sub(clock.now().0);
                std::thread::sleep(num64_to_duration(wait));
                let mut buf = vec![0u8; fmt.len()];
                for seq in 0..sent {
                    let t = sched.send_time(seq).unwrap();
                    fmt.prepare(seq, &mut buf).unwrap();
                    fmt.stamp(&mut buf, t, ErrorEstimate::UNSYNC).unwrap();
                    tx.send(&buf).unwrap();
                }
                stop.stop();
            }
            let (rep, records, _) = r.join().unwrap();
            (rep, records, window)
        })
    }

    /// A last packet sent late (within Timeout of its schedule) arrives in time; the
    /// receiver must not end before its send time is a Timeout old, or the Stop-Sessions
    /// that follows would drop it (protocol.md §7.8: records sent after stoptime − Timeout
    /// are discarded). Times compared are the clock's, not durations.
    #[test]
    fn a_late_last_packet_holds_the_end_until_it_is_a_timeout_old() {
        use crate::engine::{Never, TestSocket};
        let n = 3;
        let (mut tx, mut rsock, sa) = loopback_pair(100.0);
        let slot = Slot {
            kind: SlotKind::Fixed,
            param: Num64(42_949_673), // 10 ms
        };
        let clock = Clock::new(None, 0.0);
        let start = clock.now().0.wrapping_add(Num64(1 << 27)); // in ~31 ms
        let timeout = Num64(1 << 30); // 0.25 s
        let late = Num64(858_993_459); // 0.2 s: inside Timeout
        let sid = Sid([7; 16]);
        std::thread::scope(|sc| {
            let r = sc.spawn(move || {
                receive_open(&mut rsock, sa, sid, start, slot, n, timeout, &mut Never)
            });
            let mut fmt = PacketFormat::new(crate::types::Mode::Open, None, 0).unwrap();
            let mut sched = Schedule::new(sid, start, &[slot], n);
            let mut buf = vec![0u8; fmt.len()];
            let mut last_send = Num64::ZERO;
            for seq in 0..n {
                let mut due = sched.send_time(seq).unwrap();
                if seq == n - 1 {
                    due = due.wrapping_add(late);
                }
                std::thread::sleep(num64_to_duration(due.saturating_sub(clock.now().0)));
                let now = clock.now().0;
                fmt.prepare(seq, &mut buf).unwrap();
                fmt.stamp(&mut buf, now, ErrorEstimate::UNSYNC).unwrap();
                tx.send(&buf).unwrap();
                last_send = now;
            }
            let (rep, records, ended) = r.join().unwrap();
            assert_eq!((rep.received, rep.lost), (3, 0), "{rep:?}");
            assert!(records.iter().any(|r| r.seq == n - 1 && !r.is_lost()));
            assert!(
                ended >= last_send.wrapping_add(timeout),
                "ended {:?} before the late packet's send time + Timeout {:?}",
                ended,
                last_send.wrapping_add(timeout)
            );
        });
    }

    #[test]
    fn udp_session_read_on_an_interval_records_every_packet() {
        let (rep, records, window) = udp_session(3000);
        // The default 208 KiB buffer (reported 416 KiB) gives 5 ms at 10,000 packets/s.
        assert!(window.is_some(), "the session did not read on an interval");
        assert_eq!(
            (rep.received, rep.lost, rep.duplicates),
            (3000, 0, 0),
            "{rep:?}"
        );
        let mut seen = vec![false; 3000];
        for r in &records {
            assert!(!std::mem::replace(&mut seen[r.seq as usize], true));
            assert_eq!(r.ttl, 255);
            // Kernel receive times: after the send time, and not the (later) read time.
            assert!(r.recv_ts >= r.send_ts && abs_gap(r.recv_ts, r.send_ts) < 1 << 31);
        }
    }

    #[test]
    fn stop_reads_what_was_left_queued() {
        let (rep, records, _) = udp_session(400);
        assert!(rep.stopped);
        assert_eq!(rep.received, 400, "{rep:?}");
        assert_eq!(rep.drops, DropCounts::default());
        assert_eq!(records.iter().filter(|r| !r.is_lost()).count(), 400);
    }

    /// The read interval starts at a sixteenth and doubles after each quiet read, not
    /// before the session starts, and is lost for good to one read that finds too much.
    #[test]
    fn the_read_interval_grows_and_is_lost_to_a_flood() {
        let sec = Num64(1 << 32);
        let t0 = Num64(1000 << 32);
        let mut p = Pace::new(Some(sec), 100.0, Some(t0));
        let sixteenth = Num64(sec.0 / 16);
        let before = t0.wrapping_sub(sec);
        p.read(0);
        assert_eq!(
            p.lazy(before, false),
            None,
            "lazy before the session started"
        );
        assert_eq!(p.lazy(t0, false), Some(sixteenth));
        let mut w = sixteenth;
        for _ in 0..4 {
            p.read(p.budget(w));
            w = Num64(w.0 * 2);
            assert_eq!(p.lazy(t0, true), Some(w));
        }
        assert_eq!(w, sec);
        p.read(10);
        assert_eq!(p.lazy(t0, true), Some(sec), "never past the full interval");
        p.read(p.budget(sec) + 1);
        assert_eq!(p.lazy(t0, true), None);
        p.read(0);
        assert_eq!(
            p.lazy(t0, false),
            None,
            "a flood ends reading on an interval"
        );
        // No interval at all: never lazy, whatever is read.
        let mut none = Pace::new(None, 100.0, Some(t0));
        none.read(5);
        assert_eq!(none.lazy(t0, false), None);
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
