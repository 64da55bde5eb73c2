//! The owping/owstats text formats, byte for byte (protocol.md §8.3–8.5): the human summary,
//! the machine-readable "SUMMARY 3.00", the raw `-R` lines and the `-v` per-packet
//! lines; plus a JSON document (`--json`, our extension).
//!
//! C's `printf` conversions are reproduced by [`cfmt`] (checked against glibc output in
//! the tests), because pScheduler and exporters parse these strings.
//!
//! Times: the reference prints "first:"/"last:" in local time (`localtime_r`). We avoid
//! libc's time-zone code (it needs `unsafe`) and take the zone from `jiff`
//! (`TimeZone::system()`: `TZ` as a zone name, a TZif path or a POSIX rule, else
//! `/etc/localtime`; UTC when `TZ` is empty), which evaluates a zone file's POSIX-TZ
//! footer past its last transition as libc does. Only the UTC offset is taken from it:
//! the digits are ours ([`local_time_with_ms`]), as the reference prints them.

use crate::owp::SessionHeader;
use crate::stats::{Stats, delay_secs, error_secs, num64_to_f64};
use crate::types::{NTP_UNIX_OFFSET, Num64, PacketRecord, SkipRange, Timestamp};
use serde_json::{Value, json};
use std::fmt::Write as _;

pub mod cfmt;

/// The zone "first:"/"last:" are printed in.
pub use jiff::tz::TimeZone;

/// The display unit of the human output (owping `-n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Unit {
    /// `OWPStatsScaleFactor`: the letter is case-insensitive.
    pub fn from_letter(c: char) -> Option<Unit> {
        match c.to_ascii_lowercase() {
            'n' => Some(Unit::Nanoseconds),
            'u' => Some(Unit::Microseconds),
            'm' => Some(Unit::Milliseconds),
            's' => Some(Unit::Seconds),
            _ => None,
        }
    }

    /// The factor is the reference's `float`, widened to double.
    pub fn factor(self) -> f64 {
        (match self {
            Unit::Nanoseconds => 1_000_000_000f32,
            Unit::Microseconds => 1_000_000f32,
            Unit::Milliseconds => 1000f32,
            Unit::Seconds => 1f32,
        }) as f64
    }

    /// The reference leaves the label empty for seconds (protocol.md §10).
    pub fn label(self) -> &'static str {
        match self {
            Unit::Nanoseconds => "ns",
            Unit::Microseconds => "us",
            Unit::Milliseconds => "ms",
            Unit::Seconds => "",
        }
    }
}

/// Host/address/port strings of the two ends, as owping names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub from_host: String,
    pub from_addr: String,
    pub from_port: String,
    pub to_host: String,
    pub to_addr: String,
    pub to_port: String,
}

impl Endpoints {
    /// Numeric names from the stored Request-Session (what the reference prints when
    /// no host name is given and reverse lookups are not done).
    pub fn numeric(session: &SessionHeader) -> Endpoints {
        let f = session.fields();
        Endpoints {
            from_host: f.sender_addr.to_string(),
            from_addr: f.sender_addr.to_string(),
            from_port: f.sender_port.to_string(),
            to_host: f.receiver_addr.to_string(),
            to_addr: f.receiver_addr.to_string(),
            to_port: f.receiver_port.to_string(),
        }
    }
}

/// Options of the human summary.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryOptions {
    pub unit: Unit,
    /// owping `-a`: percentiles in percent (the reference keeps them as `float`).
    pub percentiles: Vec<f32>,
    /// The zone "first:"/"last:" are printed in (owping: `TimeZone::system()`).
    pub zone: TimeZone,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            unit: Unit::Milliseconds,
            percentiles: Vec::new(),
            zone: TimeZone::UTC,
        }
    }
}

/// `"\n--- owping statistics from [%s]:%s to [%s]:%s ---\nSID:\t%s\n"`.
pub fn stats_header(session: &SessionHeader, ends: &Endpoints) -> String {
    format!(
        "\n--- owping statistics from [{}]:{} to [{}]:{} ---\nSID:\t{}\n",
        ends.from_host,
        ends.from_port,
        ends.to_host,
        ends.to_port,
        session.sid().to_hex()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `strftime("%FT%T")` of a timestamp in `zone`, and its nanoseconds.
fn iso_time(t: Timestamp, zone: &TimeZone) -> (String, u32) {
    let (sec, nsec) = t.to_parts();
    let utc = sec as i64 - NTP_UNIX_OFFSET as i64;
    let unix = utc + offset_at(zone, utc);
    let (days, rem) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    (
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        ),
        nsec,
    )
}

/// Seconds east of UTC in `zone` at Unix time `t` (every NTP time, 1900 to 2036, is in
/// jiff's range; 0 outside it).
fn offset_at(zone: &TimeZone, t: i64) -> i64 {
    jiff::Timestamp::from_second(t).map_or(0, |ts| i64::from(zone.to_offset(ts).seconds()))
}

/// `"%s.%03.0f"` with the milliseconds computed in `float` as the reference does: a
/// "first:"/"last:" time, `YYYY-MM-DDTHH:MM:SS.mmm` in `zone`.
pub fn local_time_with_ms(t: Timestamp, zone: &TimeZone) -> String {
    let (s, nsec) = iso_time(t, zone);
    let ms = (nsec as f32) / 1_000_000f32;
    format!("{s}.{}", cfmt::f_zero_pad(ms as f64, 3, 0))
}

fn fmt3_or_nan(v: Option<f64>, factor: f64) -> String {
    v.map_or_else(|| "nan".to_string(), |d| cfmt::g(d * factor, 3))
}

/// The human summary (`OWPStatsPrintSummary`, protocol.md §8.3).
pub fn human_summary(
    stats: &Stats,
    session: &SessionHeader,
    ends: &Endpoints,
    opts: &SummaryOptions,
) -> String {
    let k = opts.unit.factor();
    let u = opts.unit.label();
    let mut o = stats_header(session, ends);
    let start = stats.start_time.unwrap_or(Num64::ZERO);
    let end = stats.end_time.unwrap_or(Num64::ZERO);
    let _ = writeln!(o, "first:\t{}", local_time_with_ms(start, &opts.zone));
    let _ = writeln!(o, "last:\t{}", local_time_with_ms(end, &opts.zone));
    let _ = writeln!(
        o,
        "{} sent, {} lost ({}%), {} duplicates",
        stats.sent,
        stats.lost,
        cfmt::f(100.0 * stats.loss_fraction(), 3),
        stats.dups
    );
    let _ = write!(
        o,
        "one-way delay min/median/max = {}/{}/{} {}, ",
        fmt3_or_nan(stats.min_delay(), k),
        fmt3_or_nan(stats.median(), k),
        fmt3_or_nan(stats.max_delay(), k),
        u
    );
    if stats.sync {
        let _ = writeln!(o, "(err={} {})", cfmt::g(stats.max_err * k, 3), u);
    } else {
        o.push_str("(unsync)\n");
    }
    let _ = writeln!(
        o,
        "one-way jitter = {} {} (P95-P50)",
        fmt3_or_nan(stats.jitter(), k),
        u
    );
    if !opts.percentiles.is_empty() {
        o.push_str("Percentiles:\n");
        for &p in &opts.percentiles {
            let v = stats.percentile(p as f64 / 100.0);
            let _ = writeln!(o, "\t{}: {} {}", cfmt::f(p as f64, 1), fmt3_or_nan(v, k), u);
        }
    }
    match stats.ttl_range() {
        None => o.push_str("TTL not reported\n"),
        Some((1, min, _)) => {
            let _ = writeln!(o, "hops = {} (consistently)", 255 - min as i32);
        }
        Some((n, min, max)) => {
            let _ = writeln!(
                o,
                "hops takes {} values; min hops = {}, max hops = {}",
                n,
                255 - max as i32,
                255 - min as i32
            );
        }
    }
    let r = stats.reordering();
    for (i, c) in r.iter().enumerate() {
        let pct = 100.0 * *c as f64 / stats.received as f64;
        let _ = writeln!(o, "{}-reordering = {}%", i + 1, cfmt::f(pct, 6));
    }
    if r.is_empty() {
        o.push_str("no reordering\n");
    } else if r.len() < stats.reorder_window {
        let _ = writeln!(o, "no {}-reordering", r.len() + 1);
    } else {
        let _ = writeln!(o, "{}-reordering not handled", stats.reorder_window + 1);
    }
    o.push('\n');
    o
}

fn unix_secs_f(t: Timestamp) -> f64 {
    num64_to_f64(t) - NTP_UNIX_OFFSET as f64
}

/// The machine summary (`OWPStatsPrintMachine`, "SUMMARY 3.00", protocol.md §8.4).
/// `finished` is the file's finished word; `unix_times` is owping `-U`.
/// Buckets are printed in ascending order (the reference's order is its hash table's).
pub fn machine_summary(
    stats: &Stats,
    session: &SessionHeader,
    finished: u32,
    ends: &Endpoints,
    unix_times: bool,
) -> String {
    let f = session.fields();
    let mut o = String::new();
    let start = stats.start_time.unwrap_or(Num64::ZERO);
    let end = stats.end_time.unwrap_or(Num64::ZERO);
    o.push_str("SUMMARY\t3.00\n");
    let _ = writeln!(o, "SID\t{}", f.sid.to_hex());
    let _ = writeln!(o, "FROM_HOST\t{}", ends.from_host);
    let _ = writeln!(o, "FROM_ADDR\t{}", ends.from_addr);
    let _ = writeln!(o, "FROM_PORT\t{}", ends.from_port);
    let _ = writeln!(o, "TO_HOST\t{}", ends.to_host);
    let _ = writeln!(o, "TO_ADDR\t{}", ends.to_addr);
    let _ = writeln!(o, "TO_PORT\t{}", ends.to_port);
    let _ = writeln!(o, "START_TIME\t{:020}", start.0);
    let _ = writeln!(o, "END_TIME\t{:020}", end.0);
    if unix_times {
        let _ = writeln!(o, "UNIX_START_TIME\t{}", cfmt::f(unix_secs_f(start), 6));
        let _ = writeln!(o, "UNIX_END_TIME\t{}", cfmt::f(unix_secs_f(end), 6));
    }
    if f.type_p & !0x3F00_0000 == 0 {
        let _ = writeln!(o, "DSCP\t0x{:02x}", f.type_p >> 24);
    }
    let _ = writeln!(o, "LOSS_TIMEOUT\t{}", f.timeout.0);
    let _ = writeln!(o, "PACKET_PADDING\t{}", f.padding);
    let _ = writeln!(o, "SESSION_PACKET_COUNT\t{}", f.npackets);
    let _ = writeln!(o, "SAMPLE_PACKET_COUNT\t{}", stats.last - stats.first);
    let _ = writeln!(o, "BUCKET_WIDTH\t{}", cfmt::g6(stats.bucket_width));
    let _ = writeln!(o, "SESSION_FINISHED\t{}", u8::from(finished == 1));
    let _ = writeln!(o, "SENT\t{}", stats.sent);
    let _ = writeln!(o, "SYNC\t{}", u8::from(stats.sync));
    let _ = writeln!(o, "MAXERR\t{}", cfmt::g6(stats.max_err));
    let _ = writeln!(o, "DUPS\t{}", stats.dups);
    let _ = writeln!(o, "LOST\t{}", stats.lost);
    if let Some(v) = stats.min_delay() {
        let _ = writeln!(o, "MIN\t{}", cfmt::g6(v));
    }
    if let Some(v) = stats.median() {
        let _ = writeln!(o, "MEDIAN\t{}", cfmt::g6(v));
    }
    if let Some(v) = stats.max_delay() {
        let _ = writeln!(o, "MAX\t{}", cfmt::g6(v));
    }
    if let Some(v) = stats.jitter() {
        let _ = writeln!(o, "PDV\t{}", cfmt::g6(v));
    }
    if stats.sent > stats.lost {
        o.push_str("<BUCKETS>\n");
        for (b, c) in stats.buckets_in_hash_order(f.timeout) {
            let _ = writeln!(o, "\t{b}\t{c}");
        }
        o.push_str("</BUCKETS>\n");
    }
    // MINTTL and MAXTTL are always there (parsers of `.sum` files expect both keys),
    // as 255 and 0 when nothing was received; only the buckets are then left out.
    let ttls = stats.ttl_range();
    let (min, max) = ttls.map_or((255, 0), |(_, min, max)| (min, max));
    let _ = writeln!(o, "MINTTL\t{min}");
    let _ = writeln!(o, "MAXTTL\t{max}");
    if ttls.is_some() {
        o.push_str("<TTLBUCKETS>\n");
        for (t, c) in stats.ttl_count.iter().enumerate() {
            if *c > 0 {
                let _ = writeln!(o, "\t{t}\t{c}");
            }
        }
        o.push_str("</TTLBUCKETS>\n");
    }
    o.push('\n');
    o.push_str("<NREORDERING>\n");
    let r = stats.reordering();
    for (j, c) in r.iter().enumerate() {
        let _ = writeln!(o, "\t{}\t{}", j + 1, c);
    }
    if r.is_empty() || r.len() >= stats.reorder_window {
        let _ = writeln!(o, "\t{}\t0", r.len() + 1);
    }
    o.push_str("</NREORDERING>\n");
    o
}

/// One `-R` line: `"%lu %020llu %u %g %020llu %u %g %u\n"` (protocol.md §8.5).
pub fn raw_line(r: &PacketRecord) -> String {
    format!(
        "{} {:020} {} {} {:020} {} {} {}\n",
        r.seq,
        r.send_ts.0,
        u8::from(r.send_err.synchronized),
        cfmt::g6(error_secs(r.send_err)),
        r.recv_ts.0,
        u8::from(r.recv_err.synchronized),
        cfmt::g6(error_secs(r.recv_err)),
        r.ttl
    )
}

/// One `-v` line as `IterateSummarizeSession` prints it; `unix_times` is `-U`.
pub fn per_packet_line(r: &PacketRecord, unit: Unit, unix_times: bool) -> String {
    let (k, u) = (unit.factor(), unit.label());
    if r.is_lost() {
        return format!("seq_no={:<10} *LOST*\n", r.seq);
    }
    let d = delay_secs(r);
    let err = error_secs(r.send_err) + error_secs(r.recv_err);
    if r.send_err.synchronized && r.recv_err.synchronized {
        if unix_times {
            format!(
                "seq_no={} delay={} {} (sync, err={} {}) sent={} recv={}\n",
                r.seq,
                cfmt::e(d * k, 6),
                u,
                cfmt::g(err * k, 3),
                u,
                cfmt::f(unix_secs_f(r.send_ts), 6),
                cfmt::f(unix_secs_f(r.recv_ts), 6)
            )
        } else {
            format!(
                "seq_no={:<10} delay={} {}\t(sync, err={} {})\n",
                r.seq,
                cfmt::g(d * k, 3),
                u,
                cfmt::g(err * k, 3),
                u
            )
        }
    } else {
        format!(
            "seq_no={:<10} delay={} {}\t(unsync)\n",
            r.seq,
            cfmt::g(d * k, 3),
            u
        )
    }
}

/// The `-v` section: the statistics header, then one line per record of the sample
/// `[first, last)` outside the skip ranges, in file order. For owping `-vN` pass only
/// the first N records of the file (as [`crate::stats::StatsOptions::record_limit`]).
#[allow(clippy::too_many_arguments)]
pub fn per_packet_section<'a>(
    session: &SessionHeader,
    ends: &Endpoints,
    records: impl IntoIterator<Item = &'a PacketRecord>,
    skips: &[SkipRange],
    first: u32,
    last: u32,
    unit: Unit,
    unix_times: bool,
) -> String {
    let mut o = stats_header(session, ends);
    for r in records {
        if r.seq < first || r.seq >= last {
            continue;
        }
        if skips.iter().any(|s| r.seq >= s.first && r.seq <= s.last) {
            continue;
        }
        o.push_str(&per_packet_line(r, unit, unix_times));
    }
    o
}

fn opt_num(v: Option<f64>) -> Value {
    v.filter(|x| x.is_finite())
        .map_or(Value::Null, |x| json!(x))
}

/// One JSON document per session (`--json`): parameters, summary, percentiles,
/// histogram, TTLs, reordering; with `records`, every packet with its raw fields.
pub fn json_summary(
    stats: &Stats,
    session: &SessionHeader,
    finished: u32,
    ends: &Endpoints,
    percentiles: &[f32],
    records: Option<&[PacketRecord]>,
) -> Value {
    let f = session.fields();
    let pct: Vec<Value> = percentiles
        .iter()
        .map(|&p| json!({"percentile": p, "delay": opt_num(stats.percentile(p as f64 / 100.0))}))
        .collect();
    let ttls: Vec<Value> = stats
        .ttl_count
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(t, c)| json!({"ttl": t, "count": c}))
        .collect();
    let mut doc = json!({
        "sid": f.sid.to_hex(),
        "from": {"host": ends.from_host, "addr": ends.from_addr, "port": ends.from_port},
        "to": {"host": ends.to_host, "addr": ends.to_addr, "port": ends.to_port},
        "parameters": {
            "npackets": f.npackets,
            "padding": f.padding,
            "start_time": f.start_time.0,
            "loss_timeout": f.timeout.0,
            "loss_timeout_secs": num64_to_f64(f.timeout),
            "type_p": f.type_p,
            "slots": f.slots.iter().map(|s| json!({
                "kind": match s.kind { crate::types::SlotKind::Exponential => "exponential", crate::types::SlotKind::Fixed => "fixed" },
                "param": s.param.0,
            })).collect::<Vec<_>>(),
        },
        "summary": {
            "finished": finished == 1,
            "first_seq": stats.first,
            "last_seq": stats.last,
            "start_time": stats.start_time.map(|t| t.0),
            "end_time": stats.end_time.map(|t| t.0),
            "sent": stats.sent,
            "lost": stats.lost,
            "duplicates": stats.dups,
            "loss_fraction": stats.loss_fraction(),
            "sync": stats.sync,
            "max_error": stats.max_err,
            "min_delay": opt_num(stats.min_delay()),
            "median_delay": opt_num(stats.median()),
            "max_delay": opt_num(stats.max_delay()),
            "pdv": opt_num(stats.jitter()),
        },
        "percentiles": pct,
        "histogram": {
            "bucket_width": stats.bucket_width,
            "buckets": stats.buckets.iter().map(|(b, c)| json!({"bucket": b, "count": c})).collect::<Vec<_>>(),
        },
        "ttl": ttls,
        "reordering": stats.reordering().iter().enumerate().map(|(j, c)| json!({"j": j + 1, "count": c})).collect::<Vec<_>>(),
    });
    if let (Some(recs), Some(obj)) = (records, doc.as_object_mut()) {
        let list: Vec<Value> = recs
            .iter()
            .map(|r| {
                json!({
                    "seq": r.seq,
                    "lost": r.is_lost(),
                    "send_time": r.send_ts.0,
                    "send_sync": r.send_err.synchronized,
                    "send_error": error_secs(r.send_err),
                    "recv_time": r.recv_ts.0,
                    "recv_sync": r.recv_err.synchronized,
                    "recv_error": error_secs(r.recv_err),
                    "ttl": r.ttl,
                    "delay": if r.is_lost() { Value::Null } else { json!(delay_secs(r)) },
                    "raw": raw_line(r).trim_end(),
                })
            })
            .collect();
        obj.insert("records".into(), Value::Array(list));
    }
    doc
}
