//! The test-session engines (spec §3.3, §3.4): the sender and receiver loops that both
//! `owampd-tester` and `owping` run, over the small [`TestSocket`] trait.
//!
//! The loops are synchronous and single-threaded: a session is one process (the tester)
//! or one thread (owping). They sleep with absolute `CLOCK_REALTIME` deadlines, wake at
//! least every 10 ms to ask their [`SessionControl`] whether to stop, and never busy-wait.
//!
//! System calls made while a session runs (for the tester's seccomp policy):
//! `clock_gettime` (vDSO), `clock_nanosleep`, `nanosleep` (fallback only),
//! `prctl(PR_SET_TIMERSLACK)`, `sendto`, `recvmsg`, `poll`/`ppoll`. Building a
//! [`crate::packet::PacketFormat`] calls `getrandom` once. [`UdpTestSocket::new`] also
//! calls `getsockname`, `ioctl(FIONBIO)` and `setsockopt` (SOL_SOCKET: SO_SNDBUF,
//! SO_RCVBUF, SO_TIMESTAMPNS; IPPROTO_IP: IP_TTL, IP_RECVTTL, IP_TOS; IPPROTO_IPV6:
//! IPV6_UNICAST_HOPS, IPV6_RECVHOPLIMIT, IPV6_TCLASS); call it before entering a
//! sandbox that forbids those.

mod receiver;
mod sender;
mod udp;
mod wait;

pub use receiver::{DropCounts, ReceiverParams, ReceiverReport, run_receiver};
pub use sender::{SenderParams, SenderReport, run_sender};
pub use udp::{SocketOptions, UdpTestSocket, buffer_size_for};

use crate::types::{PacketRecord, Timestamp};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One received datagram's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Octets received (at most the buffer's length: longer datagrams are truncated).
    pub len: usize,
    pub src: SocketAddr,
    /// The kernel's receive time (`SO_TIMESTAMPNS`) as raw `CLOCK_REALTIME`, *without* the
    /// clock's debugging offset: the receiver applies it with [`crate::time::Clock::from_realtime`].
    pub kernel_ts: Option<Timestamp>,
    /// TTL / hop limit of the datagram, when the kernel told us.
    pub ttl: Option<u8>,
}

/// What the engines need from a socket.
pub trait TestSocket {
    /// Sends one test packet to the session's peer (connected socket or a fixed peer).
    fn send(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Waits up to `timeout` for one datagram; `Ok(None)` when none came in time.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>>;
}

/// Where the receiver's records go (an `.owp` writer, owping's in-memory list, …).
pub trait RecordSink {
    fn record(&mut self, r: &PacketRecord) -> io::Result<()>;
    /// Makes the records so far durable/visible; called at least every 100 ms and at the end.
    fn flush(&mut self) -> io::Result<()>;
}

impl RecordSink for Vec<PacketRecord> {
    fn record(&mut self, r: &PacketRecord) -> io::Result<()> {
        self.push(*r);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a running session learns that it must stop (Stop-Sessions, a signal, IPC).
///
/// Called at every wakeup of a loop and at least every 10 ms while it waits, so an
/// implementation must be cheap and must not block (a non-blocking poll of an IPC
/// socket is fine).
pub trait SessionControl {
    /// True once the session must stop; must stay true afterwards.
    fn poll_stop(&mut self) -> bool;
}

/// Never stops: the session runs to its natural end.
#[derive(Clone, Copy, Debug, Default)]
pub struct Never;

impl SessionControl for Never {
    fn poll_stop(&mut self) -> bool {
        false
    }
}

/// Stops when a shared flag is set (from another thread or a signal handler's flag).
#[derive(Clone, Debug, Default)]
pub struct StopFlag(pub Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Asks the session to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl SessionControl for StopFlag {
    fn poll_stop(&mut self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// `|a - b|` in 2^-32 s units, for the Timeout comparisons of spec §3.3/§3.4.
fn abs_gap(a: Timestamp, b: Timestamp) -> u64 {
    a.0.abs_diff(b.0)
}
