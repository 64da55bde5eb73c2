//! The listening sockets (protocol.md §7.1: IPv6 first with IPV6_V6ONLY=0, else IPv4; backlog 64).
//!
//! Binding and listening are two steps. The master binds before it daemonizes, so that
//! "address in use" reaches the terminal, and listens only once the pid and info files
//! are written: a connection that succeeds means the daemon is fully started, which is
//! what scripts and tests that wait on the port rely on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

use config::SrcNode;

const BACKLOG: i32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot resolve srcnode \"{host}\": {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {op}: {source}")]
    Sys {
        addr: SocketAddr,
        op: &'static str,
        source: nix::Error,
    },
    #[error("srcnode \"{host}\" resolves to no address")]
    NoAddress { host: String },
}

/// Bind (not yet listening); the socket is non-blocking and close-on-exec.
fn bind_on(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let sys = |op| move |source| ListenError::Sys { addr, op, source };
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(sys("socket"))?;
    // A restarted daemon must not wait out TIME_WAIT connections of its predecessor.
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(sys("SO_REUSEADDR"))?;
    if addr.is_ipv6() {
        // One socket for both families where the address is the v6 wildcard.
        setsockopt(&fd, sockopt::Ipv6V6Only, &false).map_err(sys("IPV6_V6ONLY"))?;
    }
    let sa = SockaddrStorage::from(addr);
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &sa).map_err(sys("bind"))?;
    Ok(TcpListener::from(fd))
}

/// Start accepting connections on sockets from [`bind_srcnode`].
pub fn start_listening(listeners: &[TcpListener]) -> Result<(), ListenError> {
    for l in listeners {
        let addr = l
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        let sys = |source| ListenError::Sys {
            addr,
            op: "listen",
            source,
        };
        listen(l, Backlog::new(BACKLOG).map_err(sys)?).map_err(sys)?;
    }
    Ok(())
}

/// The wildcard gives `[::]` dual-stack, or `0.0.0.0` where IPv6 is unavailable; a node
/// gives the first of its addresses that can be bound. The sockets are bound only:
/// call [`start_listening`] when ready to accept.
pub fn bind_srcnode(node: &SrcNode) -> Result<Vec<TcpListener>, ListenError> {
    let addrs: Vec<SocketAddr> = match &node.host {
        None => vec![
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), node.port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), node.port),
        ],
        Some(host) => (host.as_str(), node.port)
            .to_socket_addrs()
            .map_err(|source| ListenError::Resolve {
                host: host.clone(),
                source,
            })?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match bind_on(addr) {
            Ok(l) => return Ok(vec![l]),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ListenError::NoAddress {
        host: node.host.clone().unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listener_accepts() {
        let node = SrcNode {
            host: Some("127.0.0.1".into()),
            port: 0,
        };
        let ls = bind_srcnode(&node).expect("bind");
        start_listening(&ls).expect("listen");
        let l = ls.first().expect("one");
        let addr = l.local_addr().expect("addr");
        let _c = std::net::TcpStream::connect(addr).expect("connect");
        // Non-blocking listener: poll until the connection is there.
        let mut got = None;
        for _ in 0..1000 {
            match l.accept() {
                Ok(s) => {
                    got = Some(s);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        assert!(got.is_some());
    }

    #[test]
    fn ipv6_loopback_when_available() {
        // Hosts without IPv6 (some containers) cannot bind ::1 at all: nothing to test.
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("ipv6_loopback_when_available: skipped, no ::1");
            return;
        }
        let node = SrcNode::parse("[::1]:1").expect("parse");
        let probe = std::net::TcpListener::bind("[::1]:0").expect("probe");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let ls = bind_srcnode(&SrcNode { port, ..node }).expect("bind");
        start_listening(&ls).expect("listen");
        let addr = ls.first().expect("one").local_addr().expect("addr");
        assert!(addr.is_ipv6() && addr.ip().is_loopback(), "{addr}");
        std::net::TcpStream::connect(addr).expect("connect");
    }

    #[test]
    fn port_in_use_is_an_error_naming_the_address() {
        let node = SrcNode {
            host: Some("127.0.0.1".into()),
            port: 0,
        };
        let ls = bind_srcnode(&node).expect("bind");
        start_listening(&ls).expect("listen");
        let port = ls.first().expect("one").local_addr().expect("addr").port();
        let e = bind_srcnode(&SrcNode {
            host: Some("127.0.0.1".into()),
            port,
        })
        .expect_err("in use");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
