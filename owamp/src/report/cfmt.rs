//! C `printf` conversions for doubles (`%g`, `%.Ng`, `%e`, `%.Nf`, `%0W.Nf`), checked
//! against glibc output in tests/report_cfmt.rs.

fn special(x: f64) -> Option<String> {
    if x.is_nan() {
        Some(if x.is_sign_negative() { "-nan" } else { "nan" }.to_string())
    } else if x.is_infinite() {
        Some(if x < 0.0 { "-inf" } else { "inf" }.to_string())
    } else {
        None
    }
}

/// `%.{prec}f`.
pub fn f(x: f64, prec: usize) -> String {
    special(x).unwrap_or_else(|| format!("{x:.prec$}"))
}

/// `%0{width}.{prec}f`.
pub fn f_zero_pad(x: f64, width: usize, prec: usize) -> String {
    special(x).unwrap_or_else(|| format!("{x:0width$.prec$}"))
}

/// Mantissa digits and decimal exponent of `x` rounded to `prec` fraction digits.
fn exp_parts(x: f64, prec: usize) -> (String, i32) {
    let s = format!("{x:.prec$e}");
    match s.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

fn exp_suffix(e: i32) -> String {
    format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.unsigned_abs())
}

/// `%.{prec}e`.
pub fn e(x: f64, prec: usize) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    let (m, ex) = exp_parts(x, prec);
    m + &exp_suffix(ex)
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `%.{prec}g` (C99 7.21.6.1: style e if X < −4 or X ≥ P, else f with P−1−X
/// digits; trailing zeros removed).
pub fn g(x: f64, prec: usize) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    let p = prec.max(1);
    let (m, ex) = exp_parts(x, p - 1);
    if ex < -4 || ex >= p as i32 {
        strip_zeros(&m).to_string() + &exp_suffix(ex)
    } else {
        let digits = (p as i32 - 1 - ex).max(0) as usize;
        strip_zeros(&f(x, digits)).to_string()
    }
}

/// `%g`.
pub fn g6(x: f64) -> String {
    g(x, 6)
}
