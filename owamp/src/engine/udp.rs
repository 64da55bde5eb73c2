//! The real test socket: UDP with kernel receive timestamps and TTLs (protocol.md §3.3, §3.4).

use super::{Received, TestSocket};
use crate::time::timestamp_from_timespec;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, RecvMsg, SockaddrStorage, getsockopt, recvmmsg,
    recvmsg, setsockopt, sockopt,
};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

/// Socket buffers never go above this (the kernel caps them at `rmem_max`/`wmem_max`
/// anyway, unless privileged).
const MAX_BUFFER: usize = 4 << 20;

/// How a test socket is set up.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketOptions {
    /// The Type-P DSCP (6 bits); written to TOS / Traffic Class as `dscp << 2`.
    pub dscp: Option<u8>,
    /// The session's payload length (`PacketFormat::len`).
    pub packet_len: usize,
    /// The session's mean send rate, packets per second, for sizing the buffers.
    pub packets_per_second: f64,
}

/// Socket buffers never go below this: the kernel's own default is about 208 KiB, and a
/// smaller value would *shrink* it, so a receiver descheduled for a fraction of a second
/// on a loaded host lost packets in the kernel (found by bench/run's scale test).
const MIN_BUFFER: usize = 256 << 10;

/// The kernel charges each queued datagram its `truesize` (about 800 octets on loopback
/// even for a 14-octet payload), not its length; sizing per packet must allow for that.
const PER_DATAGRAM_OVERHEAD: usize = 1024;

/// A socket buffer size holding about one second of packets, each charged
/// `max(len, 1024) + 128` octets, never below [`MIN_BUFFER`], capped at [`MAX_BUFFER`].
pub fn buffer_size_for(packet_len: usize, packets_per_second: f64) -> usize {
    let per = packet_len.max(PER_DATAGRAM_OVERHEAD).saturating_add(128);
    // Back-to-back schedules have an infinite rate: `as` saturates, the clamp caps.
    let pps = if packets_per_second > 1.0 {
        packets_per_second.min(1e9) as usize
    } else {
        1
    };
    per.saturating_mul(pps)
        .clamp(MIN_BUFFER.max(per), MAX_BUFFER.max(per))
}

/// A bound UDP socket for one test session, connected to its peer when the peer's port
/// is known.
///
/// Connected (RFC 4656 §3.5: the sender's port is in Request-Session, the receiver's in
/// Accept-Session), the kernel delivers only the peer's datagrams: a flood from any other
/// source is dropped before it takes the socket's buffer, where it would otherwise push
/// out the session's own packets before the receiver's source check could discard it.
/// Sending then needs no address, so no route lookup per packet. The receiver still
/// checks the source (the socket may have been left unconnected).
#[derive(Debug)]
pub struct UdpTestSocket {
    sock: UdpSocket,
    peer: SocketAddr,
    /// Why the socket is not connected to `peer` (`None`: it is).
    unconnected: Option<String>,
    /// Datagrams from other sources that were queued before the connect, discarded.
    discarded: u64,
    cmsg: Vec<u8>,
    /// SO_RCVBUF as the kernel granted it (getsockopt; about twice what was asked, the
    /// kernel's accounting unit), for the receiver's read interval.
    rcvbuf: Option<usize>,
}

impl UdpTestSocket {
    /// Wraps `sock` (already bound; perhaps handed over as an fd) for a session with
    /// `peer`: connected to it (see [`UdpTestSocket`]; not when its port is 0 or its
    /// address unspecified, or when the kernel refuses: see
    /// [`UdpTestSocket::unconnected_reason`]), TTL/hop limit 255, TOS from the DSCP,
    /// buffers sized for the rate, kernel receive timestamps and TTLs, non-blocking.
    pub fn new(
        sock: UdpSocket,
        peer: SocketAddr,
        opts: SocketOptions,
    ) -> io::Result<UdpTestSocket> {
        let v6 = sock.local_addr()?.is_ipv6();
        let fd = sock.as_fd();
        let buf = buffer_size_for(opts.packet_len, opts.packets_per_second);
        setsockopt(&fd, sockopt::SndBuf, &buf)?;
        setsockopt(&fd, sockopt::RcvBuf, &buf)?;
        setsockopt(&fd, sockopt::ReceiveTimestampns, &true)?;
        let tos = opts.dscp.map(|d| i32::from(d & 0x3F) << 2);
        if v6 {
            setsockopt(&fd, sockopt::Ipv6Ttl, &255)?;
            setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true)?;
            if let Some(t) = tos {
                setsockopt(&fd, sockopt::Ipv6TClass, &t)?;
            }
            // A dual-stack socket talking to an IPv4 peer uses the IPv4 options too;
            // they fail harmlessly on IPV6_V6ONLY sockets.
            let _ = setsockopt(&fd, sockopt::Ipv4Ttl, &255);
            let _ = setsockopt(&fd, sockopt::Ipv4RecvTtl, &true);
            if let Some(t) = tos {
                let _ = setsockopt(&fd, sockopt::Ipv4Tos, &t);
            }
        } else {
            setsockopt(&fd, sockopt::Ipv4Ttl, &255)?;
            setsockopt(&fd, sockopt::Ipv4RecvTtl, &true)?;
            if let Some(t) = tos {
                setsockopt(&fd, sockopt::Ipv4Tos, &t)?;
            }
        }
        // What the kernel actually granted (capped by rmem_max), not what was asked.
        let rcvbuf = getsockopt(&fd, sockopt::RcvBuf).ok();
        let unconnected = connect_to_peer(&sock, peer, v6).err();
        sock.set_nonblocking(true)?;
        let discarded = if unconnected.is_none() {
            discard_foreign_queued(&sock, peer)?
        } else {
            0
        };
        Ok(UdpTestSocket {
            sock,
            peer,
            unconnected,
            discarded,
            cmsg: nix::cmsg_space!(nix::sys::time::TimeSpec, i32, i32),
            rcvbuf,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Why the socket was left unconnected (datagrams from anyone then reach it, and
    /// the receiver filters them), or `None` when it is connected to the peer.
    pub fn unconnected_reason(&self) -> Option<&str> {
        self.unconnected.as_deref()
    }

    /// Datagrams from other sources that had reached the socket between its bind and
    /// its connect, and were discarded at the connect.
    pub fn discarded_before_connect(&self) -> u64 {
        self.discarded
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        let fd = self.sock.as_raw_fd();
        let mut iov = [IoSliceMut::new(buf)];
        // A pending ICMP error is reported once, by this call: then read again.
        for _ in 0..2 {
            match recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut self.cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(msg) => return received_meta(&msg).map(Some),
                Err(Errno::EAGAIN) => return Ok(None),
                Err(e) if is_reported_icmp_error(e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }
}

/// Connects `sock` to `peer` (an IPv4 peer of an IPv6 socket as its mapped address);
/// `Err` says why it was not.
fn connect_to_peer(sock: &UdpSocket, peer: SocketAddr, v6: bool) -> Result<(), String> {
    if peer.port() == 0 || peer.ip().is_unspecified() {
        return Err(format!("the peer's address {peer} is not complete"));
    }
    let to = match (peer, v6) {
        (SocketAddr::V4(a), true) => SocketAddr::new(a.ip().to_ipv6_mapped().into(), a.port()),
        (SocketAddr::V6(a), false) => match a.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(ip.into(), a.port()),
            None => return Err(format!("an IPv4 socket cannot reach {peer}")),
        },
        _ => peer,
    };
    sock.connect(to)
        .map_err(|e| format!("connect to {to}: {e}"))
}

/// The most queued datagrams [`discard_foreign_queued`] looks at (a socket buffer holds
/// a few thousand at most).
const MAX_DISCARD: u64 = 1 << 16;

/// Takes the datagrams from anyone but `peer` that reached a just-connected socket
/// between its bind and its connect (the connect filters only what comes after), up to
/// the first one from the peer, which stays queued with everything behind it (the
/// receiver filters those). Returns how many were discarded.
fn discard_foreign_queued(sock: &UdpSocket, peer: SocketAddr) -> io::Result<u64> {
    let fd = sock.as_raw_fd();
    let mut n = 0u64;
    let mut b = [0u8; 1];
    while n < MAX_DISCARD {
        let mut iov = [IoSliceMut::new(&mut b)];
        let from = match recvmsg::<SockaddrStorage>(
            fd,
            &mut iov,
            None,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_PEEK,
        ) {
            Ok(m) => m.address.as_ref().and_then(storage_to_std),
            Err(Errno::EAGAIN) => break,
            Err(e) if is_reported_icmp_error(e) => continue,
            Err(e) => return Err(e.into()),
        };
        if from.is_some_and(|f| {
            f.port() == peer.port() && f.ip().to_canonical() == peer.ip().to_canonical()
        }) {
            break;
        }
        let mut iov = [IoSliceMut::new(&mut b)];
        match recvmsg::<SockaddrStorage>(fd, &mut iov, None, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => n += 1,
            Err(Errno::EAGAIN) => break,
            Err(e) if is_reported_icmp_error(e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Errors a connected UDP socket reports for an ICMP message that came back earlier
/// (port or host unreachable, …). The kernel reports each once, in place of the call
/// that sees it (a send then sent nothing); the call is simply made again.
fn is_reported_icmp_error(e: Errno) -> bool {
    matches!(
        e,
        Errno::ECONNREFUSED
            | Errno::EHOSTUNREACH
            | Errno::ENETUNREACH
            | Errno::EHOSTDOWN
            | Errno::ENETDOWN
            | Errno::EPROTO
    )
}

/// One `recvmmsg(MSG_DONTWAIT)` into `bufs`, the datagrams' metadata appended to `out`.
fn recv_batch(
    fd: std::os::fd::RawFd,
    bufs: &mut [Vec<u8>],
    out: &mut Vec<Received>,
) -> Result<(), Errno> {
    // Allocated per call: nix's headers hold raw pointers (not Send), and the socket
    // moves between threads in owping. A few small allocations per batch.
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
        bufs.len(),
        Some(nix::cmsg_space!(nix::sys::time::TimeSpec, i32, i32)),
    );
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
        bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
    let msgs = recvmmsg(
        fd,
        &mut headers,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    for msg in msgs {
        out.push(
            received_meta(&msg)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EINVAL)))?,
        );
    }
    Ok(())
}

/// A received datagram's length, source, kernel timestamp and TTL / hop limit.
fn received_meta(msg: &RecvMsg<'_, '_, SockaddrStorage>) -> io::Result<Received> {
    let mut kernel_ts = None;
    let mut ttl = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::ScmTimestampns(ts) => {
                kernel_ts = Some(timestamp_from_timespec(&ts));
            }
            ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                ttl = u8::try_from(t).ok();
            }
            _ => {}
        }
    }
    Ok(Received {
        len: msg.bytes,
        // Not an IP datagram: cannot be from the peer. Report it as from nowhere.
        src: msg
            .address
            .as_ref()
            .and_then(storage_to_std)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        kernel_ts,
        ttl,
    })
}

fn storage_to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

impl TestSocket for UdpTestSocket {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        // One retry for an error the kernel reports from an earlier ICMP message: this
        // packet was not sent. A second error is this packet's own.
        let mut reported_once = false;
        loop {
            let sent = if self.unconnected.is_none() {
                self.sock.send(buf)
            } else {
                self.sock.send_to(buf, self.peer)
            };
            match sent {
                Ok(_) => return Ok(()),
                Err(e)
                    if !reported_once
                        && self.unconnected.is_none()
                        && e.raw_os_error()
                            .is_some_and(|n| is_reported_icmp_error(Errno::from_raw(n))) =>
                {
                    reported_once = true;
                }
                // The send buffer is full (non-blocking socket): wait until it drains.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLOUT)];
                    match poll(&mut fds, PollTimeout::from(100u8)) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
        if let Some(r) = self.try_recv(buf)? {
            return Ok(Some(r));
        }
        // Only what is queued: no poll(0) syscall on top of the recvmsg.
        if timeout.is_zero() {
            return Ok(None);
        }
        let ms = timeout.as_millis();
        // Round up so a sub-millisecond wait does not become a busy loop.
        let ms = if !timeout.subsec_nanos().is_multiple_of(1_000_000) {
            ms + 1
        } else {
            ms
        };
        let pt = PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, pt) {
            Ok(0) | Err(Errno::EINTR) => Ok(None),
            Ok(_) => self.try_recv(buf),
            Err(e) => Err(e.into()),
        }
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sock.as_fd())
    }

    /// One `recvmmsg(MSG_DONTWAIT)` for the whole batch: a wake-up after a read interval reads dozens
    /// of datagrams with a syscall or two instead of one `recvmsg` each.
    fn recv_queued(&mut self, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> io::Result<usize> {
        out.clear();
        if bufs.is_empty() {
            return Ok(0);
        }
        // A pending ICMP error is reported once, in place of the batch: then read again.
        match recv_batch(self.sock.as_raw_fd(), bufs, out) {
            Err(e) if is_reported_icmp_error(e) => {
                out.clear();
                recv_batch(self.sock.as_raw_fd(), bufs, out)
            }
            r => r,
        }
        .or_else(|e| if e == Errno::EAGAIN { Ok(()) } else { Err(e) })?;
        Ok(out.len())
    }

    fn recv_buffer_size(&self) -> Option<usize> {
        self.rcvbuf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// recvmmsg returns every queued datagram with its own length and kernel timestamp,
    /// in order, and says "none" once the queue is empty. The socket is connected to its
    /// peer: a datagram from another socket never reaches it.
    #[test]
    fn recv_queued_reads_a_batch() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut rx = UdpTestSocket::new(
            a,
            pb,
            SocketOptions {
                dscp: None,
                packet_len: 14,
                packets_per_second: 10.0,
            },
        )
        .unwrap();
        assert_eq!(rx.unconnected_reason(), None);
        assert!(rx.recv_buffer_size().is_some_and(|n| n >= MIN_BUFFER));
        for i in 0..6u8 {
            let s = if i == 2 { &c } else { &b };
            s.send_to(&vec![i; 10 + usize::from(i)], pa).unwrap();
        }
        let mut bufs = vec![vec![0u8; 20]; 4];
        let mut out = Vec::new();
        // Loopback delivers synchronously, so the peer's five are queued already.
        assert_eq!(rx.recv_queued(&mut bufs, &mut out).unwrap(), 4);
        for (&i, (m, buf)) in [0u8, 1, 3, 4].iter().zip(out.iter().zip(&bufs)) {
            assert_eq!(m.len, 10 + usize::from(i));
            assert_eq!(buf[..m.len], vec![i; m.len][..]);
            assert_eq!(m.src, pb);
            assert!(m.kernel_ts.is_some());
            assert_eq!(m.ttl, Some(64));
        }
        assert_eq!(rx.recv_queued(&mut bufs, &mut out).unwrap(), 1);
        assert_eq!(out[0].len, 15);
        assert_eq!(rx.recv_queued(&mut bufs, &mut out).unwrap(), 0);
        assert!(out.is_empty());
    }

    /// What other sources sent between the bind and the connect is discarded at the
    /// connect; the peer's first datagram and everything after it stays queued.
    #[test]
    fn foreign_datagrams_queued_before_the_connect_are_discarded() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        for _ in 0..3 {
            c.send_to(&[9; 14], pa).unwrap();
        }
        b.send_to(&[1; 14], pa).unwrap();
        c.send_to(&[9; 14], pa).unwrap();
        let opts = SocketOptions {
            dscp: None,
            packet_len: 14,
            packets_per_second: 10.0,
        };
        let mut rx = UdpTestSocket::new(a, pb, opts).unwrap();
        assert_eq!(rx.discarded_before_connect(), 3);
        let mut bufs = vec![vec![0u8; 20]; 4];
        let mut out = Vec::new();
        assert_eq!(rx.recv_queued(&mut bufs, &mut out).unwrap(), 2);
        assert_eq!((out[0].src, bufs[0][0]), (pb, 1));
        assert_eq!(out[1].src, c.local_addr().unwrap());
    }

    /// A connected sender whose peer answered with ICMP port unreachable (nobody was
    /// listening yet) does not lose its next packet to that old error.
    #[test]
    fn connected_send_survives_an_earlier_port_unreachable() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = gone.local_addr().unwrap();
        drop(gone);
        let opts = SocketOptions {
            dscp: None,
            packet_len: 14,
            packets_per_second: 10.0,
        };
        let mut tx = UdpTestSocket::new(a, to, opts).unwrap();
        assert_eq!(tx.unconnected_reason(), None);
        // The port is closed: loopback answers with ICMP at once, and the error is
        // pending on the socket before the next send.
        tx.send(&[0; 14]).unwrap();
        let rx = match UdpSocket::bind(to) {
            Ok(s) => s,
            Err(_) => return, // someone else took the port meanwhile: nothing to check
        };
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        tx.send(&[1; 14]).unwrap();
        let mut buf = [0u8; 32];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[1; 14]);
    }

    #[test]
    fn buffer_sizes() {
        // Low rates never shrink the kernel's default buffer.
        assert_eq!(buffer_size_for(14, 0.0), MIN_BUFFER);
        assert_eq!(buffer_size_for(14, f64::NAN), MIN_BUFFER);
        assert_eq!(buffer_size_for(48, 10.0), MIN_BUFFER);
        // One second of packets at their kernel cost (truesize, not length).
        assert_eq!(buffer_size_for(48, 1000.0), 1152 * 1000);
        assert_eq!(buffer_size_for(2000, 1000.0), 2128 * 1000);
        assert_eq!(buffer_size_for(48, f64::INFINITY), MAX_BUFFER);
        assert_eq!(buffer_size_for(65_507, 1e6), MAX_BUFFER);
        // A single huge datagram always fits.
        assert_eq!(buffer_size_for(65_507, 0.0), MIN_BUFFER.max(65_635));
    }
}
