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
        assert_eq!(code, Some(1), "{name} -x");
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
