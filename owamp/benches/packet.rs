//! Per-packet crypto cost (goal: < 1 µs each way in encrypted mode).

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use owamp::packet::{PacketFormat, TestKeys};
use owamp::{ErrorEstimate, Mode, Num64, Sid};

fn bench(c: &mut Criterion) {
    let keys = TestKeys::derive(Sid([7; 16]), &[0x20; 16], &[0x30; 32]);
    for mode in [Mode::Authenticated, Mode::Encrypted] {
        let mut fmt = PacketFormat::new(mode, Some(&keys), 0).unwrap();
        let mut buf = vec![0u8; fmt.len()];
        let mut seq = 0u32;
        c.bench_function(&format!("{mode}: prepare+stamp"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                fmt.prepare(seq, &mut buf).unwrap();
                fmt.stamp(&mut buf, Num64(0xdd12e5a1115e2e9a), ErrorEstimate::UNSYNC)
                    .unwrap();
                black_box(&buf);
            })
        });
        c.bench_function(&format!("{mode}: decode+verify"), |b| {
            b.iter(|| black_box(fmt.decode(black_box(&buf)).unwrap()))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
