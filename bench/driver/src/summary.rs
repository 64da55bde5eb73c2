//! Order statistics of a sample of durations, and conversions from OWAMP's 32.32
//! timestamps (RFC 4656 §4.1.2) to signed nanoseconds.

use owamp::types::Timestamp;
use serde_json::{Value, json};

/// `a - b` in nanoseconds, signed (the 32.32 difference taken with wrap-around, then
/// read as two's complement, so `a` slightly before `b` gives a small negative number).
pub fn diff_ns(a: Timestamp, b: Timestamp) -> i64 {
    let d = a.0.wrapping_sub(b.0) as i64;
    // 2^-32 s units to ns: d * 1e9 / 2^32, in i128 so no intermediate can overflow.
    ((i128::from(d) * 1_000_000_000) >> 32) as i64
}

/// min, median, p99, max of a sample (nearest-rank percentiles), in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub min: i64,
    pub p50: i64,
    pub p99: i64,
    pub max: i64,
}

impl Summary {
    /// Sorts `v` in place and summarises it; all zeros when empty.
    pub fn of(v: &mut [i64]) -> Summary {
        v.sort_unstable();
        let pick = |q: f64| -> i64 {
            if v.is_empty() {
                return 0;
            }
            // Nearest rank: the smallest value with at least q of the sample at or below it.
            let rank = (q * v.len() as f64).ceil() as usize;
            let idx = rank.saturating_sub(1).min(v.len() - 1);
            v.get(idx).copied().unwrap_or(0)
        };
        Summary {
            n: v.len(),
            min: v.first().copied().unwrap_or(0),
            p50: pick(0.50),
            p99: pick(0.99),
            max: v.last().copied().unwrap_or(0),
        }
    }

    /// The summary in microseconds as JSON.
    pub fn to_json(self) -> Value {
        let us = |ns: i64| ns as f64 / 1000.0;
        json!({
            "n": self.n,
            "min_us": us(self.min),
            "p50_us": us(self.p50),
            "p99_us": us(self.p99),
            "max_us": us(self.max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::types::Num64;

    #[test]
    fn diff_ns_signed_and_exact() {
        let one_s = Num64(1 << 32);
        let t = Num64(100 << 32);
        assert_eq!(diff_ns(t.wrapping_add(one_s), t), 1_000_000_000);
        assert_eq!(diff_ns(t, t.wrapping_add(one_s)), -1_000_000_000);
        // 2^-32 s · 4295 ≈ 1000 ns (floor).
        assert_eq!(diff_ns(Num64(t.0 + 4295), t), 1000);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        let s = Summary::of(&mut v);
        assert_eq!(
            s,
            Summary {
                n: 100,
                min: 1,
                p50: 50,
                p99: 99,
                max: 100
            }
        );
        let mut one = [7];
        assert_eq!(Summary::of(&mut one).p99, 7);
        assert_eq!(Summary::of(&mut []), Summary::default());
    }
}
