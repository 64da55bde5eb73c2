//! IPv6 scopes of test addresses. A link-local address (fe80::/10) names an interface
//! only together with a scope id, which Request-Session cannot carry: both ends take
//! it from the control connection, which must then be link-local too (protocol.md §2.1.3).

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// fe80::/10.
pub fn is_link_local(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80)
}

/// The scope of a link-local socket address (the control connection's end), 0 for any
/// other address.
pub fn link_scope(addr: &SocketAddr) -> u32 {
    match addr {
        SocketAddr::V6(a) if is_link_local(&addr.ip()) => a.scope_id(),
        _ => 0,
    }
}

/// `addr` with `scope_id` when it is link-local, which the kernel can only bind or reach
/// through one interface; unchanged otherwise.
pub fn with_scope(addr: SocketAddr, scope_id: u32) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) if is_link_local(&addr.ip()) => {
            SocketAddr::V6(SocketAddrV6::new(*a.ip(), a.port(), 0, scope_id))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_link_local_addresses_take_a_scope() {
        let ll: SocketAddr = "[fe80::1]:5000".parse().unwrap();
        assert_eq!(with_scope(ll, 7).to_string(), "[fe80::1%7]:5000");
        assert_eq!(link_scope(&with_scope(ll, 7)), 7);
        assert!(is_link_local(&"febf::1".parse().unwrap()));
        assert!(!is_link_local(&"fec0::1".parse().unwrap()));
        for other in ["[2001:db8::1]:5000", "[::1]:5000", "127.0.0.1:5000"] {
            let a: SocketAddr = other.parse().unwrap();
            assert_eq!(with_scope(a, 7), a);
            assert_eq!(link_scope(&with_scope(a, 7)), 0);
        }
        // A scoped global address is not link-local: no scope to copy.
        let g = SocketAddr::V6(SocketAddrV6::new("2001:db8::1".parse().unwrap(), 1, 0, 3));
        assert_eq!(link_scope(&g), 0);
    }
}
