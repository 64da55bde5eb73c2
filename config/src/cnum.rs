//! Numbers read the way C's `strtoul(3)` and `strtod(3)` read them, since that is how
//! the reference reads every number of `owamp-server.conf` (protocol.md §7.11): the longest
//! prefix that is a number is taken and the rest of the token is ignored (`30s` is 30,
//! `0x10` in base 10 is 0), a `-` in front of an unsigned number wraps around, and only
//! a token with no number at its start, or one out of the C type's range (`ERANGE`), is
//! refused. The caller reports what was ignored.

/// Why a token is not a number at all, as the reference refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CNumError {
    /// No digits at the start (`end == val` in the reference).
    NoNumber,
    /// `errno == ERANGE`: beyond `unsigned long` (64 bits), or a float that overflows
    /// or underflows a `double`.
    OutOfRange,
}

/// A number read from the start of a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CNum<T> {
    pub value: T,
    /// Bytes of the token that made up the number; the rest was ignored.
    pub used: usize,
    /// The number written was not the value kept: a negative one wrapped around, or
    /// one above `u32::MAX` cut to its low 32 bits (the reference stores `strtoul`'s
    /// result in a `uint32_t`).
    pub wrapped: bool,
}

fn leading_space(t: &str) -> usize {
    t.len() - t.trim_start_matches(crate::text::is_c_space).len()
}

/// `strtoul(text, &end, 10)` stored in a `uint32_t`, as the reference reads `dieby`,
/// `controltimeout`, `pbkdf2_count` and `maxcontrolsessions`.
pub(crate) fn strtoul_u32(text: &str) -> Result<CNum<u32>, CNumError> {
    let b = text.as_bytes();
    let mut i = leading_space(text);
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits_start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        let next = magnitude
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(d - b'0')));
        match next {
            Some(m) => magnitude = m,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start {
        return Err(CNumError::NoNumber);
    }
    if overflow {
        return Err(CNumError::OutOfRange);
    }
    let full = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    let value = full as u32;
    Ok(CNum {
        value,
        used: i,
        wrapped: u64::from(value) != magnitude,
    })
}

/// `strtod(text, &end)`, as the reference reads `diskfudge` and `enddelay`: decimal
/// (`2.5`, `.5`, `1e3`), hexadecimal (`0x1p3`), `inf`/`infinity` and `nan[(…)]`, any
/// case, with an optional sign.
pub(crate) fn strtod(text: &str) -> Result<CNum<f64>, CNumError> {
    let start = leading_space(text);
    let rest = text.get(start..).unwrap_or("");
    let (negative, body, sign_len) = match rest.as_bytes().first() {
        Some(b'-') => (true, rest.get(1..).unwrap_or(""), 1),
        Some(b'+') => (false, rest.get(1..).unwrap_or(""), 1),
        _ => (false, rest, 0),
    };
    let (magnitude, len) = match special(body) {
        Some(v) => v,
        None => hexadecimal(body).unwrap_or_else(|| decimal(body))?,
    };
    Ok(CNum {
        value: if negative { -magnitude } else { magnitude },
        used: start + sign_len + len,
        wrapped: false,
    })
}

/// `inf`, `infinity`, `nan`, `nan(chars)`.
fn special(body: &str) -> Option<(f64, usize)> {
    let lower = body.get(..body.len().min(8))?.to_ascii_lowercase();
    if lower.starts_with("infinity") {
        return Some((f64::INFINITY, 8));
    }
    if lower.starts_with("inf") {
        return Some((f64::INFINITY, 3));
    }
    if lower.starts_with("nan") {
        let after = body.get(3..).unwrap_or("");
        if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
            && inner
                .get(..close)
                .is_some_and(|s| s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
        {
            return Some((f64::NAN, 3 + 1 + close + 1));
        }
        return Some((f64::NAN, 3));
    }
    None
}

/// The length of a run of bytes satisfying `f` from `from`.
fn run(b: &[u8], from: usize, f: impl Fn(u8) -> bool) -> usize {
    b.get(from..)
        .map_or(0, |s| s.iter().take_while(|c| f(**c)).count())
}

/// An exponent (`e12`, `P-3`) at `at`, taken only when digits follow, as C does.
fn exponent(b: &[u8], at: usize, marks: [u8; 2]) -> Option<(i64, usize)> {
    if !b.get(at).is_some_and(|c| marks.contains(c)) {
        return None;
    }
    let mut i = at + 1;
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let n = run(b, i, |c| c.is_ascii_digit());
    if n == 0 {
        return None;
    }
    // Saturating: an exponent of a million digits is just "very large".
    let digits = std::str::from_utf8(b.get(i..i + n)?).ok()?;
    let e = digits.parse::<i64>().unwrap_or(i64::MAX / 2);
    Some((if negative { -e } else { e }, i + n - at))
}

fn decimal(body: &str) -> Result<(f64, usize), CNumError> {
    let b = body.as_bytes();
    let int = run(b, 0, |c| c.is_ascii_digit());
    let mut len = int;
    let mut frac = 0;
    if b.get(len) == Some(&b'.') {
        frac = run(b, len + 1, |c| c.is_ascii_digit());
        if int > 0 || frac > 0 {
            len += 1 + frac;
        }
    }
    if int == 0 && frac == 0 {
        return Err(CNumError::NoNumber);
    }
    if let Some((_, elen)) = exponent(b, len, [b'e', b'E']) {
        len += elen;
    }
    let text = body.get(..len).ok_or(CNumError::NoNumber)?;
    let value: f64 = text.parse().map_err(|_| CNumError::NoNumber)?;
    let nonzero = text
        .bytes()
        .take_while(|c| !matches!(c, b'e' | b'E'))
        .any(|c| matches!(c, b'1'..=b'9'));
    range_checked(value, nonzero).map(|v| (v, len))
}

fn hexadecimal(body: &str) -> Option<Result<(f64, usize), CNumError>> {
    let b = body.as_bytes();
    if !(b.first() == Some(&b'0') && matches!(b.get(1), Some(b'x' | b'X'))) {
        return None;
    }
    let int = run(b, 2, |c| c.is_ascii_hexdigit());
    let mut len = 2 + int;
    let mut frac = 0;
    if b.get(len) == Some(&b'.') {
        frac = run(b, len + 1, |c| c.is_ascii_hexdigit());
    }
    if int == 0 && frac == 0 {
        // "0x" with no hex digit: C reads the "0" and stops at the "x".
        return None;
    }
    if b.get(len) == Some(&b'.') {
        len += 1 + frac;
    }
    let mut mantissa = 0f64;
    let mut scale = 0i64;
    let mut nonzero = false;
    for (k, c) in b.get(2..len)?.iter().enumerate() {
        if *c == b'.' {
            continue;
        }
        let d = char::from(*c).to_digit(16)?;
        nonzero |= d != 0;
        mantissa = mantissa * 16.0 + f64::from(d);
        if k >= int {
            scale -= 4;
        }
    }
    if let Some((e, elen)) = exponent(b, len, [b'p', b'P']) {
        scale = scale.saturating_add(e);
        len += elen;
    }
    let exp = i32::try_from(scale.clamp(-100_000, 100_000)).unwrap_or(0);
    let value = mantissa * 2f64.powi(exp);
    Some(range_checked(value, nonzero).map(|v| (v, len)))
}

/// glibc sets `ERANGE` when a finite number overflows to infinity or a non-zero one
/// underflows below the normal range.
fn range_checked(value: f64, nonzero: bool) -> Result<f64, CNumError> {
    if value.is_infinite() || (nonzero && (value == 0.0 || value.is_subnormal())) {
        return Err(CNumError::OutOfRange);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ul(t: &str) -> Result<(u32, usize, bool), CNumError> {
        strtoul_u32(t).map(|n| (n.value, n.used, n.wrapped))
    }

    #[test]
    fn strtoul_reads_the_leading_decimal_number() {
        assert_eq!(ul("30"), Ok((30, 2, false)));
        assert_eq!(ul("30s"), Ok((30, 2, false)));
        assert_eq!(ul("0x10"), Ok((0, 1, false)));
        assert_eq!(ul("+5"), Ok((5, 2, false)));
        assert_eq!(ul("007"), Ok((7, 3, false)));
        assert_eq!(ul("4294967295"), Ok((u32::MAX, 10, false)));
    }

    #[test]
    fn strtoul_wraps_negatives_and_keeps_32_bits() {
        assert_eq!(ul("-1"), Ok((u32::MAX, 2, true)));
        assert_eq!(ul("-0"), Ok((0, 2, false)));
        assert_eq!(ul("4294967296"), Ok((0, 10, true)));
        assert_eq!(ul("4294967301"), Ok((5, 10, true)));
        assert_eq!(ul("18446744073709551615"), Ok((u32::MAX, 20, true)));
    }

    #[test]
    fn strtoul_refusals() {
        assert_eq!(ul(""), Err(CNumError::NoNumber));
        assert_eq!(ul("x"), Err(CNumError::NoNumber));
        assert_eq!(ul("-"), Err(CNumError::NoNumber));
        assert_eq!(ul("+-1"), Err(CNumError::NoNumber));
        assert_eq!(ul("18446744073709551616"), Err(CNumError::OutOfRange));
        assert_eq!(ul("-18446744073709551616"), Err(CNumError::OutOfRange));
    }

    fn d(t: &str) -> Result<(f64, usize), CNumError> {
        strtod(t).map(|n| (n.value, n.used))
    }

    #[test]
    fn strtod_reads_the_leading_number() {
        assert_eq!(d("2.5"), Ok((2.5, 3)));
        assert_eq!(d("2.5x"), Ok((2.5, 3)));
        assert_eq!(d("1s"), Ok((1.0, 1)));
        assert_eq!(d(".5"), Ok((0.5, 2)));
        assert_eq!(d("3."), Ok((3.0, 2)));
        assert_eq!(d("1e3"), Ok((1000.0, 3)));
        assert_eq!(d("1e"), Ok((1.0, 1)));
        assert_eq!(d("1e+"), Ok((1.0, 1)));
        assert_eq!(d("-0.25"), Ok((-0.25, 5)));
        assert_eq!(d("0x2"), Ok((2.0, 3)));
        assert_eq!(d("0x1.8p1"), Ok((3.0, 7)));
        assert_eq!(d("0xg"), Ok((0.0, 1)));
        assert_eq!(d("inf"), Ok((f64::INFINITY, 3)));
        assert_eq!(d("-Infinity"), Ok((f64::NEG_INFINITY, 9)));
        let nan = strtod("nan(x1)z").unwrap_or_else(|e| panic!("{e:?}"));
        assert!(nan.value.is_nan());
        assert_eq!(nan.used, 7);
    }

    #[test]
    fn strtod_refusals() {
        assert_eq!(d(""), Err(CNumError::NoNumber));
        assert_eq!(d("."), Err(CNumError::NoNumber));
        assert_eq!(d("x1"), Err(CNumError::NoNumber));
        assert_eq!(d("1e400"), Err(CNumError::OutOfRange));
        assert_eq!(d("1e-400"), Err(CNumError::OutOfRange));
        assert_eq!(d("0x1p99999"), Err(CNumError::OutOfRange));
        assert_eq!(d("0e-400"), Ok((0.0, 6)));
    }
}
