//! The real client binaries against the in-process mock server (tests/support): both
//! directions in open, authenticated and encrypted modes, saved files read back by
//! owstats, owfetch by SID, owup, and refusals.

mod support;

use owamp::{AcceptCode, ModeSet};
use std::collections::HashMap;
use std::process::{Command, Output};
use support::{MockConfig, MockServer};

const FAST: &[&str] = &[
    "-c", "20", "-i", "0.005f", "-L", "1", "-E", "0.1", "-P", "0",
];

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run client")
}

fn owping(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_owping"), args)
}

/// stderr without the one line an unsynchronised clock adds (cli_binaries.rs tests it).
fn without_clock_warning(err: &str) -> String {
    err.lines()
        .filter(|l| !l.contains(": NTP: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn server(cfg: MockConfig) -> (MockServer, String) {
    let s = MockServer::start(cfg);
    let a = s.addr.to_string();
    (s, a)
}

fn users() -> MockConfig {
    let mut u = HashMap::new();
    u.insert("alice".to_string(), b"secret".to_vec());
    MockConfig {
        users: u,
        ..MockConfig::default()
    }
}

fn pfs(dir: &std::path::Path) -> String {
    let p = dir.join("client.pfs");
    // "secret" in hex, as in an owamp-server.pfs file.
    std::fs::write(&p, "alice 736563726574\n").unwrap();
    p.display().to_string()
}

fn assert_both_directions(out: &Output) {
    let so = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{so}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert_eq!(so.matches("--- owping statistics from").count(), 2, "{so}");
    assert_eq!(
        so.matches("20 sent, 0 lost (0.000%), 0 duplicates").count(),
        2,
        "{so}"
    );
    assert!(so.starts_with("Approximately "), "{so}");
}

#[test]
fn open_mode_both_directions() {
    let (_s, addr) = server(MockConfig::default());
    let mut args = FAST.to_vec();
    args.push(&addr);
    assert_both_directions(&owping(&args));
}

#[test]
fn authenticated_and_encrypted_modes() {
    let dir = tempfile::tempdir().unwrap();
    let pf = pfs(dir.path());
    for (modes, label) in [
        ("A", "authenticated"),
        ("E", "encrypted"),
        ("AEO", "default"),
    ] {
        let (_s, addr) = server(users());
        let mut args = FAST.to_vec();
        args.extend(["-A", modes, "-u", "alice", "-k", &pf, &addr]);
        let out = owping(&args);
        assert_both_directions(&out);
        let _ = label;
    }
}

#[test]
fn wrong_passphrase_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.pfs");
    std::fs::write(&p, "alice 6e6f7065\n").unwrap();
    let (_s, addr) = server(users());
    let mut args = FAST.to_vec();
    args.extend(["-A", "A", "-u", "alice", "-k", p.to_str().unwrap(), &addr]);
    let out = owping(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Server-Start refused"), "{err}");
    assert!(err.contains("Accept=1"), "{err}");
    assert!(err.contains("authentication"), "{err}");
}

#[test]
fn no_common_mode() {
    let (_s, addr) = server(MockConfig {
        modes: ModeSet(2 | 4),
        ..MockConfig::default()
    });
    let out = owping(&["-c", "5", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("No Common Modes"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn refused_request_names_the_accept_code() {
    let (_s, addr) = server(MockConfig {
        refuse_request: Some(AcceptCode::TemporaryResourceLimit),
        ..MockConfig::default()
    });
    let out = owping(&["-c", "5", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Request-Session refused"), "{err}");
    assert!(err.contains("Accept=5"), "{err}");
    assert!(err.contains("try again later"), "{err}");
}

#[test]
fn saved_files_are_read_back_by_owstats() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("to.owp");
    let from = dir.path().join("from.owp");
    let (_s, addr) = server(MockConfig::default());
    let mut args = FAST.to_vec();
    args.extend([
        "-M",
        "-T",
        to.to_str().unwrap(),
        "-F",
        from.to_str().unwrap(),
        &addr,
    ]);
    let out = owping(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert_eq!(so.matches("SUMMARY\t3.00").count(), 2, "{so}");
    for f in [&to, &from] {
        let st = run(env!("CARGO_BIN_EXE_owstats"), &["-M", f.to_str().unwrap()]);
        assert!(st.status.success(), "{}", text(&st.stderr));
        let s = text(&st.stdout);
        assert!(s.contains("SENT\t20\n") && s.contains("LOST\t0\n"), "{s}");
        // The same summary owping printed, apart from the host names.
        let sid_line = s.lines().find(|l| l.starts_with("SID\t")).unwrap();
        assert!(so.contains(sid_line), "{sid_line} not in owping output");
        let raw = run(env!("CARGO_BIN_EXE_owstats"), &["-R", f.to_str().unwrap()]);
        assert_eq!(text(&raw.stdout).lines().count(), 20);
    }
}

#[test]
fn raw_output_and_owfetch_by_sid() {
    let dir = tempfile::tempdir().unwrap();
    let (s, addr) = server(MockConfig::default());
    let mut args = FAST.to_vec();
    args.extend(["-t", "-R", &addr]);
    let out = owping(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert_eq!(so.lines().count(), 20, "-R prints only the records:\n{so}");
    for l in so.lines() {
        assert_eq!(l.split(' ').count(), 8, "{l}");
    }
    let sid = s.stored_sids()[0].to_hex();
    let f = dir.path().join("fetched.owp");
    let fetched = run(
        env!("CARGO_BIN_EXE_owfetch"),
        &["-R", &addr, &sid, f.to_str().unwrap()],
    );
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    assert_eq!(
        text(&fetched.stdout),
        so,
        "owfetch -R prints the same records"
    );
    // An unknown SID is refused with the Accept code.
    let bad = run(
        env!("CARGO_BIN_EXE_owfetch"),
        &[
            &addr,
            "00000000000000000000000000000000",
            f.to_str().unwrap(),
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("Accept=1"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn json_output_is_one_document_per_session() {
    let (_s, addr) = server(MockConfig::default());
    let mut args = FAST.to_vec();
    args.extend(["--json", &addr]);
    let out = owping(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    let docs: Vec<serde_json::Value> = so
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    assert_eq!(docs.len(), 2);
    for d in docs {
        assert_eq!(d["summary"]["sent"], 20);
        assert_eq!(d["summary"]["lost"], 0);
    }
}

#[test]
fn owup_prints_the_start_time() {
    let (_s, addr) = server(MockConfig::default());
    let out = Command::new(env!("CARGO_BIN_EXE_owup"))
        .arg(&addr)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // Start-Time 0xdd12e59f.00000000 (NTP) = 2017-07-14 06:39:27 UTC.
    // Exactly the reference's one line, nothing after it (and, as with the reference,
    // the warning of an unsynchronised clock before it).
    assert_eq!(
        without_clock_warning(&err),
        "Server Up Since: 2017-07-14T06:39:27.000UTC\n"
    );
}

#[test]
fn connection_refused_is_reported() {
    // A port with no listener.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let out = owping(&["-c", "5", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Unable to open control connection"), "{err}");
    // Said once, not once by owping and again by the connect error it wraps.
    assert_eq!(
        err.to_lowercase()
            .matches("unable to open control connection")
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn sigint_stops_the_sessions_cleanly_and_prints_the_partial_results() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let (s, addr) = server(MockConfig::default());
    let child = Command::new(env!("CARGO_BIN_EXE_owping"))
        .args([
            "-c", "5000", "-i", "0.01f", "-L", "0.5", "-E", "0.1", "-P", "0", &addr,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the sessions run and packets flow (a session stopped before its
    // first packet holds no records, and its fetch is refused).
    assert!(
        e2e::wait_for(std::time::Duration::from_secs(20), || s.starts() > 0
            && s.received() > 0),
        "the sessions never started"
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    // As the reference owping: Stop-Sessions, fetch, the partial statistics; then exit 2
    // ("interrupted"; the reference exits 0 here).
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.matches("--- owping statistics from").count(),
        2,
        "{stdout}"
    );
    // The mock stores its receive session only after a complete Stop-Sessions exchange.
    assert_eq!(s.stored_sids().len(), 1);
}

#[test]
fn source_address_and_device() {
    let (_s, addr) = server(MockConfig::default());
    // SO_BINDTODEVICE may need CAP_NET_RAW: the device variants run as root only.
    let root = nix::unistd::geteuid().is_root();
    let variants: &[&[&str]] = if root {
        &[&["-S", "127.0.0.1"], &["-S", "lo"], &["-B", "lo"]]
    } else {
        &[&["-S", "127.0.0.1"]]
    };
    for src in variants {
        let mut args = FAST.to_vec();
        args.extend_from_slice(src);
        args.push(&addr);
        assert_both_directions(&owping(&args));
    }
}

#[test]
fn ipv6_both_directions_and_family_flags() {
    let s = MockServer::start_on("[::1]:0", MockConfig::default());
    let target = format!("[::1]:{}", s.addr.port());
    let mut args = FAST.to_vec();
    args.push(&target);
    assert_both_directions(&owping(&args));
    // -4 cannot reach an IPv6-only name.
    let out = owping(&["-4", "-c", "5", &target]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no IPv4 address"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn passphrase_from_stdin_without_a_terminal() {
    use std::io::Write;
    // setsid: no controlling terminal, so the pass-phrase is read from stdin.
    let Ok(setsid) = which_setsid() else {
        eprintln!("SKIPPED: setsid(1) not found");
        return;
    };
    let (_s, addr) = server(users());
    let mut args = vec![env!("CARGO_BIN_EXE_owping")];
    args.extend_from_slice(FAST);
    args.extend(["-A", "E", "-u", "alice", &addr]);
    let mut child = Command::new(setsid)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"secret\n").unwrap();
    assert_both_directions(&child.wait_with_output().unwrap());
}

fn which_setsid() -> Result<std::path::PathBuf, ()> {
    ["/usr/bin/setsid", "/bin/setsid"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn server_sends_stop_sessions_first() {
    let (_s, addr) = server(MockConfig {
        stop_first: true,
        ..MockConfig::default()
    });
    // A long local end delay: the server's Stop-Sessions arrives while our sender waits.
    let out = owping(&[
        "-c", "20", "-i", "0.005f", "-L", "0.5", "-E", "3", "-P", "0", &addr,
    ]);
    assert_both_directions(&out);
}

#[test]
fn unsupported_requests_are_refused_locally() {
    let (_s, addr) = server(MockConfig::default());
    let out = owping(&["-c", "0", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        without_clock_warning(&text(&out.stderr))
            .starts_with("owping: Invalid test specification: "),
        "{}",
        text(&out.stderr)
    );
    let out = owping(&["-c", "5", "-L", "0.00001", "-b", "0.001", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("LossThreshold(0.000010) '-L' < BucketWidth (0.001000) '-b'"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn owfetch_several_sids_continues_after_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let (s, addr) = server(MockConfig::default());
    let mut args = FAST.to_vec();
    args.extend(["-t", "-Q", &addr]);
    assert!(owping(&args).status.success());
    let sid = s.stored_sids()[0].to_hex();
    let a = dir.path().join("a.owp");
    let b = dir.path().join("b.owp");
    let out = run(
        env!("CARGO_BIN_EXE_owfetch"),
        &[
            "-M",
            &addr,
            "ffffffffffffffffffffffffffffffff",
            a.to_str().unwrap(),
            &sid,
            b.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "one of the two fetches was refused"
    );
    assert!(!a.exists(), "a refused fetch leaves no file");
    assert!(b.is_file());
    assert!(
        text(&out.stdout).contains(&format!("SID\t{sid}\n")),
        "{}",
        text(&out.stdout)
    );
    // A refused fetch into an existing file keeps what it held.
    std::fs::write(&a, b"precious").unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_owfetch"),
        &[
            "-M",
            &addr,
            "ffffffffffffffffffffffffffffffff",
            a.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&a).unwrap(), b"precious");
}
