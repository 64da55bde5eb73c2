//! Golden output of the owstats binary on a fixed `.owp` file built here: human
//! summary, `-M`, `-R`, `-v` and `--json`. The expected numbers were worked out by hand
//! from protocol.md §8.3–8.5 (delays are exact binary fractions so the `%g`/`%.3g` roundings
//! are unambiguous).

use owamp::owp::{FetchInfo, FetchedFileWriter, SessionFields, SessionHeader};
use owamp::{ErrorEstimate, Num64, PacketRecord, Sid, Slot, SlotKind};
use std::path::{Path, PathBuf};
use std::process::Command;

const S: u64 = 0xdd12_e5a0 << 32; // 2017-07-14T06:39:28Z
const SEC: u64 = 1 << 32;

fn rec(seq: u32, send: u64, delay: Option<u64>, ttl: u8) -> PacketRecord {
    let sync = ErrorEstimate::synchronized_from_micros(1);
    PacketRecord {
        seq,
        send_err: if delay.is_some() {
            sync
        } else {
            ErrorEstimate::UNSYNC
        },
        recv_err: sync,
        send_ts: Num64(send),
        recv_ts: Num64(delay.map_or(0, |d| send + d)),
        ttl,
    }
}

/// 4 packets, one fixed 1 s slot: seq 0 (0.977 ms), seq 3 (1.95 ms) arriving before
/// seq 2 (1.46 ms), seq 1 lost.
fn make_file(dir: &Path) -> PathBuf {
    let fields = SessionFields {
        ipvn: 4,
        conf_sender: false,
        conf_receiver: true,
        npackets: 4,
        sender_port: 8760,
        receiver_port: 8761,
        sender_addr: "10.0.0.1".parse().unwrap(),
        receiver_addr: "10.0.0.2".parse().unwrap(),
        sid: Sid::from_hex("7f000001dd12e59ff0d341db48dee1c4").unwrap(),
        padding: 0,
        start_time: Num64(S),
        timeout: Num64(2 * SEC),
        type_p: 0,
        slots: vec![Slot {
            kind: SlotKind::Fixed,
            param: Num64(SEC),
        }],
    };
    let session = SessionHeader::from_fields(&fields).unwrap();
    let records = [
        rec(0, S + SEC, Some(1 << 22), 64),
        rec(3, S + 4 * SEC, Some(1 << 23), 63),
        rec(2, S + 3 * SEC, Some(3 << 21), 64),
        rec(1, S + 2 * SEC, None, 255),
    ];
    let path = dir.join("golden.owp");
    let f = std::fs::File::create(&path).unwrap();
    let info = FetchInfo {
        finished: 1,
        next_seqno: 4,
        num_records: 4,
    };
    let mut w = FetchedFileWriter::begin(f, &path, &session, info, &[]).unwrap();
    for r in &records {
        w.record(r).unwrap();
    }
    w.finish().unwrap();
    path
}

fn owstats(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_owstats"))
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const HEADER: &str = "\n--- owping statistics from [10.0.0.1]:8760 to [10.0.0.2]:8761 ---\nSID:\t7f000001dd12e59ff0d341db48dee1c4\n";

#[test]
fn human() {
    let dir = tempfile::tempdir().unwrap();
    let f = make_file(dir.path());
    let want = format!(
        "{HEADER}first:\t2017-07-14T06:39:29.000\nlast:\t2017-07-14T06:39:32.000\n\
         4 sent, 1 lost (25.000%), 0 duplicates\n\
         one-way delay min/median/max = 0.977/1.5/1.95 ms, (err=0.00201 ms)\n\
         one-way jitter = nan ms (P95-P50)\n\
         hops takes 2 values; min hops = 191, max hops = 192\n\
         1-reordering = 33.333333%\nno 2-reordering\n\n"
    );
    assert_eq!(owstats(&[f.to_str().unwrap()]), want);
    // -n u -a 50
    let got = owstats(&["-n", "u", "-a", "50", f.to_str().unwrap()]);
    assert!(
        got.contains("min/median/max = 977/1.5e+03/1.95e+03 us, (err=2.01 us)\n"),
        "{got}"
    );
    assert!(got.contains("Percentiles:\n\t50.0: 1.5e+03 us\n"), "{got}");
}

#[test]
fn raw() {
    let dir = tempfile::tempdir().unwrap();
    let f = make_file(dir.path());
    let want = "0 15930047311615361024 1 1.00583e-06 15930047311619555328 1 1.00583e-06 64\n\
                3 15930047324500262912 1 1.00583e-06 15930047324508651520 1 1.00583e-06 63\n\
                2 15930047320205295616 1 1.00583e-06 15930047320211587072 1 1.00583e-06 64\n\
                1 15930047315910328320 0 2.32831e-10 00000000000000000000 1 1.00583e-06 255\n";
    assert_eq!(owstats(&["-R", f.to_str().unwrap()]), want);
}

#[test]
fn per_packet() {
    let dir = tempfile::tempdir().unwrap();
    let f = make_file(dir.path());
    let got = owstats(&["-v", f.to_str().unwrap()]);
    let want_lines = format!(
        "{HEADER}seq_no=0          delay=0.977 ms\t(sync, err=0.00201 ms)\n\
         seq_no=3          delay=1.95 ms\t(sync, err=0.00201 ms)\n\
         seq_no=2          delay=1.46 ms\t(sync, err=0.00201 ms)\n\
         seq_no=1          *LOST*\n"
    );
    assert!(got.starts_with(&want_lines), "{got}");
    assert!(got.ends_with("no 2-reordering\n\n"), "{got}");
}

#[test]
fn machine() {
    let dir = tempfile::tempdir().unwrap();
    let f = make_file(dir.path());
    let want = "SUMMARY\t3.00\nSID\t7f000001dd12e59ff0d341db48dee1c4\n\
        FROM_HOST\t10.0.0.1\nFROM_ADDR\t10.0.0.1\nFROM_PORT\t8760\n\
        TO_HOST\t10.0.0.2\nTO_ADDR\t10.0.0.2\nTO_PORT\t8761\n\
        START_TIME\t15930047311615361024\nEND_TIME\t15930047324500262912\n\
        DSCP\t0x00\nLOSS_TIMEOUT\t8589934592\nPACKET_PADDING\t0\n\
        SESSION_PACKET_COUNT\t4\nSAMPLE_PACKET_COUNT\t4\nBUCKET_WIDTH\t0.0001\n\
        SESSION_FINISHED\t1\nSENT\t4\nSYNC\t1\nMAXERR\t2.01166e-06\nDUPS\t0\nLOST\t1\n\
        MIN\t0.000976562\nMEDIAN\t0.0015\nMAX\t0.00195312\n\
        <BUCKETS>\n\t10\t1\n\t15\t1\n\t20\t1\n</BUCKETS>\n\
        MINTTL\t63\nMAXTTL\t64\n<TTLBUCKETS>\n\t63\t1\n\t64\t2\n</TTLBUCKETS>\n\n\
        <NREORDERING>\n\t1\t1\n</NREORDERING>\n";
    assert_eq!(owstats(&["-M", f.to_str().unwrap()]), want);
}

#[test]
fn json() {
    let dir = tempfile::tempdir().unwrap();
    let f = make_file(dir.path());
    let got = owstats(&["--json", f.to_str().unwrap()]);
    assert_eq!(got.lines().count(), 1, "one document per session");
    let v: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(v["sid"], "7f000001dd12e59ff0d341db48dee1c4");
    assert_eq!(v["summary"]["sent"], 4);
    assert_eq!(v["summary"]["lost"], 1);
    assert_eq!(v["summary"]["min_delay"], 0.0009765625);
    assert_eq!(v["summary"]["pdv"], serde_json::Value::Null);
    assert!(v.get("records").is_none());
    let with_records = owstats(&["--json", "-R", f.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&with_records).unwrap();
    assert_eq!(v["records"].as_array().map(|a| a.len()), Some(4));
}

#[test]
fn sub_sessions_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = make_file(dir.path());
    let got = owstats(&["-M", "-N", "2", f.to_str().unwrap()]);
    assert_eq!(got.matches("SUMMARY\t3.00").count(), 2, "{got}");
    assert!(got.contains("SAMPLE_PACKET_COUNT\t2\n"), "{got}");
    // -p -d: the summary goes to <start>_<end>.sum in the directory, its name to stdout.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let names = owstats(&["-M", "-p", "-d", out.to_str().unwrap(), f.to_str().unwrap()]);
    let name = out.join("15930047311615361024_15930047324500262912.sum");
    assert_eq!(names, format!("{}\n", name.display()));
    assert!(
        std::fs::read_to_string(&name)
            .unwrap()
            .starts_with("SUMMARY\t3.00\n")
    );
}

#[test]
fn bad_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.owp");
    std::fs::write(&junk, b"not an owp file at all").unwrap();
    for f in [junk, dir.path().join("missing.owp")] {
        let out = Command::new(env!("CARGO_BIN_EXE_owstats"))
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        // One line, besides the warning of an unsynchronised clock (cli_binaries.rs).
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.contains(": NTP: ")).collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("owstats: "),
            "{err}"
        );
    }
}
