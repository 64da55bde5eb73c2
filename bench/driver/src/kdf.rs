//! The cost of the PBKDF2 key derivation an authenticated or encrypted control
//! connection pays once on each side (protocol.md §1: Count 2048), to compare setup times with.

use owamp::crypto::derive_key;
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

/// Mean wall time of `reps` derivations at `count` iterations.
pub fn measure(count: u32, reps: u32) -> Value {
    let reps = reps.max(1);
    let salt = [0u8; 16];
    let t0 = Instant::now();
    for _ in 0..reps {
        black_box(derive_key(black_box(b"testpass"), &salt, count));
    }
    let per = t0.elapsed().as_secs_f64() / f64::from(reps);
    json!({ "kdf_count": count, "reps": reps, "per_call_us": per * 1e6 })
}
