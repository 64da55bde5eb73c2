//! `owamp-server.limits` (protocol.md §7.9, class selection §7.5): `Limits::parse` on arbitrary
//! text, with a pass-phrase table for `assign user`.
//!
//! Input: `limits text \0 pfs text`; without a NUL the table holds `alice` and `bob`.
//! A pfs text that does not parse means no table (`None`).
//!
//! Invariants: no panic; an accepted file gives a well-formed tree (root first and
//! alone without a parent, each parent before its child, names unique), `chain` runs
//! from the root to the class, class selection returns an existing class for any
//! address or user, and the tree survives bincode to the control process unchanged
//! (the deserialiser re-checks the tree).
#![no_main]

use config::{ClassId, Limits, Pfs};
use libfuzzer_sys::fuzz_target;
use owampd_fuzz::{take_array, text_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let (limits_bytes, pfs) = match data.iter().position(|&b| b == 0) {
        Some(i) => (
            &data[..i],
            Pfs::parse(&text_of(&data[i + 1..]), Path::new("owamp-server.pfs")).ok(),
        ),
        None => (
            data,
            Pfs::parse("alice 0a0b\nbob 00\n", Path::new("owamp-server.pfs")).ok(),
        ),
    };
    let text = text_of(limits_bytes);
    let path = Path::new("owamp-server.limits");
    let limits = match Limits::parse(&text, path, pfs.as_ref()) {
        Ok(l) => l,
        Err(e) => {
            assert!(e.to_string().starts_with("owamp-server.limits:"), "{e}");
            return;
        }
    };
    let classes: Vec<_> = limits.classes().collect();
    assert!(!classes.is_empty());
    assert_eq!(limits.root(), ClassId(0));
    for (id, class) in &classes {
        match class.parent {
            None => assert_eq!(*id, limits.root(), "non-root class without parent"),
            Some(p) => assert!(p.0 < id.0, "parent after child"),
        }
        assert_eq!(
            limits.by_name(&class.name),
            Some(*id),
            "duplicate class name"
        );
        let chain = limits.chain(*id);
        assert_eq!(chain.first(), Some(&limits.root()));
        assert_eq!(chain.last(), Some(id));
        assert!(!class.name.is_empty() && class.name.len() <= 80 && !class.name.contains('/'));
        assert_eq!(limits.class(*id), *class);
    }
    let n = classes.len();
    for r in limits.net_rules() {
        assert!(r.class.0 < n);
        let max = if r.addr.is_ipv4() { 32 } else { 128 };
        assert!(r.masklen <= max);
        // The network itself is in its own rule, so selection picks a rule at least as long.
        let chosen = limits.class_for_address(r.addr);
        assert!(chosen.0 < n);
    }

    // Selection for addresses and users taken from the input itself.
    let (v4, rest) = take_array::<4>(data);
    let (v6, _) = take_array::<16>(rest);
    for addr in [
        IpAddr::V4(Ipv4Addr::from(v4)),
        IpAddr::V6(Ipv6Addr::from(v6)),
    ] {
        assert!(limits.class_for_address(addr).0 < n);
        for user in text.split_whitespace().take(8) {
            assert!(limits.class_for_user(user, addr).0 < n);
        }
    }
    for (user, class) in limits.user_rules() {
        assert!(class.0 < n);
        assert!(
            pfs.as_ref().is_some_and(|p| p.contains(user)),
            "user {user:?} not in pfs"
        );
    }

    let cfg = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&limits, cfg).expect("Limits encodes");
    let (back, _): (Limits, usize) =
        bincode::serde::decode_from_slice(&bytes, cfg).expect("Limits decodes");
    assert_eq!(back, limits, "Limits bincode round trip");
});
