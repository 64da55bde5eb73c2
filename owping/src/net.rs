//! Sockets of the clients: resolving `host`, `host:port`, `[v6]:port` (protocol.md §8), the
//! control connection with a connect deadline, `-S`/`-B`, and the UDP test socket bound
//! in the `-P` port range.

use config::{OWAMP_CONTROL_PORT, PortRange, SrcNode};
use owamp::addr::with_scope;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;
use thiserror::Error;

/// `-4` / `-6`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

impl Family {
    fn allows(self, a: &SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        }
    }
}

#[derive(Debug, Error)]
pub enum NetError {
    #[error("invalid address {text:?}: {detail}")]
    Spec { text: String, detail: String },
    #[error("unable to resolve {host:?}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host:?} has no {family} address")]
    NoAddress { host: String, family: &'static str },
    #[error("unable to open control connection to {server}: {detail}")]
    Connect { server: String, detail: String },
    #[error("socket {what}: {source}")]
    Socket {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no free test port in {low}-{high} on {ip}: {source}")]
    NoPort {
        ip: IpAddr,
        low: u16,
        high: u16,
        #[source]
        source: io::Error,
    },
}

/// Splits `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
pub fn split_host(text: &str, default_port: u16) -> Result<(String, u16), NetError> {
    let node = SrcNode::parse(text).map_err(|e| NetError::Spec {
        text: text.to_string(),
        detail: e.to_string(),
    })?;
    let host = node.host.ok_or_else(|| NetError::Spec {
        text: text.to_string(),
        detail: "no host name".into(),
    })?;
    // SrcNode defaults to 861 when no port is written; keep the caller's default.
    let port = if text.ends_with(&format!(":{}", node.port)) {
        node.port
    } else {
        default_port
    };
    Ok((host, port))
}

/// Every address of `text` allowed by `family`, IPv6 first (protocol.md §8.1).
pub fn resolve(text: &str, default_port: u16, family: Family) -> Result<Vec<SocketAddr>, NetError> {
    let (host, port) = split_host(text, default_port)?;
    let mut addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| NetError::Resolve {
            host: host.clone(),
            source: e,
        })?
        .filter(|a| family.allows(a))
        .collect();
    addrs.sort_by_key(|a| a.is_ipv4());
    addrs.dedup();
    if addrs.is_empty() {
        return Err(NetError::NoAddress {
            host,
            family: match family {
                Family::V4 => "IPv4",
                Family::V6 => "IPv6",
                Family::Any => "usable",
            },
        });
    }
    Ok(addrs)
}

fn new_socket(addr: &SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    Socket::new(Domain::for_address(*addr), ty, Some(proto))
}

/// Opens the control connection to `server` (port 861 by default), from `src` and/or
/// on `device` when given, trying each address in turn within `timeout`.
pub fn connect_control(
    server: &str,
    src: Option<&str>,
    family: Family,
    device: Option<&str>,
    timeout: Duration,
) -> Result<TcpStream, NetError> {
    let addrs = resolve(server, OWAMP_CONTROL_PORT, family)?;
    let srcs = match src {
        Some(s) => Some(resolve(s, 0, family)?),
        None => None,
    };
    let mut last = String::from("no address");
    for addr in addrs {
        let local = match &srcs {
            Some(list) => match list.iter().find(|l| l.is_ipv4() == addr.is_ipv4()) {
                Some(l) => Some(*l),
                None => {
                    last = format!("no source address of the family of {addr}");
                    continue;
                }
            },
            None => None,
        };
        let attempt = || -> io::Result<TcpStream> {
            let s = new_socket(&addr, Type::STREAM, Protocol::TCP)?;
            if let Some(d) = device {
                s.bind_device(Some(d.as_bytes()))?;
            }
            if let Some(l) = local {
                s.bind(&SockAddr::from(l))?;
            }
            s.connect_timeout(&SockAddr::from(addr), timeout)?;
            Ok(s.into())
        };
        match attempt() {
            Ok(t) => return Ok(t),
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock =>
            {
                last = format!(
                    "{addr}: connect timed out after {:.0} s",
                    timeout.as_secs_f64()
                );
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(NetError::Connect {
        server: server.to_string(),
        detail: last,
    })
}

/// Binds a UDP test socket on `ip` with a port from `range` (0 = ephemeral), trying
/// the ports in order from a random start like the reference, and `device` if given.
///
/// `scope_id` is the IPv6 scope (interface) a link-local `ip` needs, that of the
/// control connection (protocol.md §2.1.3); other addresses ignore it.
pub fn bind_test_socket(
    ip: IpAddr,
    scope_id: u32,
    range: PortRange,
    device: Option<&str>,
) -> Result<UdpSocket, NetError> {
    let bind = |port: u16| -> io::Result<UdpSocket> {
        let addr = with_scope(SocketAddr::new(ip, port), scope_id);
        let s = new_socket(&addr, Type::DGRAM, Protocol::UDP)?;
        if let Some(d) = device {
            s.bind_device(Some(d.as_bytes()))?;
        }
        s.bind(&SockAddr::from(addr))?;
        Ok(s.into())
    };
    let no_port = |e| NetError::NoPort {
        ip,
        low: range.low,
        high: range.high,
        source: e,
    };
    if range.is_ephemeral() {
        return bind(0).map_err(no_port);
    }
    let n = u32::from(range.high) - u32::from(range.low) + 1;
    let start = owamp::crypto::random_bytes::<4>("test port")
        .map(u32::from_be_bytes)
        .unwrap_or(0)
        % n;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for i in 0..n {
        let port = u32::from(range.low) + (start + i) % n;
        match bind(port as u16) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(no_port(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(split_host("h", 861).unwrap(), ("h".into(), 861));
        assert_eq!(split_host("h:4000", 861).unwrap(), ("h".into(), 4000));
        assert_eq!(split_host("[::1]:4000", 861).unwrap(), ("::1".into(), 4000));
        assert_eq!(split_host("[::1]", 0).unwrap(), ("::1".into(), 0));
        assert_eq!(split_host("fe80::1", 0).unwrap(), ("fe80::1".into(), 0));
        assert_eq!(split_host("h:861", 0).unwrap(), ("h".into(), 861));
        assert!(split_host("[::1", 0).is_err());
    }

    #[test]
    fn test_port_in_range() {
        let s = bind_test_socket(
            "127.0.0.1".parse().unwrap(),
            0,
            PortRange {
                low: 20000,
                high: 20100,
            },
            None,
        )
        .unwrap();
        let p = s.local_addr().unwrap().port();
        assert!((20000..=20100).contains(&p));
        let e =
            bind_test_socket("127.0.0.1".parse().unwrap(), 0, PortRange::EPHEMERAL, None).unwrap();
        assert_ne!(e.local_addr().unwrap().port(), 0);
    }
}
