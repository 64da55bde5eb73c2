//! Command-line parsing of every option of protocol.md §8.1, and its errors.

use owamp::{ModeSet, Num64, SlotKind};
use owping::opts::{CommandLine, OptsError, Program, parse_command_line};
use owping::parse::{ParseError, parse_dscp};
use std::path::PathBuf;

fn p(prog: Program, args: &[&str]) -> Result<CommandLine, OptsError> {
    let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    parse_command_line(prog, &v)
}

fn ok(args: &[&str]) -> CommandLine {
    p(Program::Owping, args).unwrap()
}

#[test]
fn defaults() {
    let c = ok(&["host"]);
    assert_eq!(c.test.count, 100);
    assert!(c.test.to && c.test.from, "both directions by default");
    assert_eq!(c.test.slots.len(), 1);
    assert_eq!(c.test.slots[0].kind, SlotKind::Exponential);
    assert_eq!(c.test.slots[0].param, Num64(0x1999_99A0));
    assert_eq!((c.test.ports.low, c.test.ports.high), (8760, 9960));
    assert_eq!(c.test.padding, 0);
    assert_eq!(c.test.loss_threshold, None);
    assert_eq!(c.out.units, 'm');
    assert_eq!(c.out.bucket_width, 0.0001);
    assert_eq!(c.conn.auth_modes, None);
    assert_eq!(c.operands, vec!["host".to_string()]);
}

#[test]
fn test_options() {
    let c = ok(&[
        "-c",
        "10",
        "-D",
        "ef",
        "-E",
        "0.5",
        "-i",
        "0.01f,2E",
        "-s",
        "99999",
        "-L",
        "3",
        "-P",
        "9000-9010",
        "-z",
        "2.5",
        "-T",
        "/tmp/to.owp",
        "peer",
        "server:4000",
    ]);
    assert_eq!(c.test.count, 10);
    assert_eq!(c.test.dscp, Some(46));
    assert_eq!(c.test.end_delay, Some(0.5));
    assert_eq!(c.test.slots[0].kind, SlotKind::Fixed);
    assert_eq!(c.test.slots[0].param, Num64::from_secs_f64(0.01));
    assert_eq!(c.test.slots[1].kind, SlotKind::Exponential);
    assert_eq!(c.test.slots[1].param, Num64(2 << 32));
    assert_eq!(c.test.padding, 65_000, "clamped like MAX_PADDING_SIZE");
    assert_eq!(c.test.loss_threshold, Some(3.0));
    assert_eq!((c.test.ports.low, c.test.ports.high), (9000, 9010));
    assert_eq!(c.test.delay_start, 2.5);
    assert!(
        c.test.to && !c.test.from,
        "-T alone means only the 'to' direction"
    );
    assert_eq!(c.test.save_to, Some(PathBuf::from("/tmp/to.owp")));
    assert_eq!(
        c.operands,
        vec!["peer".to_string(), "server:4000".to_string()]
    );

    let c = ok(&["-f", "h"]);
    assert!(!c.test.to && c.test.from);
    let c = ok(&["-F", "x.owp", "-t", "h"]);
    assert!(c.test.to && c.test.from);
    assert_eq!(c.test.save_from, Some(PathBuf::from("x.owp")));
    let c = ok(&["-P", "0", "h"]);
    assert!(c.test.ports.is_ephemeral());
    let c = ok(&["-L", "0", "h"]);
    assert_eq!(c.test.loss_threshold, None, "-L 0 means the default");
    let c = ok(&["-i", "0.1", "h"]);
    assert_eq!(
        c.test.slots[0].param,
        Num64(0x1999_9999),
        "the double 0.1 truncates"
    );
}

#[test]
fn connection_options() {
    let c = ok(&[
        "-4", "-A", "ae", "-k", "/etc/pfs", "-u", "alice", "-S", "10.0.0.1", "-B", "eth0", "h",
    ]);
    assert!(c.conn.v4only && !c.conn.v6only);
    assert_eq!(c.conn.auth_modes, Some(ModeSet(2 | 4)));
    assert_eq!(c.conn.pffile, Some(PathBuf::from("/etc/pfs")));
    assert_eq!(c.conn.identity.as_deref(), Some("alice"));
    assert_eq!(c.conn.srcaddr.as_deref(), Some("10.0.0.1"));
    assert_eq!(c.conn.bind_device.as_deref(), Some("eth0"));
    assert!(ok(&["-6", "h"]).conn.v6only);
    assert_eq!(
        p(Program::Owping, &["-4", "-6", "h"]),
        Err(OptsError::BothFamilies)
    );
    assert!(matches!(
        p(Program::Owping, &["-A", "X", "h"]),
        Err(OptsError::AuthMode { .. })
    ));
}

#[test]
fn output_options() {
    let c = ok(&[
        "-a", "95,99.9", "-b", "0.001", "-d", "/tmp", "-n", "u", "-N", "50", "-p", "-v10", "-U",
        "--json", "h",
    ]);
    assert_eq!(c.out.percentiles, vec![95.0, 99.9]);
    assert_eq!(c.out.bucket_width, 0.001);
    assert_eq!(c.out.savedir, Some(PathBuf::from("/tmp")));
    assert_eq!(c.out.units, 'u');
    assert_eq!(c.out.sub_session, 50);
    assert!(c.out.print_files && c.out.unix_ts && c.out.json);
    assert!(c.out.records);
    assert_eq!(c.out.record_limit, 10);

    // -v with a separate word: the word is an operand (optional args must be attached).
    let c = ok(&["-v", "h"]);
    assert!(c.out.records);
    assert_eq!(c.out.record_limit, 0);
    assert_eq!(c.operands, vec!["h".to_string()]);

    // Precedence: -R implies -Q, -Q cancels -v and -M, -M cancels -v.
    let c = ok(&["-R", "-v", "-M", "h"]);
    assert!(c.out.raw && c.out.quiet && !c.out.records && !c.out.machine);
    assert_eq!(
        c.warnings,
        vec!["Ignoring '-v', '-Q' set", "Ignoring '-M', '-Q' set"]
    );
    let c = ok(&["-M", "-v", "h"]);
    assert!(c.out.machine && !c.out.records);
    assert_eq!(c.warnings, vec!["Ignoring '-v', '-M' set"]);
    let c = ok(&["-QR", "h"]);
    assert!(c.out.quiet && c.out.raw);
}

#[test]
fn value_errors() {
    let bad: &[&[&str]] = &[
        &["-c", "ten", "h"],
        &["-c", "-1", "h"],
        &["-c", "99999999999", "h"],
        &["-s", "1x", "h"],
        &["-L", "-1", "h"],
        &["-z", "abc", "h"],
        &["-E", "1.5s", "h"],
        &["-b", "0", "h"],
        &["-b", "-0.1", "h"],
        &["-N", "x", "h"],
        &["-vx", "h"],
        &["-n", "k", "h"],
        &["-a", "101", "h"],
        &["-a", "50,", "h"],
        &["-i", "", "h"],
        &["-i", "0.1,,0.2", "h"],
        &["-i", "0.1x", "h"],
        &["-i", "0.1ee", "h"],
        &["-i", "fast", "h"],
        &["-D", "af44", "h"],
        &["-D", "64", "h"],
        &["-P", "9000-8000", "h"],
        &["-D", "1", "-D", "2", "h"],
        &["-x", "h"],
        &["-c"],
    ];
    for args in bad {
        assert!(
            p(Program::Owping, args).is_err(),
            "{args:?} should be refused"
        );
    }
    assert_eq!(
        p(Program::Owping, &["-D", "1", "-D", "2", "h"]),
        Err(OptsError::TwoDscp)
    );
    assert_eq!(
        p(Program::Owping, &["-i", "0.1x", "h"]),
        Err(OptsError::Value(ParseError::SlotType {
            suffix: "x".into()
        }))
    );
    let msg = p(Program::Owping, &["-c", "ten", "h"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "invalid value \"ten\" for -c: positive integer expected"
    );
}

#[test]
fn operands_per_program() {
    assert!(p(Program::Owping, &[]).is_err());
    assert!(p(Program::Owping, &["a", "b", "c"]).is_err());
    assert!(p(Program::Owping, &["-h"]).unwrap().help);
    assert!(p(Program::Owstats, &[]).is_err());
    assert!(
        p(Program::Owstats, &["-c", "5", "f.owp"]).is_err(),
        "owstats has no -c"
    );
    assert_eq!(
        p(Program::Owstats, &["-M", "a.owp", "b.owp"])
            .unwrap()
            .operands
            .len(),
        2
    );
    assert!(p(Program::Owfetch, &["srv", "sid"]).is_err());
    assert!(p(Program::Owfetch, &["srv", "sid", "f", "sid2"]).is_err());
    assert!(p(Program::Owfetch, &["-u", "me", "srv", "sid", "f"]).is_ok());
    assert!(
        p(Program::Owfetch, &["-t", "srv", "sid", "f"]).is_err(),
        "owfetch has no -t"
    );
    assert!(p(Program::Owup, &["srv"]).is_ok());
    assert!(
        p(Program::Owup, &["-M", "srv"]).is_err(),
        "owup has no output options"
    );
    assert!(p(Program::Owup, &["a", "b"]).is_err());
}

#[test]
fn dscp_names() {
    let cases = [
        ("0", 0),
        ("63", 63),
        ("0x2e", 46),
        ("010", 8),
        ("", 0),
        ("none", 0),
        ("DEFAULT", 0),
        ("df", 0),
        ("EF", 46),
        ("cs0", 0),
        ("CS7", 56),
        ("cs5 ", 40),
        ("AF11", 10),
        ("Af43", 38),
        ("AF41", 34),
        (" 12", 12),
    ];
    for (text, want) in cases {
        assert_eq!(parse_dscp(text), Ok(want), "{text:?}");
    }
    // The reference's AFxy names need an upper-case A (protocol.md §10).
    for bad in [
        "af11", "aF11", "AF51", "AF14", "cs8", "ef1", "0x40", "nonex", "1x",
    ] {
        assert!(parse_dscp(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn usage_mentions_every_option() {
    let u = owping::opts::usage(Program::Owping);
    for o in [
        "-A", "-k", "-S", "-B", "-u", "-4", "-6", "-c", "-D", "-E", "-f | -F", "-i", "-L", "-P",
        "-s", "-t | -T", "-z", "-a", "-b", "-d", "-M", "-n", "-N", "-p", "-Q", "-R", "-v[N]", "-U",
        "--json", "-h",
    ] {
        assert!(u.contains(&format!("   {o}")), "usage lacks {o}");
    }
    assert!(owping::opts::usage(Program::Owup).starts_with("usage: owup [arguments] servaddr\n"));
}
