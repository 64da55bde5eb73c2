//! owstats on `.owp` files written by the perfSONAR reference (5.2.3 rebuild, see
//! /work/ref/README.txt on the build host): its owping's `-T` file (fetched from its
//! owampd), its owping's `-F` file (written as receiver) and a file taken from its
//! owampd's datadir. The expected outputs are the reference owstats' stdout on the same
//! files with TZ=UTC, byte for byte (protocol.md §8.3–8.5). All three sessions ran on
//! 127.0.0.1, which the reference prints as "localhost" (stats.c resolves the header's
//! addresses with getnameinfo(3)); the test assumes the usual /etc/hosts line for it.

use std::path::PathBuf;
use std::process::Command;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../owamp/tests/data/reference")
        .join(name)
}

/// The owstats option sets of the golden files, and their file-name tags.
const CASES: &[(&[&str], &str)] = &[
    (&[], "human"),
    (&["-M"], "M"),
    (&["-R"], "R"),
    (&["-v"], "v"),
    (&["-M", "-U"], "MU"),
    (&["-a", "50,90", "-n", "s"], "a50,90ns"),
    (&["-N", "7", "-b", "0.001"], "N7b0.001"),
];

fn check(file: &str) {
    check_cases(file, CASES);
}

fn check_cases(file: &str, cases: &[(&[&str], &str)]) {
    check_cases_in(file, cases, "UTC");
}

/// Like [`check_cases`], with the time zone `tz`: what "first:"/"last:" are printed in.
fn check_cases_in(file: &str, cases: &[(&[&str], &str)], tz: &str) {
    let owp = data(&format!("{file}.owp"));
    let mut failures = Vec::new();
    for (args, tag) in cases {
        let want = std::fs::read_to_string(data(&format!("{file}.{tag}.txt"))).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_owstats"))
            .args(*args)
            .arg(&owp)
            .env("TZ", tz)
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || got != want {
            failures.push(format!(
                "TZ={tz:?} owstats {args:?} {file}.owp: status {}\n--- want\n{want}--- got\n{got}",
                out.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reference_owping_to_file() {
    check("ref-owping-T");
}

#[test]
fn reference_owping_from_file() {
    check("ref-owping-F");
}

#[test]
fn reference_owampd_datadir_file() {
    check("ref-owampd-datadir");
}

/// ref-buckets.owp is ref-owping-T.owp with receive times rewritten (delays of 0.5 to
/// 2000.5 bucket widths, and negative ones) so that the reference's `-M` bucket order,
/// the I2util hash table's (protocol.md §8.4), differs from the numeric order: 257 after 2,
/// 768 before 513, 301 between 46 and 47, -256 and -1 last.
#[test]
fn machine_summary_buckets_in_reference_hash_order() {
    check_cases(
        "ref-buckets",
        &[
            (&["-M"], "M"),
            (&["-M", "-b", "0.00001"], "Mb0.00001"),
            (&["-N", "7", "-M"], "N7M"),
        ],
    );
}

/// ref-lossy.owp is ref-owping-T.owp edited into a harder session: seqs 3, 10 and 11
/// lost, 5/7 and 20/21 swapped, 2 and 16 duplicated, skip range 25–26, TTLs 62–64.
/// With `-N 10` the third sub-session shows the reference's cumulative reordering
/// denominator (1 of 27 records so far, not 1 of 8).
#[test]
fn losses_duplicates_reordering_skips_and_sub_sessions() {
    check_cases(
        "ref-lossy",
        &[
            (&[], "human"),
            (&["-M"], "M"),
            (&["-R"], "R"),
            (&["-v"], "v"),
            (&["-a", "10,50,99", "-n", "u"], "a10,50,99nu"),
            (&["-N", "10"], "N10"),
            (&["-N", "10", "-M"], "N10M"),
        ],
    );
}

/// A file copied from the reference owampd's datadir while its session was running:
/// finished = 2 (endpoint.c writes "incomplete" until Stop-Sessions) and Number of
/// Records 0, so the records are counted from the file size (api.c OWPReadDataHeader).
#[test]
fn reference_owampd_live_file() {
    check_cases(
        "ref-owampd-live",
        &[(&[], "human"), (&["-M"], "M"), (&["-R"], "R")],
    );
}

/// Sessions without one received packet: `-M` keeps MINTTL 255 and MAXTTL 0 (the
/// reference's starting values) and leaves out only `<TTLBUCKETS>`, in whole sessions
/// and `-N` sub-sessions, since `.sum` parsers and pScheduler expect both keys.
/// ref-owampd-empty.owp is the reference owampd's stored file of a session stopped
/// before its start (0 records); ref-owping-all-late.owp its owping's `-F` file of
/// `-c 5 -i 0.05 -L 0.00001`, every packet later than the loss timeout.
#[test]
fn sessions_with_nothing_received() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "human"),
        (&["-M"], "M"),
        (&["-N", "2", "-M"], "N2M"),
        (&["-R"], "R"),
    ];
    check_cases("ref-owampd-empty", cases);
    check_cases("ref-owping-all-late", cases);
}

/// The reference's owstats never tests `-Q` (only its owping and owfetch do): it still
/// prints the summary, with `-Q`'s side effects (`-M` and `-v` ignored, with their
/// warnings), and `-R` still prints the raw records.
#[test]
fn quiet_still_prints_the_summary() {
    check_cases(
        "ref-owping-T",
        &[
            (&["-Q"], "human"),
            (&["-Q", "-M"], "human"),
            (&["-Q", "-v"], "human"),
            (&["-Q", "-R"], "R"),
        ],
    );
}

/// Local times under a `TZ` that is a POSIX rule rather than a zone name, which needs
/// no tzdata: the reference's owstats (glibc's localtime) printed these.
#[test]
fn local_times_under_posix_tz_rules() {
    check_cases_in(
        "ref-lossy",
        &[(&[], "human.TZ-CET")],
        "CET-1CEST,M3.5.0,M10.5.0/3",
    );
    check_cases_in(
        "ref-lossy",
        &[(&[], "human.TZ-EST5EDT")],
        "EST5EDT,M3.2.0,M11.1.0",
    );
}
