//! Small values that come from argv, file names and config values, and the fixed-size
//! binary fields of records: `Sid::from_hex` (.owp file names, owfetch arguments),
//! `ModeSet::from_letters` (-A), `PortRange` (-P, testports), `SrcNode` (-S, srcnode),
//! `RunAs` (-U/-G), `parse_authmode`, `LogLevel`/`Facility`, `ErrorEstimate`,
//! `PacketRecord`, `Num64::from_secs_f64`, `config::parse_debug_time_offset`
//! (`OWAMP_DEBUG_TIMEOFFSET`).
//!
//! Invariants: no panic; each value that parses prints (or encodes) to a form that
//! parses back to the same value.
#![no_main]

use config::server::parse_authmode;
use config::{Facility, LogLevel, PortRange, RunAs, SrcNode};
use libfuzzer_sys::fuzz_target;
use owamp::{ErrorEstimate, ModeSet, Num64, PacketRecord, Sid};
use owampd_fuzz::{take_array, text_of};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = text_of(rest);
    let text = text.as_ref();
    match which % 11 {
        0 => {
            if let Ok(sid) = Sid::from_hex(text) {
                assert_eq!(text.len(), 32);
                assert_eq!(sid.to_hex(), text.to_ascii_lowercase(), "SID hex");
                assert_eq!(Sid::from_hex(&sid.to_hex()), Ok(sid));
            }
        }
        1 => {
            if let Ok(set) = ModeSet::from_letters(text) {
                assert!(!set.is_empty());
                assert_eq!(set.owamp_only(), set, "mode letters gave a non-OWAMP bit");
                assert!(set.strongest().is_some());
            }
            if let Ok(mask) = parse_authmode(text) {
                assert_eq!(ModeSet::from_letters(text).ok(), Some(ModeSet(mask)));
            }
        }
        2 => {
            if let Ok(r) = PortRange::parse(text) {
                assert!(r.is_ephemeral() || (r.low >= 1 && r.low <= r.high));
                assert_eq!(PortRange::parse(&r.to_string()), Ok(r), "PortRange text");
            }
        }
        3 => {
            if let Ok(s) = SrcNode::parse(text) {
                assert_eq!(SrcNode::parse(&s.to_string()), Ok(s), "SrcNode text");
            }
        }
        4 => {
            if let Ok(r) = RunAs::parse(text) {
                let again = match &r {
                    RunAs::Name(n) => RunAs::parse(n),
                    RunAs::Id(i) => RunAs::parse(&format!("-{i}")),
                };
                assert_eq!(again, Ok(r), "RunAs text");
            }
        }
        5 => {
            if let Some(l) = LogLevel::parse(text) {
                assert_eq!(LogLevel::parse(l.as_str()), Some(l));
            }
            if let Some(f) = Facility::parse(text) {
                assert_eq!(Facility::parse(f.as_str()), Some(f));
            }
        }
        6 => {
            let (b, _) = take_array::<2>(rest);
            let e = ErrorEstimate::from_bytes(b);
            assert_eq!(e.to_bytes(), b, "ErrorEstimate bytes");
            let s = e.as_secs_f64();
            assert!(s.is_finite() && s >= 0.0);
        }
        7 => {
            let (b, _) = take_array::<25>(rest);
            let r = PacketRecord::from_bytes(&b);
            assert_eq!(r.to_bytes(), b, "PacketRecord bytes");
        }
        8 => {
            let (b, _) = take_array::<8>(rest);
            let d = f64::from_le_bytes(b);
            let n = Num64::from_secs_f64(d);
            if d.is_nan() || d <= 0.0 {
                assert_eq!(n, Num64::ZERO);
            }
            let (sec, nsec) = n.to_parts();
            assert!(nsec < 1_000_000_000);
            assert!(sec <= u64::from(u32::MAX));
            let _ = Num64::from_parts(sec, nsec);
        }
        9 => {
            // OWAMP_DEBUG_TIMEOFFSET.
            if let Ok(v) = config::parse_debug_time_offset(text) {
                assert!(v.is_finite(), "offset {v}");
            }
        }
        _ => {
            // Any 16 bytes are a SID; its hex form parses back.
            let (b, _) = take_array::<16>(rest);
            let sid = Sid(b);
            assert_eq!(Sid::from_hex(&sid.to_string()), Ok(sid));
        }
    }
});
