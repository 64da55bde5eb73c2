//! Test-port allocation (protocol.md §7.6, RFC 4656 §3.5).
//!
//! With a `testports low-high` range: start at a uniformly random port of the range,
//! try each next port (wrapping) on EADDRINUSE until the whole range was tried. A
//! port this process already handed out and has not got back is skipped without even
//! trying, so two sessions never share a port. With no range: the kernel's ephemeral
//! port (bind to port 0).
//!
//! Ours: An exhausted range gives Accept=5 (temporary resource limit) where the
//! reference closes the connection; any other bind failure (e.g. the requested address
//! is not local) gives Accept=2.

use owamp::AcceptCode;
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PortError {
    #[error("no free test port in {low}-{high} on {addr}")]
    NoFreePort { addr: IpAddr, low: u16, high: u16 },
    #[error("cannot bind a test socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

impl PortError {
    /// The Accept-Session value this failure is reported with.
    pub fn accept_code(&self) -> AcceptCode {
        match self {
            PortError::NoFreePort { .. } => AcceptCode::TemporaryResourceLimit,
            PortError::Bind { .. } => AcceptCode::InternalError,
        }
    }
}

/// Hands out test ports; cheap to clone.
#[derive(Clone, Debug)]
pub struct PortAllocator {
    range: Option<(u16, u16)>,
    in_use: Arc<Mutex<HashSet<u16>>>,
}

/// A port held by a session; given back when dropped.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    in_use: Arc<Mutex<HashSet<u16>>>,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        lock(&self.in_use).remove(&self.port);
    }
}

fn lock(m: &Mutex<HashSet<u16>>) -> MutexGuard<'_, HashSet<u16>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PortAllocator {
    /// `range` = `Some((low, high))` with low ≤ high (swapped if not), or `None` for
    /// ephemeral ports. `Some((0, 0))` also means ephemeral (`testports 0`).
    pub fn new(range: Option<(u16, u16)>) -> PortAllocator {
        let range = match range {
            None | Some((0, 0)) => None,
            Some((a, b)) => Some((a.min(b), a.max(b))),
        };
        PortAllocator {
            range,
            in_use: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Bind a UDP socket on `ip` to a free port.
    pub fn bind(&self, ip: IpAddr) -> Result<(UdpSocket, PortLease), PortError> {
        self.bind_scoped(ip, 0)
    }

    /// `bind` for an address that may need an IPv6 scope (a link-local one: the
    /// interface of the control connection, protocol.md §2.1.3).
    pub fn bind_scoped(
        &self,
        ip: IpAddr,
        scope_id: u32,
    ) -> Result<(UdpSocket, PortLease), PortError> {
        let start = getrandom::u32().unwrap_or(0);
        self.bind_with(ip, start, |a| {
            UdpSocket::bind(owamp::addr::with_scope(a, scope_id))
        })
    }

    /// `bind` with the random start and the binder injected (tests).
    pub fn bind_with(
        &self,
        ip: IpAddr,
        random: u32,
        mut binder: impl FnMut(SocketAddr) -> io::Result<UdpSocket>,
    ) -> Result<(UdpSocket, PortLease), PortError> {
        let Some((low, high)) = self.range else {
            let addr = SocketAddr::new(ip, 0);
            let sock = binder(addr).map_err(|source| PortError::Bind { addr, source })?;
            let port = sock
                .local_addr()
                .map_err(|source| PortError::Bind { addr, source })?
                .port();
            lock(&self.in_use).insert(port);
            return Ok((
                sock,
                PortLease {
                    port,
                    in_use: self.in_use.clone(),
                },
            ));
        };
        let span = u32::from(high) - u32::from(low) + 1;
        let first = random % span;
        for k in 0..span {
            let offset = (first + k) % span;
            // INVARIANT: offset < span, so low + offset ≤ high fits in u16.
            let port = u16::try_from(u32::from(low) + offset).unwrap_or(high);
            // Reserve before binding so a concurrent task cannot pick the same port.
            if !lock(&self.in_use).insert(port) {
                continue;
            }
            let lease = PortLease {
                port,
                in_use: self.in_use.clone(),
            };
            let addr = SocketAddr::new(ip, port);
            match binder(addr) {
                Ok(sock) => return Ok((sock, lease)),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(source) => return Err(PortError::Bind { addr, source }),
            }
        }
        Err(PortError::NoFreePort {
            addr: ip,
            low,
            high,
        })
    }

    pub fn in_use(&self) -> usize {
        lock(&self.in_use).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn free_range(n: u16) -> (u16, u16) {
        // Find n consecutive ports free right now. The start is random in a band below
        // the ephemeral range (32768-) and above the bench's server range (10000-30000),
        // so the tests running in parallel (and bench runs) do not race for the same
        // ports.
        let mut base = 30_000 + (getrandom::u32().unwrap_or(0) % 2_500) as u16;
        loop {
            match (base..base + n).find(|&p| UdpSocket::bind((LO, p)).is_err()) {
                Some(busy) => base = busy + 1,
                None => return (base, base + n - 1),
            }
        }
    }

    #[test]
    fn starts_at_random_offset_and_wraps() {
        let (low, high) = free_range(4);
        let a = PortAllocator::new(Some((low, high)));
        let mut tried = Vec::new();
        let (_s, lease) = a
            .bind_with(LO, 6, |addr| {
                tried.push(addr.port());
                if addr.port() == high {
                    Err(io::Error::from(io::ErrorKind::AddrInUse))
                } else {
                    UdpSocket::bind(addr)
                }
            })
            .unwrap();
        // 6 % 4 = 2 → low+2, then low+3 = high (in use) was not reached: low+2 bound.
        assert_eq!(tried, vec![low + 2]);
        assert_eq!(lease.port(), low + 2);
        // Next one: start at high (in use by "someone else"), wrap to low.
        let mut tried = Vec::new();
        let (_s2, lease2) = a
            .bind_with(LO, 3, |addr| {
                tried.push(addr.port());
                if addr.port() == high {
                    Err(io::Error::from(io::ErrorKind::AddrInUse))
                } else {
                    UdpSocket::bind(addr)
                }
            })
            .unwrap();
        assert_eq!(tried, vec![high, low]);
        assert_eq!(lease2.port(), low);
    }

    #[test]
    fn never_reuses_a_port_in_use_and_exhausts_to_accept_5() {
        let (low, high) = free_range(2);
        let a = PortAllocator::new(Some((low, high)));
        // The binder would happily reuse (it does not bind at all): the allocator must not.
        let fake = |addr: SocketAddr| -> io::Result<UdpSocket> {
            let s = UdpSocket::bind((LO, 0))?;
            let _ = addr;
            Ok(s)
        };
        let (_s1, l1) = a.bind_with(LO, 0, fake).unwrap();
        let (_s2, l2) = a.bind_with(LO, 0, fake).unwrap();
        assert_ne!(l1.port(), l2.port());
        let err = a.bind_with(LO, 0, fake).unwrap_err();
        assert!(matches!(err, PortError::NoFreePort { .. }), "{err}");
        assert_eq!(err.accept_code(), AcceptCode::TemporaryResourceLimit);
        drop(l1);
        let (_s3, l3) = a.bind_with(LO, 0, fake).unwrap();
        assert_eq!(l3.port(), low);
        drop(l2);
        assert_eq!(a.in_use(), 1);
    }

    #[test]
    fn real_bind_in_range_and_ephemeral() {
        let (low, high) = free_range(3);
        let a = PortAllocator::new(Some((low, high)));
        let (s, lease) = a.bind(LO).unwrap();
        assert_eq!(s.local_addr().unwrap().port(), lease.port());
        assert!((low..=high).contains(&lease.port()));
        let e = PortAllocator::new(Some((0, 0)));
        let (s, lease) = e.bind(LO).unwrap();
        assert_ne!(lease.port(), 0);
        assert_eq!(s.local_addr().unwrap().port(), lease.port());
    }

    #[test]
    fn non_local_address_is_accept_2() {
        let a = PortAllocator::new(None);
        // TEST-NET-3 is never a local address.
        let err = a
            .bind(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
            .unwrap_err();
        assert!(matches!(err, PortError::Bind { .. }), "{err}");
        assert_eq!(err.accept_code(), AcceptCode::InternalError);
        assert_eq!(a.in_use(), 0);
    }
}
