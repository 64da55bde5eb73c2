//! A test socket for powstream's low-rate receive sessions that reads datagrams in
//! batches instead of waking for each one.
//!
//! The receive time of a datagram is the kernel's (`SO_TIMESTAMPNS`), taken when it
//! arrives, so reading it later changes nothing in the record; and the engine's
//! receiver reads everything queued before it declares anything lost. What a wake-up
//! per datagram buys is only promptness, which powstream does not need in the middle
//! of a session: its summaries are due a loss timeout after their last packet. A
//! continuous stream of 10 packets/s spends most of its CPU on those wake-ups (each a
//! context switch), so this adapter lets the receiver sleep in `recv` for a whole
//! [`PERIOD`] (or until the session starts, or until it is stopped) without reading,
//! and the next turn of the engine's loop takes the batch with one `recvmmsg`.
//!
//! It departs from [`TestSocket::recv`]'s contract on purpose (it may sleep past the
//! engine's timeout, and returns `None` while datagrams wait), within bounds that keep
//! every record exact: lost records are written at most [`PERIOD`] late; from one
//! period before the session's last packet on, and whenever the kernel gives no receive
//! timestamp, it is the plain socket again, so the session ends as promptly as
//! owping's. A stop request wakes it at once.

use owamp::Timestamp;
use owamp::engine::{Received, SessionControl, StopFlag, TestSocket, UdpTestSocket};
use owamp::time::{Clock, num64_to_duration};
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// How long the receiver may sleep between batches.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Above this rate a period's datagrams would take too much of the receive buffer (at
/// about 2 KiB of kernel accounting each), and the engine's own coalescing serves.
pub const MAX_RATE: f64 = 50.0;

pub struct BatchingSocket {
    inner: UdpTestSocket,
    clock: Clock,
    stop: StopFlag,
    /// Before this, nothing can arrive: sleep until then.
    start: Timestamp,
    /// From this on, the plain socket (the session's end is not delayed).
    eager_from: Timestamp,
    /// The kernel gave a datagram without a receive timestamp: batching would
    /// falsify receive times, so it stops.
    eager: bool,
}

impl BatchingSocket {
    /// For a session starting at `start` whose last packet is scheduled at `end`.
    pub fn new(
        inner: UdpTestSocket,
        clock: Clock,
        stop: StopFlag,
        start: Timestamp,
        end: Timestamp,
    ) -> BatchingSocket {
        let period = owamp::time::duration_to_num64(PERIOD);
        BatchingSocket {
            inner,
            clock,
            stop,
            start: start.saturating_sub(period),
            eager_from: end.saturating_sub(period),
            eager: false,
        }
    }

    /// Sleeps `d`, or less if a stop is requested.
    fn sleep(&self, d: Duration) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        if self.stop.is_stopped() {
            return;
        }
        let ms = d.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        match self.stop.wait_fd() {
            Some(fd) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                let _ = poll(&mut fds, timeout);
            }
            // No pipe (out of descriptors): sleep in the engine's fallback slices.
            None => std::thread::sleep(d.min(Duration::from_millis(200))),
        }
    }
}

impl TestSocket for BatchingSocket {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.send(buf)
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
        let now = self.clock.now().0;
        if self.eager || now >= self.eager_from {
            return self.inner.recv(buf, timeout);
        }
        let until_start = if now < self.start {
            num64_to_duration(self.start.saturating_sub(now))
        } else {
            Duration::ZERO
        };
        self.sleep(timeout.max(PERIOD).max(until_start));
        Ok(None)
    }

    // No descriptor: the engine then waits in `recv`, which is the point.
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn recv_queued(&mut self, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> io::Result<usize> {
        let n = self.inner.recv_queued(bufs, out)?;
        if out.iter().any(|r| r.kernel_ts.is_none()) {
            self.eager = true;
        }
        Ok(n)
    }

    fn recv_buffer_size(&self) -> Option<usize> {
        self.inner.recv_buffer_size()
    }
}

/// Whether a session at `pps` packets per second is received in batches.
pub fn worth_batching(pps: f64) -> bool {
    pps.is_finite() && pps > 0.0 && pps <= MAX_RATE
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::Num64;
    use owamp::engine::SocketOptions;
    use std::net::UdpSocket;

    fn pair() -> (UdpSocket, UdpTestSocket) {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = tx.local_addr().unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let opts = SocketOptions {
            dscp: None,
            packet_len: 14,
            packets_per_second: 10.0,
        };
        (tx, UdpTestSocket::new(rx, peer, opts).unwrap())
    }

    /// In the middle of a session `recv` leaves the datagram queued; the engine's next
    /// drain takes it, with the kernel's receive timestamp. A stop ends the sleep.
    #[test]
    fn datagrams_wait_for_the_batch_and_keep_their_kernel_time() {
        let (tx, inner) = pair();
        let clock = Clock::new(None, 0.0);
        let now = clock.now().0;
        let hour = Num64(3600 << 32);
        let stop = StopFlag::new();
        let mut s = BatchingSocket::new(inner, clock, stop.clone(), now, now.wrapping_add(hour));
        tx.send(&[0u8; 14]).unwrap();
        // Stopped: the sleep (otherwise a second at least) returns at once, reading nothing.
        stop.stop();
        let mut buf = vec![0u8; 64];
        assert_eq!(s.recv(&mut buf, Duration::from_secs(3600)).unwrap(), None);
        let mut bufs = vec![vec![0u8; 64]; 4];
        let mut out = Vec::new();
        // The datagram may still be on its way through loopback.
        let mut n = 0;
        for _ in 0..100 {
            n = s.recv_queued(&mut bufs, &mut out).unwrap();
            if n > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(n, 1);
        assert!(out[0].kernel_ts.is_some());
        assert_eq!(out[0].len, 14);
    }

    /// From a period before the last packet on it is the plain socket: the end of the
    /// session is not delayed.
    #[test]
    fn near_the_end_it_reads_at_once() {
        let (tx, inner) = pair();
        let clock = Clock::new(None, 0.0);
        let now = clock.now().0;
        let mut s = BatchingSocket::new(inner, clock, StopFlag::new(), now, now);
        tx.send(&[1u8; 14]).unwrap();
        let mut buf = vec![0u8; 64];
        let got = s.recv(&mut buf, Duration::from_secs(3600)).unwrap();
        assert_eq!(got.map(|r| r.len), Some(14));
        assert!(worth_batching(10.0) && !worth_batching(1000.0) && !worth_batching(f64::INFINITY));
    }
}
