//! The C printf conversions against glibc's own output (tests/data/cfmt_golden.txt,
//! produced by tests/data/cfmt_gen.c).

use owamp::report::cfmt;

#[test]
fn matches_glibc_printf() {
    let golden = include_str!("data/cfmt_golden.txt");
    let mut n = 0;
    for line in golden.lines() {
        let cols: Vec<&str> = line.split('|').collect();
        assert_eq!(cols.len(), 8, "bad golden line {line:?}");
        let x = f64::from_bits(u64::from_str_radix(cols[0], 16).unwrap());
        let ours = [
            cfmt::g6(x),
            cfmt::g(x, 3),
            cfmt::e(x, 6),
            cfmt::f(x, 6),
            cfmt::f(x, 3),
            cfmt::f(x, 1),
            cfmt::f_zero_pad(x, 3, 0),
        ];
        for (i, (o, c)) in ours.iter().zip(&cols[1..]).enumerate() {
            assert_eq!(o, c, "value {x:e} ({}) conversion #{i}", cols[0]);
        }
        n += 1;
    }
    assert!(n > 50);
}

#[test]
fn precision_zero_g_is_one_digit() {
    assert_eq!(cfmt::g(123.0, 0), "1e+02");
    assert_eq!(cfmt::g(0.5, 0), "0.5");
}
