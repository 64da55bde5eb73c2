//! One test session on loopback, run by the library's own engines (protocol.md §3.3, §3.4):
//! a sender thread and a receiver thread, each with its own UDP socket, as one tester
//! process and owping's receiving thread would run them.
//!
//! From the receiver's records it measures the one-way delay (kernel receive time minus
//! the sender's timestamp, taken just before `sendto`, so this is the cost of
//! timestamping plus the loopback path) and the send accuracy (the sender's timestamp
//! minus the packet's scheduled time: the records carry the actual send time). Each
//! thread's CPU time comes from `CLOCK_THREAD_CPUTIME_ID`.

use crate::records;
use crate::summary::{Summary, diff_ns};
use owamp::crypto::random_bytes;
use owamp::engine::{
    ReceiverParams, ReceiverReport, SenderParams, SenderReport, SocketOptions, StopFlag,
    UdpTestSocket, run_receiver, run_sender,
};
use owamp::packet::{PacketError, PacketFormat, TestKeys};
use owamp::schedule::{Schedule, packets_per_second};
use owamp::time::{Clock, duration_to_num64};
use owamp::types::{Mode, PacketRecord, Sid, Slot, SlotKind};
use serde_json::{Value, json};
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("packet format: {0}")]
    Packet(#[from] PacketError),
    #[error("random keys: {0}")]
    Random(String),
    #[error("{role} thread: {source}")]
    Engine {
        role: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{role} thread panicked")]
    Panicked { role: &'static str },
    #[error("reading the thread CPU clock: {0}")]
    CpuClock(nix::errno::Errno),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SessionError {
    move |source| SessionError::Io { what, source }
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct SessionSpec {
    pub mode: Mode,
    pub count: u32,
    /// Fixed gap between scheduled send times; zero is a back-to-back burst.
    pub interval: Duration,
    /// Request-Session Timeout: how long the receiver waits for a packet.
    pub timeout: Duration,
    /// Padding octets (owping's default is 0 beyond the base packet).
    pub padding: u32,
    /// Simulates the receiving thread being descheduled once, half-way through the
    /// session, for this long (zero: never), to see what the receiver makes of the
    /// datagrams that queued up meanwhile.
    pub stall: Duration,
}

/// A receive socket that, once, sleeps `stall` before a receive after `after` datagrams:
/// the receiver thread as a loaded machine would run it.
struct StallSocket {
    inner: UdpTestSocket,
    after: u64,
    seen: u64,
    stall: Duration,
}

impl owamp::engine::TestSocket for StallSocket {
    fn send(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.send(buf)
    }

    fn recv(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::io::Result<Option<owamp::engine::Received>> {
        if self.seen == self.after && !self.stall.is_zero() {
            thread::sleep(self.stall);
            self.stall = Duration::ZERO;
        }
        let r = self.inner.recv(buf, timeout)?;
        if r.is_some() {
            self.seen += 1;
        }
        Ok(r)
    }

    /// The receiver waits on the real socket, as the tester does.
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.poll_fd()
    }

    /// Batches (recvmmsg) as the tester reads them, once the stall has happened (or
    /// when there is none); until then one datagram at a time, to stall at the right one.
    fn recv_queued(
        &mut self,
        bufs: &mut [Vec<u8>],
        out: &mut Vec<owamp::engine::Received>,
    ) -> std::io::Result<usize> {
        if self.stall.is_zero() {
            let n = self.inner.recv_queued(bufs, out)?;
            self.seen += n as u64;
            return Ok(n);
        }
        out.clear();
        for b in bufs.iter_mut() {
            match self.recv(b, Duration::ZERO)? {
                Some(m) => out.push(m),
                None => break,
            }
        }
        Ok(out.len())
    }

    /// The real socket's buffer, so the receiver coalesces as the tester does.
    fn recv_buffer_size(&self) -> Option<usize> {
        self.inner.recv_buffer_size()
    }
}

/// What came out.
#[derive(Clone, Debug)]
pub struct SessionResult {
    pub spec: SessionSpec,
    pub sender: SenderReport,
    pub receiver: ReceiverReport,
    pub delay: Summary,
    pub send_error: Summary,
    pub sender_cpu: Duration,
    pub receiver_cpu: Duration,
    /// First scheduled send time to last packet received (or scheduled), for rates.
    pub wall: Duration,
    pub achieved_pps: f64,
}

impl SessionResult {
    /// Packets scheduled but not received (lost records, skips included).
    pub fn lost(&self) -> u64 {
        u64::from(self.spec.count).saturating_sub(self.receiver.received - self.receiver.duplicates)
    }

    pub fn to_json(&self) -> Value {
        let per = |cpu: Duration, n: u64| {
            if n == 0 {
                0.0
            } else {
                cpu.as_nanos() as f64 / 1000.0 / n as f64
            }
        };
        let received = self.receiver.received - self.receiver.duplicates;
        json!({
            "mode": mode_name(self.spec.mode),
            "count": self.spec.count,
            "interval_us": self.spec.interval.as_nanos() as f64 / 1000.0,
            "sent": self.sender.sent,
            "skipped": self.sender.skips.iter().map(|r| u64::from(r.last - r.first) + 1).sum::<u64>(),
            "send_errors": self.sender.send_errors,
            "received": received,
            "duplicates": self.receiver.duplicates,
            "lost": self.lost(),
            "drops": format!("{:?}", self.receiver.drops),
            "delay": self.delay.to_json(),
            "send_error": self.send_error.to_json(),
            "sender_cpu_us_per_packet": per(self.sender_cpu, self.sender.sent),
            "receiver_cpu_us_per_packet": per(self.receiver_cpu, received),
            "wall_s": self.wall.as_secs_f64(),
            "achieved_pps": self.achieved_pps,
        })
    }
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Open => "open",
        Mode::Authenticated => "authenticated",
        Mode::Encrypted => "encrypted",
    }
}

fn thread_cpu() -> Result<Duration, SessionError> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_err(SessionError::CpuClock)?;
    Ok(Duration::from(ts))
}

/// Bound loopback socket pair: (sender's, receiver's).
fn socket_pair() -> Result<(UdpSocket, UdpSocket), SessionError> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(io("binding the sender socket"))?;
    let r = UdpSocket::bind("127.0.0.1:0").map_err(io("binding the receiver socket"))?;
    Ok((s, r))
}

/// Runs one session to its end and measures it.
pub fn run(spec: SessionSpec) -> Result<SessionResult, SessionError> {
    let sid = Sid(random_bytes::<16>("SID").map_err(|e| SessionError::Random(e.to_string()))?);
    let keys = if spec.mode.is_secure() {
        let aes = random_bytes::<16>("AES key").map_err(|e| SessionError::Random(e.to_string()))?;
        let hmac =
            random_bytes::<32>("HMAC key").map_err(|e| SessionError::Random(e.to_string()))?;
        Some(TestKeys::derive(sid, &aes, &hmac))
    } else {
        None
    };
    let mut tx_fmt = PacketFormat::new(spec.mode, keys.as_ref(), spec.padding)?;
    let rx_fmt = PacketFormat::new(spec.mode, keys.as_ref(), spec.padding)?;
    let slots = [Slot {
        kind: SlotKind::Fixed,
        param: duration_to_num64(spec.interval),
    }];
    let opts = SocketOptions {
        dscp: None,
        packet_len: tx_fmt.len(),
        packets_per_second: packets_per_second(&slots),
    };
    let (s, r) = socket_pair()?;
    let s_addr: SocketAddr = s.local_addr().map_err(io("sender address"))?;
    let r_addr: SocketAddr = r.local_addr().map_err(io("receiver address"))?;
    let mut tx_sock = UdpTestSocket::new(s, r_addr, opts).map_err(io("sender socket options"))?;
    let mut rx_sock = StallSocket {
        inner: UdpTestSocket::new(r, s_addr, opts).map_err(io("receiver socket options"))?,
        after: u64::from(spec.count / 2),
        seen: 0,
        stall: spec.stall,
    };

    let clock = Clock::new(None, 0.0);
    // Start far enough ahead that both threads are waiting when packet 0 is due.
    let start = clock
        .now()
        .0
        .wrapping_add(duration_to_num64(Duration::from_millis(200)));
    let schedule = Schedule::new(sid, start, &slots, spec.count);
    let timeout = duration_to_num64(spec.timeout);

    let rx_clock = clock.clone();
    let mut rx_sched = schedule.clone();
    let rx_params = ReceiverParams {
        num_packets: spec.count,
        timeout,
        expected_src: s_addr,
    };
    let receiver = thread::Builder::new()
        .name("receiver".into())
        .spawn(move || -> Result<_, SessionError> {
            let mut records: Vec<PacketRecord> = Vec::with_capacity(spec.count as usize);
            let cpu0 = thread_cpu()?;
            let rep = run_receiver(
                &mut rx_sock,
                &rx_clock,
                &rx_fmt,
                &mut rx_sched,
                rx_params,
                &mut records,
                &mut StopFlag::new(),
            )
            .map_err(|source| SessionError::Engine {
                role: "receiver",
                source,
            })?;
            let cpu = thread_cpu()?.saturating_sub(cpu0);
            Ok((rep, records, cpu))
        })
        .map_err(io("spawning the receiver thread"))?;

    let tx_clock = clock.clone();
    let mut tx_sched = schedule.clone();
    let tx_params = SenderParams {
        num_packets: spec.count,
        timeout,
        end_delay: Duration::ZERO,
    };
    let sender = thread::Builder::new()
        .name("sender".into())
        .spawn(move || -> Result<_, SessionError> {
            let cpu0 = thread_cpu()?;
            let rep = run_sender(
                &mut tx_sock,
                &tx_clock,
                &mut tx_fmt,
                &mut tx_sched,
                tx_params,
                &mut StopFlag::new(),
            )
            .map_err(|source| SessionError::Engine {
                role: "sender",
                source,
            })?;
            let cpu = thread_cpu()?.saturating_sub(cpu0);
            Ok((rep, cpu))
        })
        .map_err(io("spawning the sender thread"))?;
    let (sender_rep, sender_cpu) = sender
        .join()
        .map_err(|_| SessionError::Panicked { role: "sender" })??;
    let (receiver_rep, records, receiver_cpu) = receiver
        .join()
        .map_err(|_| SessionError::Panicked { role: "receiver" })??;

    let mut sched = schedule;
    let f = records::analyse(&records, &mut sched);
    let last = f.last_recv.unwrap_or(start);
    let wall_ns = diff_ns(last, start).max(0) as u64;
    Ok(SessionResult {
        spec,
        sender: sender_rep,
        receiver: receiver_rep,
        delay: f.delay,
        send_error: f.send_error,
        sender_cpu,
        receiver_cpu,
        wall: Duration::from_nanos(wall_ns),
        achieved_pps: f.achieved_pps(),
    })
}
