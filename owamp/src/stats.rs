//! Session statistics exactly as the reference's `OWPStatsParse` computes them (spec
//! §8.3–8.4): sent, lost, duplicates, delay min/max, the delay histogram and its
//! percentiles, maximum error, synchronisation, TTLs and j-reordering.
//!
//! Reference semantics kept on purpose:
//! - delay = `double(recv) − double(send)` (each Num64 converted to seconds first, so
//!   the result carries the ~1 µs rounding of a 2^32-second double), min/max include
//!   duplicates, and are "undefined" while they stay at ±`double(Timeout + 2^-32)`;
//! - the histogram (bucket = `ceil(d/width)`, `floor` when negative) counts first
//!   copies only; a percentile is the first sorted bucket whose cumulative count
//!   reaches `alpha × sent`, reported as `bucket × width`;
//! - sent counts every distinct seqno seen (received or lost record), outside skip
//!   ranges; a lost record's *receive* error estimate feeds sync and max error;
//! - j-reordering looks back over at most `max(⌊rate·Timeout·3.5⌋, 10)` received
//!   records (duplicates included), as the reference's ring buffer does.
//!
//! Departure: the reference fails when a record refers to a seqno it already flushed
//! from its loss window (a duplicate arriving more than Timeout late); we keep
//! counting it as a duplicate.

use crate::owp::SessionHeader;
use crate::types::{ErrorEstimate, Num64, PacketRecord, SkipRange, Timestamp};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Why statistics could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("invalid sample range [{first},{last}) for a session of {npackets} packets")]
    InvalidRange {
        first: u32,
        last: u32,
        npackets: u32,
    },
    #[error("invalid bucket width {width}")]
    InvalidBucketWidth { width: f64 },
    #[error("seq {seq}: lost-packet record for a packet that was received")]
    UnexpectedLost { seq: u32 },
    #[error("seq {seq}: received record for a packet recorded as lost")]
    ReceivedAfterLost { seq: u32 },
}

/// Which packets to summarise and how.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatsOptions {
    /// Histogram bucket width in seconds (owping `-b`, default 0.0001).
    pub bucket_width: f64,
    /// First seqno of the sample (owping `-N` sub-sessions).
    pub first: u32,
    /// One past the last seqno; `None` (or `u32::MAX`) means Number of Packets.
    pub last: Option<u32>,
    /// Consider only the first N records of the file (the reference's `rec_limit`,
    /// set by owping `-vN`); it limits the summary too, not just the printed lines.
    pub record_limit: Option<u64>,
    /// Index of the first file record to look at. owping `-N` starts each sub-session
    /// at the previous one's [`Stats::next_record`] (the reference's `next_oset`), so a
    /// record reordered across the boundary is not counted in the later sample.
    pub begin_record: u64,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            bucket_width: 0.0001,
            first: 0,
            last: None,
            record_limit: None,
            begin_record: 0,
        }
    }
}

/// Seconds in an Error Estimate as the reference computes it: `(mult << scale)` as a
/// Num64, then to double.
pub fn error_secs(e: ErrorEstimate) -> f64 {
    num64_to_f64(Num64((e.multiplier as u64) << (e.scale & 0x3F)))
}

/// `OWPNum64ToDouble`: the u64 rounded to a double, then divided by 2^32.
pub fn num64_to_f64(n: Num64) -> f64 {
    n.0 as f64 / 4_294_967_296.0
}

/// `OWPDelay`: receive time minus send time, each converted to a double first.
pub fn delay_secs(rec: &PacketRecord) -> f64 {
    num64_to_f64(rec.recv_ts) - num64_to_f64(rec.send_ts)
}

/// A computed summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub first: u32,
    pub last: u32,
    pub npackets: u32,
    pub sent: u32,
    pub lost: u32,
    pub dups: u32,
    /// Smallest delay seen (seconds), including duplicates; see [`Stats::min_delay`].
    pub min_delay_raw: f64,
    pub max_delay_raw: f64,
    /// `double(Timeout + 1)`, the reference's "infinite" delay.
    pub inf_delay: f64,
    /// False if any considered record had S=0.
    pub sync: bool,
    /// Largest send+receive error (seconds).
    pub max_err: f64,
    pub bucket_width: f64,
    /// Histogram of first copies: (bucket index, count), sorted by index.
    pub buckets: Vec<(i32, u32)>,
    /// The bucket indices in the order each was first filled (records in file order),
    /// which decides the reference's `-M` bucket order (see [`Stats::buckets_in_hash_order`]).
    pub bucket_first_seen: Vec<i32>,
    /// Received first copies per TTL value.
    pub ttl_count: Vec<u32>,
    /// `reorder[j-1]` = how often a packet arrived after j larger seqnos.
    pub reorder: Vec<u32>,
    /// Size of the reordering look-back window.
    pub reorder_window: usize,
    /// Received records considered (duplicates included): the j-reordering denominator.
    pub received: u32,
    /// File index of the first record (from `begin_record` on) whose seqno is ≥ `last`;
    /// 0 when there is none (the reference then restarts from the first record).
    pub next_record: u64,
    /// Scheduled send time of packet `first` and of packet `last − 1`.
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
}

#[derive(Default, Clone, Copy)]
struct Node {
    seen: u32,
    lost: bool,
}

impl Stats {
    /// Compute the summary of `records` (in file order) for the sample in `opts`.
    /// `sched` gives a seqno's scheduled send time (from the session's schedule), as
    /// the reference computes "first"/"last". When absent, the send timestamps of the
    /// records for seqnos `first` and `last − 1` are used (a lost record's send time is
    /// its scheduled time), or failing those the earliest/latest send time in the
    /// sample: an approximation, so owping should pass the schedule.
    pub fn compute<I>(
        session: &SessionHeader,
        records: I,
        skips: &[SkipRange],
        opts: &StatsOptions,
        sched: Option<&mut dyn FnMut(u32) -> Timestamp>,
    ) -> Result<Stats, StatsError>
    where
        I: IntoIterator<Item = PacketRecord>,
    {
        let npackets = session.npackets();
        let first = opts.first;
        let last = match opts.last {
            None | Some(u32::MAX) => npackets,
            Some(l) => l,
        };
        if first > last || last > npackets {
            return Err(StatsError::InvalidRange {
                first,
                last,
                npackets,
            });
        }
        let width = opts.bucket_width;
        if !(width > 0.0 && width.is_finite()) {
            return Err(StatsError::InvalidBucketWidth { width });
        }
        let timeout = session.timeout();
        let inf_delay = num64_to_f64(Num64(timeout.0.wrapping_add(1)));
        let window = reorder_window(session);

        let mut nodes: HashMap<u32, Node> = HashMap::new();
        let mut sent = 0u32;
        let mut sync = true;
        let mut max_err = 0.0f64;
        let mut min_d = inf_delay;
        let mut max_d = -inf_delay;
        let mut hist: BTreeMap<i32, u32> = BTreeMap::new();
        let mut bucket_first_seen: Vec<i32> = Vec::new();
        let mut ttl = vec![0u32; 256];
        let mut recent: VecDeque<u32> = VecDeque::new();
        let mut reorder: Vec<u32> = Vec::new();
        let mut received = 0u32;
        let mut first_send: Option<Timestamp> = None;
        let mut last_send: Option<Timestamp> = None;
        let mut exact_first: Option<Timestamp> = None;
        let mut exact_last: Option<Timestamp> = None;

        let limit = opts
            .record_limit
            .filter(|&n| n > 0)
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let begin = usize::try_from(opts.begin_record).unwrap_or(usize::MAX);
        let mut next_record: Option<u64> = None;
        let skipped = SkipSet::new(skips);
        for (i, rec) in records.into_iter().skip(begin).take(limit).enumerate() {
            if next_record.is_none() && rec.seq >= last {
                next_record = Some(opts.begin_record.saturating_add(i as u64));
            }
            if rec.seq < first || rec.seq >= last {
                continue;
            }
            // Fallback times: the exact seqno if present, else the earliest/latest
            // send time seen in the sample.
            if rec.seq == first {
                exact_first.get_or_insert(rec.send_ts);
            }
            if last > 0 && rec.seq == last - 1 {
                exact_last.get_or_insert(rec.send_ts);
            }
            first_send = Some(first_send.map_or(rec.send_ts, |t: Timestamp| t.min(rec.send_ts)));
            last_send = Some(last_send.map_or(rec.send_ts, |t: Timestamp| t.max(rec.send_ts)));
            if skipped.contains(rec.seq) {
                continue;
            }
            let node = nodes.entry(rec.seq).or_default();
            if rec.is_lost() {
                if node.seen > 0 {
                    return Err(StatsError::UnexpectedLost { seq: rec.seq });
                }
                if node.lost {
                    // A second lost record for the same seqno (only a damaged or
                    // hostile file has one): sent counts distinct seqnos (protocol.md §8.3).
                    continue;
                }
                node.lost = true;
                sent = sent.saturating_add(1);
                if !rec.recv_err.synchronized {
                    sync = false;
                }
                max_err = max_err.max(error_secs(rec.recv_err));
                continue;
            }
            if node.lost {
                return Err(StatsError::ReceivedAfterLost { seq: rec.seq });
            }
            if node.seen == 0 {
                sent = sent.saturating_add(1);
            }
            node.seen = node.seen.saturating_add(1);
            let is_dup = node.seen > 1;

            // j-reordering (draft-shalunov-reordering-definition-02): count the run of
            // immediately preceding received seqnos that are larger than this one.
            for (i, prev) in recent.iter().rev().enumerate() {
                if rec.seq < *prev {
                    if reorder.len() <= i {
                        reorder.resize(i + 1, 0);
                    }
                    reorder[i] = reorder[i].saturating_add(1);
                } else {
                    break;
                }
            }
            if recent.len() == window {
                recent.pop_front();
            }
            recent.push_back(rec.seq);
            received = received.saturating_add(1);

            if !rec.send_err.synchronized || !rec.recv_err.synchronized {
                sync = false;
            }
            let d = delay_secs(&rec);
            max_err = max_err.max(error_secs(rec.send_err) + error_secs(rec.recv_err));
            min_d = min_d.min(d);
            max_d = max_d.max(d);
            if is_dup {
                continue;
            }
            let q = d / width;
            let b = if q < 0.0 { q.floor() } else { q.ceil() } as i32;
            let count = hist.entry(b).or_insert(0);
            if *count == 0 {
                bucket_first_seen.push(b);
            }
            *count += 1;
            ttl[rec.ttl as usize] += 1;
        }

        let lost = nodes.values().filter(|n| n.lost).count() as u32;
        let dups = nodes
            .values()
            .map(|n| n.seen.saturating_sub(1))
            .fold(0u32, |a, b| a.saturating_add(b));
        let (start_time, end_time) = match sched {
            Some(f) if last > first => (Some(f(first)), Some(f(last - 1))),
            _ => (exact_first.or(first_send), exact_last.or(last_send)),
        };
        Ok(Stats {
            first,
            last,
            npackets,
            sent,
            lost,
            dups,
            min_delay_raw: min_d,
            max_delay_raw: max_d,
            inf_delay,
            sync,
            max_err,
            bucket_width: width,
            buckets: hist.into_iter().collect(),
            bucket_first_seen,
            ttl_count: ttl,
            reorder,
            reorder_window: window,
            received,
            next_record: next_record.unwrap_or(0),
            start_time,
            end_time,
        })
    }

    /// The histogram in the order the reference's machine summary prints it (protocol.md §8.4
    /// "hash iteration order"): stats.c keeps the buckets in an I2util hash table
    /// (table.c) and prints them with `I2HashIterate`. That table has a fixed number of
    /// slots, the largest of its primes (31, 67, …, 1021, 2053, …) not above
    /// `clamp(trunc(Timeout_raw / width), 10, 2048)` (31 at least), where Timeout_raw is
    /// the Num64 integer as stats.c divides it; a key's slot is the sum of the four bytes
    /// of the `int` bucket index modulo that size; iteration walks the slots in order
    /// and, within a slot, the newest insertion first. So indices 0..=255 come out
    /// sorted, and e.g. bucket 300 (bytes 0x01 0x2C, sum 45) between 44 and 46.
    pub fn buckets_in_hash_order(&self, timeout: Num64) -> Vec<(i32, u32)> {
        const PRIMES: [u64; 12] = [
            31, 67, 127, 251, 509, 1021, 2053, 4093, 8191, 16381, 32771, 65521,
        ];
        let d = timeout.0 as f64 / self.bucket_width;
        let hint: u64 = if d > f64::from(0x7fff_ffff_u32) {
            0x7fff_ffff
        } else {
            d as u64 // C's conversion to long truncates (d ≥ 0 here)
        }
        .clamp(10, 2048);
        let size = PRIMES
            .iter()
            .rev()
            .find(|&&p| p <= hint)
            .copied()
            .unwrap_or(PRIMES[0]);
        let slot =
            |b: i32| -> u64 { b.to_ne_bytes().iter().map(|&x| u64::from(x)).sum::<u64>() % size };
        let count = |b: i32| -> u32 {
            self.buckets
                .binary_search_by_key(&b, |&(k, _)| k)
                .ok()
                .and_then(|i| self.buckets.get(i))
                .map_or(0, |&(_, c)| c)
        };
        // Newest insertion first within a slot: walk the insertion order backwards,
        // then sort stably by slot.
        let mut order: Vec<i32> = self.bucket_first_seen.iter().rev().copied().collect();
        order.sort_by_key(|&b| slot(b));
        order.into_iter().map(|b| (b, count(b))).collect()
    }

    /// Minimum delay, or None while undefined (no packet, as the reference decides).
    pub fn min_delay(&self) -> Option<f64> {
        (self.min_delay_raw < self.inf_delay).then_some(self.min_delay_raw)
    }

    pub fn max_delay(&self) -> Option<f64> {
        (self.max_delay_raw > -self.inf_delay).then_some(self.max_delay_raw)
    }

    /// The `alpha` quantile (0..=1) from the histogram; None when no bucket reaches
    /// `alpha × sent` (for example at 50 % loss and above for the median).
    pub fn percentile(&self, alpha: f64) -> Option<f64> {
        let target = alpha * self.sent as f64;
        let mut sum = 0.0f64;
        for &(b, c) in &self.buckets {
            if c as f64 + sum >= target {
                return Some(b as f64 * self.bucket_width);
            }
            sum += c as f64;
        }
        None
    }

    pub fn median(&self) -> Option<f64> {
        self.percentile(0.5)
    }

    /// P95 − P50 (owping's "jitter", the machine summary's PDV).
    pub fn jitter(&self) -> Option<f64> {
        Some(self.percentile(0.95)? - self.percentile(0.5)?)
    }

    /// lost / sent, 0 when nothing was sent.
    pub fn loss_fraction(&self) -> f64 {
        if self.sent > 0 {
            self.lost as f64 / self.sent as f64
        } else {
            0.0
        }
    }

    /// (number of distinct TTLs, min TTL, max TTL) over received first copies.
    pub fn ttl_range(&self) -> Option<(u32, u8, u8)> {
        let present: Vec<u8> = (0..=255u8)
            .filter(|&t| self.ttl_count.get(t as usize).copied().unwrap_or(0) > 0)
            .collect();
        Some((present.len() as u32, *present.first()?, *present.last()?))
    }

    /// The reordering counts that are reported: `reorder[j]` for j = 0.. while non-zero.
    pub fn reordering(&self) -> &[u32] {
        let n = self
            .reorder
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.reorder.len());
        self.reorder.get(..n).unwrap_or(&[])
    }
}

/// The skip ranges as sorted, merged intervals, so that testing a seqno is a binary
/// search: the ranges come from a file (or a server) and may number millions, and a
/// linear scan per record made owstats quadratic on a hostile file. A range with
/// first > last contains nothing, as before.
struct SkipSet {
    ranges: Vec<(u32, u32)>,
}

impl SkipSet {
    fn new(skips: &[SkipRange]) -> SkipSet {
        let mut v: Vec<(u32, u32)> = skips
            .iter()
            .filter(|s| s.first <= s.last)
            .map(|s| (s.first, s.last))
            .collect();
        v.sort_unstable();
        let mut ranges: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match ranges.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => ranges.push((a, b)),
            }
        }
        SkipSet { ranges }
    }

    fn contains(&self, seq: u32) -> bool {
        let i = self.ranges.partition_point(|&(a, _)| a <= seq);
        i > 0 && self.ranges.get(i - 1).is_some_and(|&(_, b)| seq <= b)
    }
}

/// The reference sizes its packet and reordering buffers as
/// `max(⌊rate · Timeout · 3.5⌋, 10)` entries (capped at 2^31 − 1).
fn reorder_window(session: &SessionHeader) -> usize {
    let d = session.packet_rate() * num64_to_f64(session.timeout()) * 3.5;
    let n = if d > 2_147_483_647.0 {
        2_147_483_647usize
    } else if d > 0.0 {
        d as usize
    } else {
        0
    };
    n.max(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The interval set answers exactly as the linear scan it replaces, for any
        /// ranges (overlapping, adjacent, reversed, at the u32 ends).
        #[test]
        fn skip_set_matches_linear_scan(
            ranges in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..20),
            small in proptest::collection::vec((0u32..50, 0u32..50), 0..20),
            probes in proptest::collection::vec(any::<u32>(), 0..50),
        ) {
            let skips: Vec<SkipRange> = ranges
                .iter()
                .chain(small.iter())
                .map(|&(first, last)| SkipRange { first, last })
                .collect();
            let set = SkipSet::new(&skips);
            let mut seqs = probes;
            seqs.extend(0..60);
            seqs.extend([u32::MAX, u32::MAX - 1]);
            seqs.extend(skips.iter().flat_map(|s| [s.first, s.last, s.last.wrapping_add(1)]));
            for seq in seqs {
                let linear = skips.iter().any(|s| seq >= s.first && seq <= s.last);
                prop_assert_eq!(set.contains(seq), linear, "seq {}", seq);
            }
        }
    }
}
