//! Schedule generation cost (goal: 1,000,000 deviates in < 0.2 s).

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use owamp::schedule::{UniformGenerator, exp_deviate};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("schedule");
    group.sample_size(10);
    group.bench_function("1e6 exponential deviates", |b| {
        b.iter(|| {
            let mut g = UniformGenerator::new(black_box(&[0x28; 16]));
            let mut sum = 0u64;
            for _ in 0..1_000_000 {
                sum = sum.wrapping_add(exp_deviate(&mut g).0);
            }
            black_box(sum)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
