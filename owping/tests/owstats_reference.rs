//! owstats on `.owp` files written by the perfSONAR reference (5.2.3 rebuild, see
//! /work/ref/README.txt on the build host): its owping's `-T` file (fetched from its
//! owampd), its owping's `-F` file (written as receiver) and a file taken from its
//! owampd's datadir. The expected outputs are the reference owstats' stdout on the same
//! files with TZ=UTC, byte for byte (spec §8.3–8.5). All three sessions ran on
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
    let owp = data(&format!("{file}.owp"));
    let mut failures = Vec::new();
    for (args, tag) in CASES {
        let want = std::fs::read_to_string(data(&format!("{file}.{tag}.txt"))).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_owstats"))
            .args(*args)
            .arg(&owp)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || got != want {
            failures.push(format!(
                "owstats {args:?} {file}.owp: status {}\n--- want\n{want}--- got\n{got}",
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
