//! Property tests: the parsers face files an administrator (or an attacker who can
//! write the config directory) controls, so no input may panic them; and the formats
//! round-trip where a writer exists.

use config::{Limits, Pfs, PortRange, ServerConf, SrcNode, pfs_lookup_client};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Text biased towards the tokens the parsers look at, so the deep paths are reached.
fn config_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("limit ".to_string()),
        Just("assign ".to_string()),
        Just("with ".to_string()),
        Just("default ".to_string()),
        Just("net ".to_string()),
        Just("user ".to_string()),
        Just("parent=".to_string()),
        Just("disk=".to_string()),
        Just("bandwidth=".to_string()),
        Just("test_sessions=".to_string()),
        Just("delete_on_fetch=on".to_string()),
        Just("allow_open_mode=off".to_string()),
        Just(",".to_string()),
        Just("\\\n".to_string()),
        Just("\n".to_string()),
        Just("#".to_string()),
        Just("/".to_string()),
        Just(" ".to_string()),
        Just("10.0.0.0/8 ".to_string()),
        Just("::ffff:1.2.3.4/120 ".to_string()),
        Just("root ".to_string()),
        Just("alice ".to_string()),
        Just("00ff ".to_string()),
        Just("18446744073709551615z".to_string()),
        Just("authmode ".to_string()),
        Just("srcnode ".to_string()),
        Just("[::1]:".to_string()),
        Just("testports ".to_string()),
        Just("1-65535".to_string()),
        Just("loglevel ".to_string()),
        Just("maxcontrolsessions".to_string()),
        Just("diskfudge ".to_string()),
        Just("1e308".to_string()),
        "[a-z0-9:.\\-\\[\\]]{0,6}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        any::<u32>().prop_map(|v| IpAddr::V6(Ipv4Addr::from(v).to_ipv6_mapped())),
    ]
}

fn exercise(l: &Limits, ip: IpAddr) {
    let c = l.class_for_address(ip);
    let chain = l.chain(c);
    assert_eq!(chain.first(), Some(&l.root()));
    assert_eq!(chain.last(), Some(&c));
    let _ = l.class_for_user("alice", ip);
    let _ = l.class(c);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn conf_never_panics(text in prop_oneof![any::<String>(), config_like()]) {
        let _ = ServerConf::parse(&text, Path::new("c"));
    }

    #[test]
    fn pfs_never_panics(text in prop_oneof![any::<String>(), config_like()], id in ".{0,8}") {
        let _ = Pfs::parse(&text, Path::new("p"));
        let _ = pfs_lookup_client(&text, Path::new("p"), &id);
    }

    #[test]
    fn limits_never_panic(text in prop_oneof![any::<String>(), config_like()], ip in any_ip()) {
        let pfs = Pfs::parse("alice 00\n", Path::new("p")).ok();
        if let Ok(l) = Limits::parse(&text, Path::new("l"), pfs.as_ref()) {
            exercise(&l, ip);
        }
        let _ = Limits::parse(&text, Path::new("l"), None);
    }

    #[test]
    fn srcnode_and_ports_never_panic(text in prop_oneof![any::<String>(), "[0-9:\\[\\]a-f\\-]{0,12}"]) {
        if let Ok(n) = SrcNode::parse(&text) {
            prop_assert_eq!(SrcNode::parse(&n.to_string()), Ok(n));
        }
        if let Ok(p) = PortRange::parse(&text) {
            prop_assert_eq!(PortRange::parse(&p.to_string()), Ok(p));
        }
    }

    #[test]
    fn port_ranges_round_trip(a in 1u16.., b in 1u16..) {
        let (low, high) = (a.min(b), a.max(b));
        let r = PortRange::parse(&format!("{low}-{high}"));
        prop_assert_eq!(r.clone(), Ok(PortRange { low, high }));
        prop_assert_eq!(r.map(PortRange::len), Ok(u32::from(high) - u32::from(low) + 1));
    }

    #[test]
    fn pfs_round_trips(entries in prop::collection::btree_map("[!-~&&[^#]][!-~]{0,79}", prop::collection::vec(any::<u8>(), 1..40), 0..8)) {
        let mut text = String::from("# written by the test\n");
        for (id, pf) in &entries {
            let hex: String = pf.iter().map(|b| format!("{b:02x}")).collect();
            text.push_str(&format!("{id}\t{hex}\n"));
        }
        let p = Pfs::parse(&text, Path::new("p")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got: BTreeMap<String, Vec<u8>> = p
            .identities()
            .map(|id| (id.to_string(), p.get(id).map(<[u8]>::to_vec).unwrap_or_default()))
            .collect();
        prop_assert_eq!(&got, &entries);
        for (id, pf) in &entries {
            prop_assert_eq!(pfs_lookup_client(&text, Path::new("p"), id), Ok(Some(pf.clone())));
        }
    }

    /// A deserialised tree (from IPC) is validated, so lookups on it cannot panic.
    #[test]
    fn decoded_limits_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), ip in any_ip()) {
        // The IPC codec must set a limit like this one: without it bincode trusts a
        // length prefix and tries to allocate it.
        let cfg = bincode::config::standard().with_limit::<65536>();
        if let Ok((l, _)) = bincode::serde::decode_from_slice::<Limits, _>(&bytes, cfg) {
            exercise(&l, ip);
        }
    }

    /// Longest-prefix selection agrees with a brute-force model over random v4 rules.
    #[test]
    fn longest_prefix_matches_model(
        rules in prop::collection::vec((any::<u32>(), 1u8..=32), 0..12),
        probe in any::<u32>(),
    ) {
        let mut text = String::from("limit root with disk=0\n");
        let mut kept: Vec<(u32, u8, String)> = Vec::new();
        for (i, (addr, len)) in rules.iter().enumerate() {
            let mask = u32::MAX << (32 - u32::from(*len));
            let net = addr & mask;
            if kept.iter().any(|(n, l, _)| *n == net && l == len) {
                continue;
            }
            let name = format!("c{i}");
            text.push_str(&format!("limit {name} with parent=root\n"));
            text.push_str(&format!("assign net {}/{len} {name}\n", Ipv4Addr::from(net)));
            kept.push((net, *len, name));
        }
        let l = Limits::parse(&text, Path::new("l"), None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = kept
            .iter()
            .filter(|(n, len, _)| probe & (u32::MAX << (32 - u32::from(*len))) == *n)
            .max_by_key(|(_, len, _)| *len)
            .map(|(_, _, name)| name.as_str())
            .unwrap_or("root");
        let got = l.class(l.class_for_address(IpAddr::V4(Ipv4Addr::from(probe)))).name.clone();
        prop_assert_eq!(got.as_str(), want);
        let mapped = IpAddr::V6(Ipv4Addr::from(probe).to_ipv6_mapped());
        prop_assert_eq!(l.class(l.class_for_address(mapped)).name.as_str(), want);
    }
}

proptest! {
    /// `disk`/`bandwidth` values with SI suffixes agree with exact arithmetic, and
    /// anything that overflows 64 bits is refused rather than wrapped.
    #[test]
    fn si_suffixes_match_exact_arithmetic(n in prop_oneof![any::<u64>(), 0u64..100_000], s in 0usize..8, upper in any::<bool>()) {
        let suffixes = ["", "k", "m", "g", "t", "p", "e", "z"];
        let suffix = suffixes.get(s).copied().unwrap_or("");
        let suffix = if upper { suffix.to_uppercase() } else { suffix.to_string() };
        let exp = u32::try_from(s).unwrap_or(0) * 3;
        let want = 10u128
            .checked_pow(exp)
            .and_then(|m| u128::from(n).checked_mul(m))
            .and_then(|v| u64::try_from(v).ok());
        let text = format!("limit r with disk={n}{suffix},bandwidth={n}{suffix}\n");
        let got = Limits::parse(&text, Path::new("l"), None)
            .ok()
            .map(|l| (l.class(l.root()).disk, l.class(l.root()).bandwidth));
        prop_assert_eq!(got, want.map(|v| (v, v)));
    }
}
