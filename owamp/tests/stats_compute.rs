//! Statistics on crafted records with hand-computed expectations (protocol.md §8.3).

use owamp::owp::{SessionFields, SessionHeader};
use owamp::stats::{Stats, StatsError, StatsOptions, error_secs};
use owamp::{ErrorEstimate, Num64, PacketRecord, Sid, SkipRange, Slot, SlotKind};
use std::net::{IpAddr, Ipv4Addr};

const START: u64 = 0xE000_0000_0000_0000;
const SYNC: ErrorEstimate = ErrorEstimate {
    synchronized: true,
    z: false,
    scale: 5,
    multiplier: 135,
};

fn session(npackets: u32) -> SessionHeader {
    SessionHeader::from_fields(&SessionFields {
        ipvn: 4,
        conf_sender: false,
        conf_receiver: true,
        npackets,
        sender_port: 8760,
        receiver_port: 9001,
        sender_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        receiver_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        sid: Sid([7; 16]),
        padding: 0,
        start_time: Num64(START),
        timeout: Num64(2u64 << 32),
        type_p: 0,
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            param: Num64(0x1999_99A0),
        }],
    })
    .unwrap()
}

fn send_ts(seq: u32) -> Num64 {
    Num64(START + ((seq as u64) << 32))
}

fn got(seq: u32, delay_us: u64, ttl: u8) -> PacketRecord {
    PacketRecord {
        seq,
        send_err: SYNC,
        recv_err: SYNC,
        send_ts: send_ts(seq),
        recv_ts: Num64(send_ts(seq).0 + Num64::from_micros(delay_us).0),
        ttl,
    }
}

fn lost(seq: u32) -> PacketRecord {
    PacketRecord {
        seq,
        send_err: ErrorEstimate::UNSYNC,
        recv_err: SYNC,
        send_ts: send_ts(seq),
        recv_ts: Num64(0),
        ttl: 255,
    }
}

/// 0,2,1,1(dup),3 lost,4,5 (skipped),7,8,6,9 lost.
fn crafted() -> Vec<PacketRecord> {
    vec![
        got(0, 1230, 250),
        got(2, 2270, 250),
        got(1, 3350, 250),
        got(1, 4450, 250),
        lost(3),
        got(4, 510, 250),
        got(5, 9990, 250),
        got(7, 2110, 249),
        got(8, 1170, 250),
        got(6, 1890, 250),
        lost(9),
    ]
}

const SKIPS: [SkipRange; 1] = [SkipRange { first: 5, last: 5 }];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn counts_loss_dups_and_skips() {
    let s = Stats::compute(
        &session(10),
        crafted(),
        &SKIPS,
        &StatsOptions::default(),
        None,
    )
    .unwrap();
    assert_eq!((s.sent, s.lost, s.dups), (9, 2, 1));
    assert!(close(s.loss_fraction(), 2.0 / 9.0));
    assert!(s.sync);
    assert!(close(s.max_err, 2.0 * error_secs(SYNC)));
    assert!(close(error_secs(SYNC), 4320.0 / 4_294_967_296.0));
}

#[test]
fn delays_histogram_and_percentiles() {
    let s = Stats::compute(
        &session(10),
        crafted(),
        &SKIPS,
        &StatsOptions::default(),
        None,
    )
    .unwrap();
    // min over everything, max includes the duplicate (4.45 ms), skip range ignored.
    assert!((s.min_delay().unwrap() - 0.000510).abs() < 1e-6);
    assert!((s.max_delay().unwrap() - 0.004450).abs() < 1e-6);
    let idx: Vec<i32> = s.buckets.iter().map(|b| b.0).collect();
    assert_eq!(idx, vec![6, 12, 13, 19, 22, 23, 34]);
    assert!(s.buckets.iter().all(|b| b.1 == 1));
    // median: alpha*sent = 4.5 -> the fifth bucket, 22 * 0.1 ms.
    assert!(close(s.median().unwrap(), 22.0 * 0.0001));
    assert!(close(s.percentile(0.1).unwrap(), 6.0 * 0.0001));
    // P95 needs 8.55 first copies; only 7 were received.
    assert_eq!(s.percentile(0.95), None);
    assert_eq!(s.jitter(), None);
}

#[test]
fn ttl_and_reordering() {
    let s = Stats::compute(
        &session(10),
        crafted(),
        &SKIPS,
        &StatsOptions::default(),
        None,
    )
    .unwrap();
    assert_eq!(s.ttl_count[250], 6);
    assert_eq!(s.ttl_count[249], 1);
    assert_eq!(s.ttl_range(), Some((2, 249, 250)));
    // 1 after 2: one 1-reordering; 6 after 8,7: one 1- and one 2-reordering.
    assert_eq!(s.reordering(), &[2, 1]);
    assert_eq!(s.received, 8);
    // mean 0x199999A0 is a hair above 0.1 s, so rate·Timeout·3.5 = 69.99999… -> 69.
    assert_eq!(s.reorder_window, 69);
}

#[test]
fn sub_range_and_scheduled_times() {
    let opts = StatsOptions {
        first: 4,
        last: Some(8),
        ..StatsOptions::default()
    };
    let mut sched = |seq: u32| send_ts(seq);
    let s = Stats::compute(&session(10), crafted(), &SKIPS, &opts, Some(&mut sched)).unwrap();
    assert_eq!((s.sent, s.lost, s.dups), (3, 0, 0));
    assert_eq!(s.start_time, Some(send_ts(4)));
    assert_eq!(s.end_time, Some(send_ts(7)));
    assert!(close(s.percentile(1.0).unwrap(), 22.0 * 0.0001));
    // Without a schedule, times come from the records of seqnos first and last-1.
    let s = Stats::compute(&session(10), crafted(), &[], &StatsOptions::default(), None).unwrap();
    assert_eq!(s.start_time, Some(send_ts(0)));
    assert_eq!(s.end_time, Some(send_ts(9)));
    assert_eq!(s.sent, 10);
}

#[test]
fn unsync_and_negative_delays() {
    let mut a = got(0, 100, 250);
    // Receive clock 1 ms behind: delay -0.9 ms -> floor(-9) bucket.
    a.recv_ts = Num64(a.send_ts.0 - Num64::from_micros(900).0);
    let mut b = got(1, 2000, 250);
    b.recv_err.synchronized = false;
    let s = Stats::compute(&session(2), vec![a, b], &[], &StatsOptions::default(), None).unwrap();
    assert!(!s.sync);
    assert_eq!(s.buckets[0].0, -9);
    assert!(s.min_delay().unwrap() < 0.0);
    // A lost record's receive estimate is what the reference checks for sync.
    let mut l = lost(0);
    l.recv_err = ErrorEstimate::UNSYNC;
    let s = Stats::compute(&session(2), vec![l], &[], &StatsOptions::default(), None).unwrap();
    assert!(!s.sync);
    assert_eq!(s.min_delay(), None);
    assert_eq!(s.max_delay(), None);
    assert_eq!(s.median(), None);
    assert!(close(s.loss_fraction(), 1.0));
}

#[test]
fn nothing_received_and_bad_input() {
    let s = Stats::compute(&session(5), Vec::new(), &[], &StatsOptions::default(), None).unwrap();
    assert_eq!((s.sent, s.lost, s.loss_fraction()), (0, 0, 0.0));
    assert_eq!(s.ttl_range(), None);
    assert!(s.reordering().is_empty());
    let e = Stats::compute(
        &session(5),
        vec![got(1, 10, 1), lost(1)],
        &[],
        &StatsOptions::default(),
        None,
    );
    assert_eq!(e.unwrap_err(), StatsError::UnexpectedLost { seq: 1 });
    let e = Stats::compute(
        &session(5),
        vec![lost(1), got(1, 10, 1)],
        &[],
        &StatsOptions::default(),
        None,
    );
    assert_eq!(e.unwrap_err(), StatsError::ReceivedAfterLost { seq: 1 });
    let opts = StatsOptions {
        first: 3,
        last: Some(9),
        ..StatsOptions::default()
    };
    let e = Stats::compute(&session(5), Vec::new(), &[], &opts, None);
    assert!(matches!(e, Err(StatsError::InvalidRange { .. })));
    let opts = StatsOptions {
        bucket_width: 0.0,
        ..StatsOptions::default()
    };
    let e = Stats::compute(&session(5), Vec::new(), &[], &opts, None);
    assert!(matches!(e, Err(StatsError::InvalidBucketWidth { .. })));
}

#[test]
fn record_limit_cuts_the_file_short() {
    let opts = StatsOptions {
        record_limit: Some(3),
        ..StatsOptions::default()
    };
    let s = Stats::compute(&session(10), crafted(), &SKIPS, &opts, None).unwrap();
    // Only 0, 2, 1 are looked at.
    assert_eq!((s.sent, s.lost, s.dups), (3, 0, 0));
    assert_eq!(s.reordering(), &[1]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = PacketRecord> {
        (
            0u32..40,
            any::<[u8; 2]>(),
            any::<[u8; 2]>(),
            any::<u64>(),
            any::<u64>(),
            any::<u8>(),
            any::<bool>(),
        )
            .prop_map(|(seq, se, re, st, rt, ttl, lost)| PacketRecord {
                seq,
                send_err: ErrorEstimate::from_bytes(se),
                recv_err: ErrorEstimate::from_bytes(re),
                send_ts: Num64(st),
                recv_ts: Num64(if lost { 0 } else { rt }),
                ttl,
            })
    }

    proptest! {
        #[test]
        fn arbitrary_records_never_panic(
            recs in proptest::collection::vec(arb_record(), 0..60),
            np in 0u32..50,
            first in 0u32..50,
            last in proptest::option::of(0u32..60),
            width in prop_oneof![Just(0.0001f64), Just(1e-300), Just(1e300), Just(-1.0)],
            skip in proptest::option::of((0u32..40, 0u32..40)),
        ) {
            let skips: Vec<SkipRange> = skip.map(|(a, b)| SkipRange { first: a, last: b }).into_iter().collect();
            let opts = StatsOptions { bucket_width: width, first, last, record_limit: None, begin_record: 0 };
            if let Ok(s) = Stats::compute(&session(np), recs.clone(), &skips, &opts, None) {
                let _ = (s.median(), s.jitter(), s.percentile(1.0), s.ttl_range(), s.reordering());
                let sess = session(np);
                let ends = owamp::report::Endpoints::numeric(&sess);
                let _ = owamp::report::human_summary(&s, &sess, &ends, &owamp::report::SummaryOptions::default());
                let _ = owamp::report::machine_summary(&s, &sess, 1, &ends, true);
                let _ = owamp::report::json_summary(&s, &sess, 1, &ends, &[50.0], Some(&recs));
                for r in &recs {
                    let _ = owamp::report::raw_line(r);
                    let _ = owamp::report::per_packet_line(r, owamp::report::Unit::Nanoseconds, true);
                }
            }
        }
    }
}

#[test]
fn sub_sessions_chain_through_next_record() {
    // -N 5 over 0,2,1,1,3L,4,5(skip),7,8,6,9L: the first sample [0,5) ends at file
    // index 6 (seq 5, skipped but still >= 5); the second sample starts there.
    let s1 = Stats::compute(
        &session(10),
        crafted(),
        &SKIPS,
        &StatsOptions {
            first: 0,
            last: Some(5),
            ..StatsOptions::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(s1.next_record, 6);
    assert_eq!((s1.sent, s1.lost, s1.dups), (5, 1, 1));
    let s2 = Stats::compute(
        &session(10),
        crafted(),
        &SKIPS,
        &StatsOptions {
            first: 5,
            last: Some(u32::MAX),
            begin_record: s1.next_record,
            ..StatsOptions::default()
        },
        None,
    )
    .unwrap();
    assert_eq!((s2.sent, s2.lost), (4, 1));
    assert_eq!(s2.next_record, 0);
}

/// A second lost record for one seqno (a damaged or hostile file; found by the
/// owstats_file fuzz target) does not count that packet twice: sent counts distinct
/// seqnos (protocol.md §8.3).
#[test]
fn a_duplicated_lost_record_counts_once() {
    let recs = vec![lost(0), lost(0), got(1, 100, 64), got(2, 100, 64)];
    let st = Stats::compute(&session(3), recs, &[], &StatsOptions::default(), None).unwrap();
    assert_eq!((st.sent, st.lost), (3, 1));
}
