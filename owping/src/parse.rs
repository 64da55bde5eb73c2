//! Parsers for option values whose syntax comes from the reference's C code (protocol.md §8.1):
//! numbers as `strtoul`/`strtod` read them, the `-i` slot list, the `-D` DSCP names and
//! the `-a` percentile list.

use owamp::{Num64, Slot, SlotKind};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("invalid value {text:?} for {opt}: {expected}")]
    Value {
        opt: &'static str,
        text: String,
        expected: &'static str,
    },
    #[error("invalid numeric value ({text}) for schedule")]
    SlotNumber { text: String },
    #[error("invalid slot type ({suffix}) for schedule")]
    SlotType { suffix: String },
    #[error("empty element in the schedule list {text:?}")]
    SlotEmpty { text: String },
    #[error("invalid DSCP value (-D): {text:?}")]
    Dscp { text: String },
    #[error("invalid numeric value ({text}) for percentile: expected 0..100")]
    Percentile { text: String },
}

/// Length of the longest prefix of `s` that C `strtod` would consume as a decimal
/// number (sign, digits, optional fraction, optional exponent with at least one digit).
/// 0 when there is no number. Hex floats, `inf` and `nan` are not accepted.
pub fn strtod_prefix(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        let f = i + 1;
        let mut j = f;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        digits += j - f;
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return 0;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let e = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > e {
            i = j;
        }
    }
    i
}

/// A whole-string `strtod` (leading blanks allowed, nothing may follow).
pub fn parse_f64(opt: &'static str, text: &str, expected: &'static str) -> Result<f64, ParseError> {
    let t = text.trim_start();
    let n = strtod_prefix(t);
    let err = || ParseError::Value {
        opt,
        text: text.to_string(),
        expected,
    };
    if n == 0 || n != t.len() {
        return Err(err());
    }
    t.parse::<f64>().map_err(|_| err())
}

/// A non-negative float (`-L`, `-z`, `-E`).
pub fn parse_nonneg_f64(opt: &'static str, text: &str) -> Result<f64, ParseError> {
    let v = parse_f64(opt, text, "positive float expected")?;
    if v < 0.0 || !v.is_finite() {
        return Err(ParseError::Value {
            opt,
            text: text.to_string(),
            expected: "positive float expected",
        });
    }
    Ok(v)
}

/// A decimal `u32` (`-c`, `-s`, `-N`, `-v<N>`); unlike `strtoul` a sign, garbage or an
/// overflow is an error rather than a wrapped value.
pub fn parse_u32(opt: &'static str, text: &str) -> Result<u32, ParseError> {
    let t = text.trim_start();
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::Value {
            opt,
            text: text.to_string(),
            expected: "positive integer expected",
        });
    }
    t.parse::<u32>().map_err(|_| ParseError::Value {
        opt,
        text: text.to_string(),
        expected: "integer too large",
    })
}

/// The `-i` schedule: a comma list of `<float>[e|f]` (owping.c `parse_slots`): `e` (or
/// no suffix) is an exponential slot with that mean, `f` a fixed delay; the suffix is
/// case-insensitive and at most one character. Values go through the reference's
/// double→Num64 truncation, so `-i 0.1` gives 0x19999999 (protocol.md §8.1).
pub fn parse_slots(text: &str) -> Result<Vec<Slot>, ParseError> {
    let mut out = Vec::new();
    for part in text.split(',') {
        if part.is_empty() {
            return Err(ParseError::SlotEmpty {
                text: text.to_string(),
            });
        }
        let lead = part.len() - part.trim_start().len();
        let body = part.get(lead..).unwrap_or("");
        let n = strtod_prefix(body);
        if n == 0 {
            return Err(ParseError::SlotNumber {
                text: part.to_string(),
            });
        }
        let (num, suffix) = body.split_at(n);
        let value: f64 = num.parse().map_err(|_| ParseError::SlotNumber {
            text: part.to_string(),
        })?;
        let kind = match suffix {
            "" | "e" | "E" => SlotKind::Exponential,
            "f" | "F" => SlotKind::Fixed,
            _ => {
                return Err(ParseError::SlotType {
                    suffix: suffix.to_string(),
                });
            }
        };
        out.push(Slot {
            kind,
            param: Num64::from_secs_f64(value),
        });
    }
    Ok(out)
}

/// owping's default schedule: one exponential slot whose mean is the C `float` 0.1
/// widened to double, i.e. Num64 0x199999A0 (protocol.md §8.1, §10).
pub fn default_slots() -> Vec<Slot> {
    vec![Slot {
        kind: SlotKind::Exponential,
        param: Num64::from_secs_f64(f64::from(0.1f32)),
    }]
}

/// `strtoul(text, .., 0)` of the whole string: decimal, `0x` hex or `0` octal.
fn c_ulong_auto(t: &str) -> Option<u64> {
    if t.is_empty() {
        // strtoul("") consumes nothing and leaves *endptr == '\0': the reference
        // takes that as DSCP 0.
        return Some(0);
    }
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (h, 16)
    } else if t.len() > 1 && t.starts_with('0') {
        (&t[1..], 8)
    } else {
        (t, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The `-D` value as a 6-bit DSCP (owping.c `parse_typeP`, RFC 4594 names): a number
/// (decimal, 0x hex, 0 octal) below 64, or `none`/`default`/`df`/`ef`/`cs0`..`cs7`
/// (case-insensitive) or `AF11`..`AF43` — the `A` must be upper case, a quirk of the
/// reference's misplaced `toupper` (protocol.md §10). Trailing blanks are allowed.
pub fn parse_dscp(text: &str) -> Result<u8, ParseError> {
    let err = || ParseError::Dscp {
        text: text.to_string(),
    };
    let t = text.trim_start();
    if let Some(v) = c_ulong_auto(t) {
        return if v <= 0x3F { Ok(v as u8) } else { Err(err()) };
    }
    let t = t.trim_end();
    let lower = t.to_ascii_lowercase();
    let b = t.as_bytes();
    let dscp = match lower.as_str() {
        "none" | "default" | "df" => 0,
        "ef" => 0x2E,
        _ if lower.len() == 3 && lower.starts_with("cs") => match b.get(2) {
            Some(d @ b'0'..=b'7') => (d - b'0') << 3,
            _ => return Err(err()),
        },
        _ if b.len() == 4 && b.first() == Some(&b'A') && lower.get(1..2) == Some("f") => {
            let class = match b.get(2) {
                Some(d @ b'1'..=b'4') => d - b'0',
                _ => return Err(err()),
            };
            let drop = match b.get(3) {
                Some(d @ b'1'..=b'3') => d - b'0',
                _ => return Err(err()),
            };
            (class << 3) | (drop << 1)
        }
        _ => return Err(err()),
    };
    Ok(dscp)
}

/// The `-a` list: comma-separated percentiles in 0..100 (owping.c `parse_percentile`).
/// Unlike the reference, trailing garbage after a number is refused.
pub fn parse_percentiles(text: &str) -> Result<Vec<f64>, ParseError> {
    text.split(',')
        .map(|p| {
            let v = parse_f64("-a", p, "a number").map_err(|_| ParseError::Percentile {
                text: p.to_string(),
            })?;
            if !(0.0..=100.0).contains(&v) {
                return Err(ParseError::Percentile {
                    text: p.to_string(),
                });
            }
            Ok(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_prefixes() {
        assert_eq!(strtod_prefix("0.1e"), 3);
        assert_eq!(strtod_prefix("1e-3f"), 4);
        assert_eq!(strtod_prefix("1e5"), 3);
        assert_eq!(strtod_prefix(".5f"), 2);
        assert_eq!(strtod_prefix("."), 0);
        assert_eq!(strtod_prefix("-2."), 3);
        assert_eq!(strtod_prefix("x"), 0);
    }

    #[test]
    fn default_mean_is_the_float_point_one() {
        assert_eq!(default_slots()[0].param, Num64(0x1999_99A0));
        assert_eq!(parse_slots("0.1").unwrap()[0].param, Num64(0x1999_9999));
    }
}
