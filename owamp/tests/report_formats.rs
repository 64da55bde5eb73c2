//! Golden tests for every output format, from fixed records (protocol.md §8.3–8.5).
//! The golden files in tests/data/ were reviewed line by line against the reference's
//! format strings (stats.c / owping.c); set OWP_BLESS=1 to rewrite them.

use owamp::owp::{SessionFields, SessionHeader};
use owamp::report::{
    Endpoints, SummaryOptions, TimeZone, Unit, human_summary, json_summary, machine_summary,
    per_packet_line, per_packet_section, raw_line,
};
use owamp::stats::{Stats, StatsOptions};
use owamp::{ErrorEstimate, Num64, PacketRecord, Sid, SkipRange, Slot, SlotKind};
use std::net::{IpAddr, Ipv4Addr};

const START: u64 = 0xE000_0000_0000_0000;
const SYNC: ErrorEstimate = ErrorEstimate {
    synchronized: true,
    z: false,
    scale: 5,
    multiplier: 135,
};

fn session() -> SessionHeader {
    SessionHeader::from_fields(&SessionFields {
        ipvn: 4,
        conf_sender: false,
        conf_receiver: true,
        npackets: 10,
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
    // Half a second in: exercises the ".500" milliseconds.
    Num64(START + ((seq as u64) << 32) + (1u64 << 31))
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

fn records() -> Vec<PacketRecord> {
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

fn stats() -> Stats {
    Stats::compute(
        &session(),
        records(),
        &SKIPS,
        &StatsOptions::default(),
        None,
    )
    .unwrap()
}

fn check_golden(name: &str, actual: &str) {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("OWP_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(actual, want, "{name} differs from the golden file");
}

#[test]
fn human_summary_golden() {
    let s = session();
    let opts = SummaryOptions {
        unit: Unit::Milliseconds,
        percentiles: vec![10.0, 50.0, 95.0],
        zone: TimeZone::UTC,
    };
    check_golden(
        "human_ms.txt",
        &human_summary(&stats(), &s, &Endpoints::numeric(&s), &opts),
    );
}

#[test]
fn human_summary_seconds_unsync_consistent_ttl() {
    // One unsynchronised packet, all TTLs equal, no reordering, seconds unit (empty
    // label), local time one hour east of UTC.
    let s = session();
    let mut a = got(0, 1000, 254);
    a.send_err.synchronized = false;
    let recs = vec![a, got(1, 2000, 254)];
    let st = Stats::compute(&s, recs, &[], &StatsOptions::default(), None).unwrap();
    let opts = SummaryOptions {
        unit: Unit::Seconds,
        percentiles: vec![],
        zone: TimeZone::fixed(jiff::tz::offset(1)),
    };
    check_golden(
        "human_s_unsync.txt",
        &human_summary(&st, &s, &Endpoints::numeric(&s), &opts),
    );
}

#[test]
fn human_summary_nothing_received() {
    let s = session();
    let st = Stats::compute(
        &s,
        vec![lost(0), lost(1)],
        &[],
        &StatsOptions::default(),
        None,
    )
    .unwrap();
    check_golden(
        "human_all_lost.txt",
        &human_summary(&st, &s, &Endpoints::numeric(&s), &SummaryOptions::default()),
    );
}

#[test]
fn machine_summary_golden() {
    let s = session();
    check_golden(
        "machine.txt",
        &machine_summary(&stats(), &s, 1, &Endpoints::numeric(&s), false),
    );
    check_golden(
        "machine_unix.txt",
        &machine_summary(&stats(), &s, 2, &Endpoints::numeric(&s), true),
    );
}

#[test]
fn raw_lines_golden() {
    let out: String = records().iter().map(raw_line).collect();
    check_golden("raw.txt", &out);
    // Spot check against the C format by hand: seq 3 is lost.
    assert_eq!(
        raw_line(&lost(3)),
        "3 16140901079528243200 0 2.32831e-10 00000000000000000000 1 1.00583e-06 255\n"
    );
}

#[test]
fn per_packet_golden() {
    let s = session();
    let recs = records();
    let mut out = per_packet_section(
        &s,
        &Endpoints::numeric(&s),
        &recs,
        &SKIPS,
        0,
        10,
        Unit::Milliseconds,
        false,
    );
    out.push_str(&per_packet_line(&recs[0], Unit::Microseconds, true));
    let mut u = recs[1];
    u.recv_err.synchronized = false;
    out.push_str(&per_packet_line(&u, Unit::Nanoseconds, false));
    check_golden("verbose.txt", &out);
}

#[test]
fn json_golden() {
    let s = session();
    let doc = json_summary(
        &stats(),
        &s,
        1,
        &Endpoints::numeric(&s),
        &[50.0, 95.0],
        Some(&records()[..2]),
    );
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    check_golden("summary.json", &text);
    assert_eq!(doc["summary"]["sent"], 9);
    assert!(doc["summary"]["pdv"].is_null());
}
