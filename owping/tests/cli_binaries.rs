//! The binaries' handling of help and bad command lines: usage on stderr, exit codes.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(bin).args(args).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_and_errors() {
    let bins = [
        (
            env!("CARGO_BIN_EXE_owping"),
            "owping",
            "[arguments] testaddr [servaddr]",
        ),
        (
            env!("CARGO_BIN_EXE_owstats"),
            "owstats",
            "[arguments] sessionfile [sessionfile]*",
        ),
        (
            env!("CARGO_BIN_EXE_owfetch"),
            "owfetch",
            "[arguments] servaddr [SID savefile]+",
        ),
        (env!("CARGO_BIN_EXE_owup"), "owup", "[arguments] servaddr"),
    ];
    for (bin, name, operands) in bins {
        let usage = format!("usage: {name} {operands}\n");
        let (code, out, err) = run(bin, &["-h"]);
        assert_eq!(code, Some(0), "{name} -h");
        assert!(out.is_empty());
        assert!(err.starts_with(&usage), "{err}");

        let (code, _, err) = run(bin, &["-x"]);
        assert_eq!(code, Some(2), "{name} -x");
        assert!(
            err.starts_with(&format!("{name}: invalid option -- 'x'\n{usage}")),
            "{err}"
        );

        let (code, _, err) = run(bin, &[]);
        assert_eq!(code, Some(1), "{name} without operands");
        assert!(err.starts_with(&format!("{name}: expected: ")), "{err}");
    }
    let (code, _, err) = run(env!("CARGO_BIN_EXE_owping"), &["-c", "x", "h"]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("owping: invalid value \"x\" for -c: positive integer expected\n"),
        "{err}"
    );
    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_owping"),
        &[
            "-Q",
            "-v",
            "-c",
            "1",
            "-L",
            "0.00001",
            "-b",
            "0.001",
            "127.0.0.1:1",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("owping: Ignoring '-v', '-Q' set\n"),
        "{err}"
    );
}

/// `-h` ends with a `Version:` line, as the reference's usage does, and `-V` /
/// `--version` print `<program> <version>` on stdout (Cargo's version, plus the git
/// revision when built from a checkout).
#[test]
fn version_line_and_version_option() {
    let version = buildinfo::version();
    assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
    for (bin, name) in [
        (env!("CARGO_BIN_EXE_owping"), "owping"),
        (env!("CARGO_BIN_EXE_owstats"), "owstats"),
        (env!("CARGO_BIN_EXE_owfetch"), "owfetch"),
        (env!("CARGO_BIN_EXE_owup"), "owup"),
        (env!("CARGO_BIN_EXE_powstream"), "powstream"),
    ] {
        let (code, _, err) = run(bin, &["-h"]);
        assert_eq!(code, Some(0), "{name} -h");
        assert!(
            err.ends_with(&format!("\n\nVersion: {version}\n")),
            "{name}: {err}"
        );
        for v in ["-V", "--version"] {
            let (code, out, err) = run(bin, &[v]);
            assert_eq!(code, Some(0), "{name} {v}: {err}");
            assert_eq!(out, format!("{name} {version}\n"), "{name} {v}");
            assert!(err.is_empty(), "{name} {v}: {err}");
        }
    }
}

/// The exit statuses README.md documents, for every client (0 success, 1 failure, 2 a
/// usage error getopt refuses or an interruption; the interrupted and the fetch cases
/// are covered where a server runs: mock_e2e.rs, owampd_e2e.rs).
#[test]
fn exit_statuses() {
    let closed = format!("127.0.0.1:{}", e2e::free_port());
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("x.owp").display().to_string();
    let not_owp = dir.path().join("not.owp");
    std::fs::write(&not_owp, "not an owp file").unwrap();
    let not_owp = not_owp.display().to_string();
    let sid = "ffffffffffffffffffffffffffffffff";
    let cases: &[(&str, &[&str], i32)] = &[
        // Success without a server: help and version.
        ("owping", &["-h"], 0),
        ("owstats", &["--version"], 0),
        ("owfetch", &["-V"], 0),
        ("owup", &["-h"], 0),
        // Usage errors: an unknown option, a missing value (usage on stderr).
        ("owping", &["-y", "host"], 2),
        ("owping", &["--nope", "host"], 2),
        ("owping", &["host", "-c"], 2),
        ("owstats", &["-x", "f.owp"], 2),
        ("owstats", &["f.owp", "-N"], 2),
        ("owfetch", &["-A"], 2),
        ("owup", &["-k"], 2),
        // Failures: a bad value, operands, a file, no server.
        ("owping", &["-c", "x", "host"], 1),
        ("owping", &["a", "b", "c"], 1),
        ("owping", &["-c", "1", "-i", "0.01", &closed], 1),
        ("owstats", &[], 1),
        ("owstats", &["/nonexistent/x.owp"], 1),
        ("owstats", &[&not_owp], 1),
        ("owfetch", &[&closed, sid], 1),
        ("owfetch", &[&closed, sid, &save], 1),
        ("owup", &[], 1),
        ("owup", &[&closed], 1),
    ];
    for (name, args, want) in cases {
        let bin = match *name {
            "owping" => env!("CARGO_BIN_EXE_owping"),
            "owstats" => env!("CARGO_BIN_EXE_owstats"),
            "owfetch" => env!("CARGO_BIN_EXE_owfetch"),
            _ => env!("CARGO_BIN_EXE_owup"),
        };
        let (code, out, err) = run(bin, args);
        assert_eq!(
            code,
            Some(*want),
            "{name} {args:?}: stdout {out:?} stderr {err:?}"
        );
        if *want == 2 {
            assert!(
                err.contains(&format!("usage: {name} ")),
                "{name} {args:?}: {err}"
            );
        }
    }
}

/// A clock the kernel does not call synchronised (STA_UNSYNC, as on this project's
/// machines, where no NTP daemon runs) gets one warning on stderr per run, in every
/// client, as with the reference; a synchronised one none. The expectation reads the
/// kernel's state the way the clients do (adjtimex through `sandbox`).
#[test]
fn unsynchronised_clock_is_warned_about_once() {
    let unsync = sandbox::kernel_clock().is_none_or(|c| !c.synchronized);
    let want = usize::from(unsync);
    let closed = format!("127.0.0.1:{}", e2e::free_port());
    let owp = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../owamp/tests/data/reference/ref-owping-T.owp"
    );
    let sid = "ffffffffffffffffffffffffffffffff";
    let runs: &[(&str, &[&str])] = &[
        (env!("CARGO_BIN_EXE_owstats"), &["-M", owp]),
        (env!("CARGO_BIN_EXE_owping"), &["-c", "1", &closed]),
        (
            env!("CARGO_BIN_EXE_owfetch"),
            &[&closed, sid, "/nonexistent/x"],
        ),
        (env!("CARGO_BIN_EXE_owup"), &[&closed]),
        (
            env!("CARGO_BIN_EXE_powstream"),
            &["-d", "/nonexistent/x", &closed],
        ),
    ];
    for (bin, args) in runs {
        let (_, out, err) = run(bin, args);
        assert_eq!(err.matches("NTP: ").count(), want, "{bin} {args:?}: {err}");
        assert!(!out.contains("NTP: "), "stdout is for results: {out}");
        if unsync {
            assert!(
                err.lines().any(|l| l.ends_with(
                    ": NTP: clock not synchronized (kernel STA_UNSYNC): one-way delays are likely off by the clocks' offset"
                ) || l.contains("NTP: clock synchronization unknown")),
                "{err}"
            );
        }
    }
    // Not for help, version or a usage error.
    for args in [&["-h"][..], &["-V"], &["-x"]] {
        let (_, _, err) = run(env!("CARGO_BIN_EXE_owstats"), args);
        assert!(!err.contains("NTP: "), "{args:?}: {err}");
    }
}
