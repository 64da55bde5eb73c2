//! The manual pages in `docs/man/` format cleanly (`groff -man -ww -z` prints nothing),
//! and each binary's page documents exactly the options the binary accepts: every
//! option the binary takes is in its page, and every option in its page is taken.
//!
//! What a binary accepts is found by asking it, not from its `-h` text: each letter
//! and digit, and the long options any of our binaries knows, are given to it with
//! surplus operands so that nothing can start (a server, a measurement, a cleanup);
//! an option is unknown when the binary refuses it by name as unknown.
//! What a page documents is read from its tagged paragraphs (`.TP`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man")
}

fn pages() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(man_dir())
        .expect("docs/man")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| ["1", "5", "8"].contains(&e.to_str().unwrap_or("")))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_page_formats_without_a_warning() {
    let pages = pages();
    assert!(pages.len() >= 11, "pages: {pages:?}");
    for p in pages {
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&p)
            .output()
            .expect("run groff (apt-get install groff-base)");
        assert!(
            out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The options a page documents: on the tag line of each `.TP`, every `\-x` that
/// is a single letter or digit (`\-gid` in `.BI \- gid` is a value, and `\-` alone
/// is a dash) and every `\-\-name`.
fn documented(page: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut lines = page.lines();
    while let Some(l) = lines.next() {
        if l.trim() != ".TP" {
            continue;
        }
        let Some(tag) = lines.next() else { break };
        let mut rest = tag;
        while let Some(i) = rest.find("\\-") {
            rest = &rest[i + 2..];
            let long = rest.strip_prefix("\\-");
            let word: String = long
                .unwrap_or(rest)
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            match long {
                Some(_) if !word.is_empty() => {
                    out.insert(format!("--{word}"));
                }
                None if word.chars().count() == 1 => {
                    out.insert(format!("-{word}"));
                }
                _ => {}
            }
        }
    }
    out
}

/// Every option a binary could take: each letter and digit, and the long options.
fn candidates() -> Vec<String> {
    let mut v: Vec<String> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .map(|c| format!("-{c}"))
        .collect();
    for long in ["help", "json", "version", "verbose", "quiet"] {
        v.push(format!("--{long}"));
    }
    v
}

/// Runs `bin opt` followed by surplus operands (which every binary refuses after its
/// options, so nothing starts); kills it if it has not exited within 20 s.
fn probe(bin: &Path, opt: &str) -> String {
    let mut cmd = Command::new(bin);
    cmd.arg(opt)
        .args([
            "probe-operand-1",
            "probe-operand-2",
            "probe-operand-3",
            "probe-operand-4",
        ])
        .env("OWAMPD_LIBEXEC_DIR", "/nonexistent");
    let what = format!(
        "{} {opt} ... (a probe that does not exit started something)",
        bin.display()
    );
    let out = e2e::run_with_deadline(&mut cmd, &what, Duration::from_secs(20));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether the output refuses `opt` as unknown: getopt's `invalid option -- 'x'` (or
/// `unrecognized`, `unknown`), clap's `unexpected argument '-x'`.
fn refused_as_unknown(opt: &str, output: &str) -> bool {
    let name = opt.trim_start_matches('-');
    output.lines().any(|l| {
        let lower = l.to_lowercase();
        let says_unknown = [
            "invalid option",
            "unrecognized option",
            "unknown option",
            "unexpected argument",
        ]
        .iter()
        .any(|w| lower.contains(w));
        let names_it = l.contains(&format!("'{opt}'"))
            || l.contains(&format!("'{name}'"))
            || l.contains(&format!("\"{opt}\""))
            || l.contains(&format!("`{opt}`"))
            || l.ends_with(&format!(" {opt}"));
        says_unknown && names_it
    })
}

fn accepted(bin: &Path) -> BTreeSet<String> {
    candidates()
        .into_iter()
        .filter(|o| !refused_as_unknown(o, &probe(bin, o)))
        .collect()
}

#[test]
fn each_binary_and_its_page_name_the_same_options() {
    let binaries = [
        ("owampd", "owampd.8"),
        ("owping", "owping.1"),
        ("owstats", "owstats.1"),
        ("owfetch", "owfetch.1"),
        ("owup", "owup.1"),
        ("owpfstore", "owpfstore.1"),
        ("owampd-cleanup", "owampd-cleanup.8"),
        ("powstream", "powstream.1"),
    ];
    let mut problems = Vec::new();
    for (bin, page) in binaries {
        let text = std::fs::read_to_string(man_dir().join(page)).expect(page);
        let doc = documented(&text);
        let takes = accepted(&e2e::bin(bin));
        // The probe itself must be able to fail: a binary refuses most letters.
        assert!(
            takes.len() < 40,
            "{bin}: {takes:?}: the probe sees every option as known"
        );
        for o in takes.difference(&doc) {
            problems.push(format!("{bin} takes {o}, which {page} does not document"));
        }
        for o in doc.difference(&takes) {
            problems.push(format!("{page} documents {o}, which {bin} does not take"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_page_reader_finds_tags() {
    let page = ".TP\n.BI \\-c \" count\"\n.TP\n.BR \\-h \", \" \\-\\-help\n.TP\n.BI \\-G \" group\"\nx\n.TP\n.BR \\-v [\\fIN\\fR]\n.TP\n.BI allow_open_mode= on | off\n.TP\n.BI group \" group\"\n";
    let want: BTreeSet<String> = ["-c", "-h", "--help", "-G", "-v"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(documented(page), want);
    assert!(refused_as_unknown("-x", "owping: invalid option -- 'x'"));
    assert!(refused_as_unknown(
        "-x",
        "owampd: unexpected argument '-x' found"
    ));
    assert!(!refused_as_unknown(
        "-c",
        "owampd: unexpected argument 'probe-operand-1' found"
    ));
    assert!(refused_as_unknown(
        "--json",
        "owup: invalid option -- '--json'"
    ));
}
