//! argv comes from outside: no command line may make the parsers panic, and the
//! strtod-style scanner only ever accepts prefixes that are numbers.

use owping::opts::{Program, parse_command_line};
use owping::parse::{parse_dscp, parse_percentiles, parse_slots, strtod_prefix};
use proptest::prelude::*;

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "-[-a-zA-Z0-9:]{0,4}",
        "[-+.,:eEfF0-9a-zA-Z\\[\\] ]{0,12}",
        Just("--json".to_string()),
        Just("--".to_string()),
        ".*",
    ]
}

proptest! {
    #[test]
    fn command_lines_never_panic(args in proptest::collection::vec(word(), 0..8)) {
        for p in [Program::Owping, Program::Owstats, Program::Owfetch, Program::Owup] {
            let _ = parse_command_line(p, &args);
        }
    }

    #[test]
    fn value_parsers_never_panic(s in ".*") {
        let _ = parse_slots(&s);
        let _ = parse_dscp(&s);
        let _ = parse_percentiles(&s);
    }

    #[test]
    fn strtod_prefix_is_a_number(s in "[-+.eE0-9x ]{0,10}") {
        let n = strtod_prefix(&s);
        prop_assert!(n <= s.len());
        if n > 0 {
            prop_assert!(s[..n].parse::<f64>().is_ok(), "{:?}", &s[..n]);
        }
    }

    #[test]
    fn slot_lists_round_trip(vals in proptest::collection::vec((0u32..100_000, any::<bool>()), 1..6)) {
        let text: Vec<String> = vals
            .iter()
            .map(|(v, fixed)| format!("{}.{:03}{}", v / 1000, v % 1000, if *fixed { "f" } else { "e" }))
            .collect();
        let slots = parse_slots(&text.join(",")).unwrap();
        prop_assert_eq!(slots.len(), vals.len());
        for (s, (v, fixed)) in slots.iter().zip(&vals) {
            prop_assert_eq!(s.kind == owamp::SlotKind::Fixed, *fixed);
            let want = owamp::Num64::from_secs_f64(f64::from(*v) / 1000.0);
            // Same double → same Num64 (decimal text → double may differ by one ulp).
            prop_assert!(s.param.0.abs_diff(want.0) <= 1);
        }
    }
}
