//! The test-session engines (protocol.md §3.3, §3.4): the sender and receiver loops that both
//! `owampd-tester` and `owping` run, over the small [`TestSocket`] trait, and their
//! common set-up ([`EndpointSetup`]: format, schedule, clock, socket).
//!
//! The loops are synchronous and single-threaded: a session is one process (the tester)
//! or one thread (owping). Neither ever busy-waits. The sender sleeps until each send
//! time and stamps the packet when it wakes (wait.rs). The receiver does not wait on its
//! socket: it sleeps until a packet may be declared lost or its read interval is over
//! (up to a second, bounded by the socket buffer), then reads everything queued with
//! `recvmmsg`; receive times are the kernel's, so reading later changes no result. A
//! [`SessionControl`] with a descriptor ([`SessionControl::wait_fd`]) is waited on in the
//! same call, so a stop ends either loop at once; one without is asked at every wake-up
//! and at least every 200 ms.
//!
//! System calls made while a session runs (for the tester's seccomp policy):
//! `clock_gettime` (vDSO), `clock_nanosleep` (without a control descriptor), `nanosleep`
//! (fallback only), `sendto` (`send` on a connected socket is `sendto` too), `recvmsg`,
//! `recvmmsg` (receiver's batches), `poll` (receiver: the control's descriptor, and the
//! socket when it must read each datagram as it comes), `ppoll` (sender: the control's
//! descriptor). [`StopFlag::new`] (owping, not the tester) makes a pipe (`pipe2`) and
//! `stop` writes to it. Building a [`crate::packet::PacketFormat`] calls `getrandom`
//! once. [`UdpTestSocket::new`] also calls `connect` (to the peer), `getsockname`,
//! `ioctl(FIONBIO)`, `getsockopt(SO_RCVBUF)` and `setsockopt` (SOL_SOCKET: SO_SNDBUF,
//! SO_RCVBUF, SO_TIMESTAMPNS; IPPROTO_IP: IP_TTL, IP_RECVTTL, IP_TOS; IPPROTO_IPV6:
//! IPV6_UNICAST_HOPS, IPV6_RECVHOPLIMIT, IPV6_TCLASS); call it
//! before entering a sandbox that forbids those.

mod endpoint;
#[cfg(test)]
mod hostile_tests;
mod receiver;
mod sender;
mod udp;
mod wait;
pub use endpoint::{Endpoint, EndpointError, EndpointSetup};
pub use wait::timer_slack;

pub use receiver::{
    DropCounts, ReceiverParams, ReceiverReport, max_duplicate_records, run_receiver,
};
pub use sender::{SenderParams, SenderReport, run_sender};
pub use udp::{SocketOptions, UdpTestSocket, buffer_size_for};

use crate::types::{PacketRecord, Timestamp};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
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
    /// Waits up to `timeout` for one datagram; `Ok(None)` when none came in time. A zero
    /// `timeout` only takes what is already queued.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>>;
    /// A descriptor that is readable whenever [`TestSocket::recv`] has a datagram, so the
    /// receiver can wait on it together with the control's. `None` (the default): the
    /// receiver waits in `recv` itself, asking the control at least every 200 ms.
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Takes up to `bufs.len()` datagrams that are already queued, without waiting: the
    /// i-th into `bufs[i]`, its metadata into `out[i]` (`out` is cleared first). Returns
    /// how many (fewer than `bufs.len()`: the queue is now empty). The default calls
    /// [`TestSocket::recv`] once per datagram; [`UdpTestSocket`] uses one `recvmmsg`.
    fn recv_queued(&mut self, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> io::Result<usize> {
        out.clear();
        for b in bufs.iter_mut() {
            match self.recv(b, Duration::ZERO) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                // What was read is kept; the error shows again at the next call.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out.len())
    }
    /// The receive buffer the kernel granted (`getsockopt(SO_RCVBUF)`), in its own
    /// accounting (datagram truesize), which bounds how long the receiver may leave
    /// datagrams queued. `None` (the default): unknown, so the receiver never does.
    fn recv_buffer_size(&self) -> Option<usize> {
        None
    }
}

/// Where the receiver's records go (an `.owp` writer, owping's in-memory list, …).
pub trait RecordSink {
    fn record(&mut self, r: &PacketRecord) -> io::Result<()>;
    /// Makes the records so far durable/visible; called within 100 ms of a new record
    /// and at the end (not while nothing new was recorded: an idle session stays asleep).
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
/// With a [`SessionControl::wait_fd`], `poll_stop` is called when the loop starts and
/// whenever that descriptor becomes readable (and at most every 10 ms while it stays
/// readable without meaning "stop"). Without one, it is called at every wake-up of a loop
/// and at least every 200 ms. Either way it must be cheap and must not block (a
/// non-blocking read of an IPC socket is fine).
pub trait SessionControl {
    /// True once the session must stop; must stay true afterwards.
    fn poll_stop(&mut self) -> bool;
    /// A descriptor that becomes readable when `poll_stop` may have news (a message on an
    /// IPC socket, a hang-up, a byte in a pipe). While it is not readable, `poll_stop`'s
    /// answer must not change. `None` (the default): the slice-based fallback.
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// Never stops: the session runs to its natural end.
#[derive(Clone, Copy, Debug, Default)]
pub struct Never;

impl SessionControl for Never {
    fn poll_stop(&mut self) -> bool {
        false
    }
}

/// Stops when a shared flag is set from another thread. Clones share the flag.
///
/// The flag comes with a pipe whose read end is the [`SessionControl::wait_fd`]: `stop`
/// writes one byte, so a waiting session wakes at once instead of polling the flag.
#[derive(Clone, Debug)]
pub struct StopFlag(Arc<StopShared>);

#[derive(Debug)]
struct StopShared {
    flag: AtomicBool,
    /// `None` if no pipe could be made (out of descriptors): the sessions then poll.
    pipe: Option<(io::PipeReader, io::PipeWriter)>,
}

impl Default for StopFlag {
    fn default() -> StopFlag {
        StopFlag::new()
    }
}

impl StopFlag {
    pub fn new() -> StopFlag {
        StopFlag(Arc::new(StopShared {
            flag: AtomicBool::new(false),
            pipe: io::pipe().ok(),
        }))
    }

    /// Asks the session to stop. Only the first call writes to the pipe (one byte never
    /// fills it, so this never blocks); nobody reads it, so it stays readable.
    pub fn stop(&self) {
        if !self.0.flag.swap(true, Ordering::SeqCst)
            && let Some((_, w)) = &self.0.pipe
        {
            // If the write fails the flag is still set; a waiting session then
            // notices at its next packet or its end.
            let _ = (&*w).write(&[1]);
        }
    }

    /// True once `stop` was called.
    pub fn is_stopped(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }
}

impl SessionControl for StopFlag {
    fn poll_stop(&mut self) -> bool {
        self.is_stopped()
    }
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.pipe.as_ref().map(|(r, _)| r.as_fd())
    }
}

/// `|a - b|` in 2^-32 s units, for the Timeout comparisons of protocol.md §3.3/§3.4.
fn abs_gap(a: Timestamp, b: Timestamp) -> u64 {
    a.0.abs_diff(b.0)
}
