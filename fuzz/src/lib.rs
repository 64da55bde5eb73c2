//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Each target is a `libfuzzer-sys` binary; this library only holds the small pieces
//! several targets need (turning fuzz bytes into text or fixed arrays). Panicking here
//! is fine: a panic in a fuzz target is the signal that an invariant broke.
#![forbid(unsafe_code)]

pub mod control;

use std::borrow::Cow;

/// The input as text: as is when it is UTF-8 (so the fuzzer can steer every character),
/// else with invalid sequences replaced, the way a binary reading a file with
/// `from_utf8_lossy` would see it.
pub fn text_of(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The first `N` bytes of `data`, zero-filled when it is shorter, and the rest.
pub fn take_array<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut a = [0u8; N];
    let n = data.len().min(N);
    a[..n].copy_from_slice(&data[..n]);
    (a, &data[n..])
}
