//! owstats / owping's report on a hostile `.owp` file (protocol.md §8.3–8.5): the file is read
//! with `OwpFile`, then `Stats::compute` and every report format run on what it holds,
//! under options (unit, bucket width, sample range, record limit, percentiles) taken
//! from the input.
//!
//! Input: 16 option octets, then the file.
//!
//! Invariants: no panic and no unbounded work or allocation from header values (rate,
//! Timeout, counts); invalid options are typed errors; the counts add up (lost ≤ sent,
//! histogram count = TTL count ≤ sent − lost); the JSON document serialises.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use owamp::owp::OwpFile;
use owamp::report::{
    Endpoints, SummaryOptions, Unit, human_summary, json_summary, machine_summary, per_packet_line,
    per_packet_section, raw_line,
};
use owamp::stats::{Stats, StatsOptions};
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let (opt_bytes, file) = owampd_fuzz::take_array::<16>(data);
    let mut u = Unstructured::new(&opt_bytes);
    let Ok(opts) = options(&mut u) else { return };
    let Ok(mut owp) = OwpFile::from_reader(Cursor::new(file), "fuzz.owp") else {
        return;
    };
    let header = owp.header().clone();
    let Some(session) = header.session.clone() else {
        return;
    };
    let Ok(records) = owp.read_records() else {
        return;
    };
    let Ok(skips) = owp.skips() else { return };
    let (stats_opts, unit, percentiles) = opts;

    let stats = match Stats::compute(&session, records.iter().copied(), &skips, &stats_opts, None) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(stats.first <= stats.last && stats.last <= stats.npackets);
    assert!(
        stats.lost <= stats.sent,
        "lost {} > sent {}",
        stats.lost,
        stats.sent
    );
    let firsts = stats.sent - stats.lost;
    let in_hist: u64 = stats.buckets.iter().map(|(_, c)| u64::from(*c)).sum();
    let in_ttl: u64 = stats.ttl_count.iter().map(|c| u64::from(*c)).sum();
    // Received first copies: in the histogram and the TTL table alike, and never more
    // than sent − lost (a duplicated lost record once counted twice in `sent`: fixed,
    // see stats_compute::a_duplicated_lost_record_counts_once).
    assert_eq!(in_hist, in_ttl, "histogram vs TTL count");
    assert!(
        in_hist <= u64::from(firsts),
        "histogram count {in_hist} > {firsts}"
    );
    assert!(
        u64::from(stats.received) >= in_hist,
        "received {} < first copies {in_hist}",
        stats.received
    );
    let loss = stats.loss_fraction();
    assert!(
        loss.is_nan() || (0.0..=1.0).contains(&loss),
        "loss fraction {loss}"
    );
    for p in &percentiles {
        let _ = stats.percentile(f64::from(*p) / 100.0);
    }
    let _ = (
        stats.median(),
        stats.jitter(),
        stats.ttl_range(),
        stats.reordering(),
    );

    let ends = Endpoints::numeric(&session);
    let summary = SummaryOptions {
        unit,
        percentiles: percentiles.clone(),
        ..SummaryOptions::default()
    };
    let _ = human_summary(&stats, &session, &ends, &summary);
    let _ = machine_summary(
        &stats,
        &session,
        header.finished,
        &ends,
        u.arbitrary().unwrap_or(false),
    );
    let json = json_summary(
        &stats,
        &session,
        header.finished,
        &ends,
        &percentiles,
        Some(&records),
    );
    assert!(!json.to_string().is_empty());
    let _ = per_packet_section(
        &session,
        &ends,
        records.iter(),
        &skips,
        stats.first,
        stats.last,
        unit,
        true,
    );
    for r in records.iter().take(64) {
        let _ = per_packet_line(r, unit, false);
        let _ = raw_line(r);
    }
});

type Options = (StatsOptions, Unit, Vec<f32>);

fn options(u: &mut Unstructured<'_>) -> arbitrary::Result<Options> {
    let unit = match u.arbitrary::<u8>()? % 4 {
        0 => Unit::Nanoseconds,
        1 => Unit::Microseconds,
        2 => Unit::Milliseconds,
        _ => Unit::Seconds,
    };
    let bucket_width = match u.arbitrary::<u8>()? % 8 {
        0 => 0.0,
        1 => -1.0,
        2 => f64::NAN,
        3 => f64::INFINITY,
        4 => 1e-300,
        5 => 1.0,
        _ => 0.0001,
    };
    let sel = u.arbitrary::<u8>()?;
    let first = u32::from(u.arbitrary::<u8>()?);
    let last = match sel % 4 {
        0 => None,
        1 => Some(u32::MAX),
        _ => Some(first + u32::from(u.arbitrary::<u8>()?)),
    };
    let record_limit = (sel & 4 != 0).then_some(u64::from(u.arbitrary::<u8>()?));
    let begin_record = if sel & 8 != 0 {
        u64::from(u.arbitrary::<u8>()?)
    } else {
        0
    };
    let percentiles = (0..u.arbitrary::<u8>()? % 4)
        .map(|_| f32::from(u.arbitrary::<u8>().unwrap_or(50)))
        .collect();
    Ok((
        StatsOptions {
            bucket_width,
            first,
            last,
            record_limit,
            begin_record,
        },
        unit,
        percentiles,
    ))
}
