//! Delay and send-accuracy figures from a session's packet records (engine output or an
//! `.owp` file saved by owping -T/-F, protocol.md §7.7): the records carry the sender's actual
//! timestamp, and the schedule (SID, start time, slots; protocol.md §5.3) gives each packet's
//! scheduled time.

use crate::summary::{Summary, diff_ns};
use owamp::owp::{OwpError, OwpFile};
use owamp::schedule::Schedule;
use owamp::types::{PacketRecord, Timestamp};
use serde_json::{Value, json};
use std::path::Path;

/// What the records say.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    /// Distinct seqnos received.
    pub received: u64,
    pub duplicates: u64,
    /// One-way delay: receive − send timestamp.
    pub delay: Summary,
    /// Send accuracy: send timestamp − scheduled time.
    pub send_error: Summary,
    /// Last receive time (for the session's span).
    pub last_recv: Option<Timestamp>,
    /// Earliest and latest send timestamps of received packets.
    pub first_send: Option<Timestamp>,
    pub last_send: Option<Timestamp>,
}

impl Figures {
    /// Packets per second actually achieved between the first and last send timestamps
    /// (0 with fewer than two packets).
    pub fn achieved_pps(&self) -> f64 {
        match (self.first_send, self.last_send) {
            (Some(a), Some(b)) if b > a && self.received > 1 => {
                (self.received - 1) as f64 / (diff_ns(b, a) as f64 / 1e9)
            }
            _ => 0.0,
        }
    }
}

/// Analyses `records` against `sched` (reset here; consumed forward once).
pub fn analyse(records: &[PacketRecord], sched: &mut Schedule) -> Figures {
    sched.reset();
    let mut times = Vec::with_capacity(sched.num_packets().min(10_000_000) as usize);
    while let Some(t) = sched.next_send_time() {
        times.push(t);
    }
    let mut seen = vec![false; times.len()];
    let mut delays = Vec::with_capacity(records.len());
    let mut errs = Vec::with_capacity(records.len());
    let mut f = Figures::default();
    for r in records.iter().filter(|r| r.recv_ts.0 != 0) {
        delays.push(diff_ns(r.recv_ts, r.send_ts));
        match seen.get_mut(r.seq as usize) {
            Some(s) if *s => f.duplicates += 1,
            Some(s) => {
                *s = true;
                f.received += 1;
                if let Some(&t) = times.get(r.seq as usize) {
                    errs.push(diff_ns(r.send_ts, t));
                }
            }
            None => {}
        }
        if f.first_send.is_none_or(|l| r.send_ts < l) {
            f.first_send = Some(r.send_ts);
        }
        if f.last_send.is_none_or(|l| r.send_ts > l) {
            f.last_send = Some(r.send_ts);
        }
        if f.last_recv.is_none_or(|l| r.recv_ts > l) {
            f.last_recv = Some(r.recv_ts);
        }
    }
    f.delay = Summary::of(&mut delays);
    f.send_error = Summary::of(&mut errs);
    f
}

/// The figures of one `.owp` file as JSON.
pub fn owp_file(path: &Path) -> Result<Value, OwpError> {
    let mut file = OwpFile::open(path)?;
    let s = file.session()?.fields().clone();
    let records = file.read_records()?;
    let mut sched = Schedule::new(s.sid, s.start_time, &s.slots, s.npackets);
    let f = analyse(&records, &mut sched);
    Ok(json!({
        "file": path.display().to_string(),
        "count": s.npackets,
        "received": f.received,
        "duplicates": f.duplicates,
        "lost": u64::from(s.npackets).saturating_sub(f.received),
        "delay": f.delay.to_json(),
        "send_error": f.send_error.to_json(),
        "achieved_pps": f.achieved_pps(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::types::{ErrorEstimate, Num64, Sid, Slot, SlotKind};

    #[test]
    fn delay_send_error_and_duplicates() {
        let ms = Num64((1u64 << 32) / 1000 + 1);
        let start = Num64(1000 << 32);
        let slots = [Slot {
            kind: SlotKind::Fixed,
            param: ms,
        }];
        let mut sched = Schedule::new(Sid([7; 16]), start, &slots, 3);
        let rec = |seq: u32, late: u64, delay: u64| {
            let send = Num64(start.0 + u64::from(seq + 1) * ms.0 + late);
            PacketRecord {
                seq,
                send_err: ErrorEstimate::UNSYNC,
                recv_err: ErrorEstimate::UNSYNC,
                send_ts: send,
                recv_ts: Num64(send.0 + delay),
                ttl: 255,
            }
        };
        let lost = PacketRecord {
            recv_ts: Num64::ZERO,
            ..rec(2, 0, 0)
        };
        // 4295 units ≈ 1 µs; 42950 ≈ 10 µs.
        let recs = [rec(0, 4295, 42_950), rec(1, 0, 4295), rec(1, 0, 4295), lost];
        let f = analyse(&recs, &mut sched);
        assert_eq!((f.received, f.duplicates), (2, 1));
        assert_eq!(f.delay.n, 3);
        assert_eq!(f.delay.max, 10_000);
        assert_eq!(f.delay.min, 1000);
        assert_eq!(f.send_error.n, 2);
        assert_eq!((f.send_error.min, f.send_error.max), (0, 1000));
        // Two distinct packets sent 1 ms - 1 µs apart.
        let pps = f.achieved_pps();
        assert!((pps - 1001.0).abs() < 1.0, "{pps}");
    }
}
