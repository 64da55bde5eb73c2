//! Cost of the control-connection crypto: PBKDF2 at the reference's Count (paid per
//! authenticated connection, and by the server for unknown users too) and sealing /
//! opening a Request-Session with many slots.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use owamp::crypto::{ControlCipher, Role, SessionKeys, derive_key};

fn keys() -> SessionKeys {
    SessionKeys {
        aes: [1; 16],
        hmac: [2; 32],
    }
}

fn bench(c: &mut Criterion) {
    c.bench_function("derive_key count=2048", |b| {
        b.iter(|| derive_key(black_box(b"testpass"), black_box(&[0; 16]), 2048))
    });

    let pre = [0x11u8; 96];
    let slots = vec![0x22u8; 1000 * 16];
    c.bench_function("seal a 1000-slot Request-Session", |b| {
        let mut tx = ControlCipher::new(Role::Client, &keys(), &[3; 16], &[4; 16]);
        b.iter(|| tx.seal(black_box(&[&pre, &slots])))
    });

    c.bench_function("open+verify a 1000-slot Request-Session", |b| {
        b.iter_batched(
            || {
                let mut tx = ControlCipher::new(Role::Client, &keys(), &[3; 16], &[4; 16]);
                let wire = tx.seal(&[&pre, &slots]).unwrap_or_default();
                let rx = ControlCipher::new(Role::Server, &keys(), &[3; 16], &[4; 16]);
                (rx, wire)
            },
            |(mut rx, mut wire)| {
                let (head, rest) = wire.split_at_mut(96);
                let _ = rx.open(head);
                let (h1, rest) = rest.split_at_mut(16);
                let _ = rx.verify_hmac(&<[u8; 16]>::try_from(&*h1).unwrap_or_default());
                let (body, h2) = rest.split_at_mut(1000 * 16);
                let _ = rx.open(body);
                rx.verify_hmac(&<[u8; 16]>::try_from(&*h2).unwrap_or_default())
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
