//! The real owampd driven by the real owping (and by the raw client where owping can't
//! say what the test needs): sessions in both directions in all three modes, fetch,
//! policy refusals, port exhaustion, configuration errors, signals, and the loss of a
//! tester or of the control process.

use e2e::raw::{Raw, receive_request};
use e2e::{Server, child_pids, free_port, machine_values, owp_files, run_client, wait_for};
use owamp::Mode;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn owping_ok(args: &[&str]) -> String {
    e2e::owping_ok(args, LONG)
}

/// Writes a confdir with a pfs for alice ("testpass") and optional conf/limits files.
fn confdir(root: &Path, conf: &str, limits: &str) -> std::path::PathBuf {
    let c = root.join("etc");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("owamp-server.pfs"), "alice 7465737470617373\n").unwrap();
    // With -c the reference requires the conf file to exist (owampd(8)).
    std::fs::write(c.join("owamp-server.conf"), format!("# test\n{conf}")).unwrap();
    if !limits.is_empty() {
        std::fs::write(c.join("owamp-server.limits"), limits).unwrap();
    }
    std::fs::write(root.join("client.pfs"), "alice 7465737470617373\n").unwrap();
    c
}

/// owampd on 127.0.0.1 with [`confdir`]'s files; also returns the temporary root, where
/// `client.pfs` is.
fn start_with_conf(conf: &str, limits: &str) -> (Server, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let c = confdir(&root, conf, limits);
    let server = Server::start_in(dir, "127.0.0.1", free_port(), &["-c", c.to_str().unwrap()]);
    (server, root)
}

#[test]
fn both_directions_in_every_mode() {
    let (server, root) = start_with_conf("", "");
    let pfs = root.join("client.pfs");
    for mode in ["O", "A", "E"] {
        let mut args = vec!["-A", mode, "-c", "20", "-i", "0.01f", "-L", "2", "-M"];
        if mode != "O" {
            args.extend(["-u", "alice", "-k", pfs.to_str().unwrap()]);
        }
        let target = server.target();
        args.push(&target);
        let out = owping_ok(&args);
        assert_eq!(
            machine_values(&out, "SENT"),
            ["20", "20"],
            "mode {mode}:\n{out}"
        );
        assert_eq!(
            machine_values(&out, "LOST"),
            ["0", "0"],
            "mode {mode}:\n{out}"
        );
        assert_eq!(
            machine_values(&out, "DUPS"),
            ["0", "0"],
            "mode {mode}:\n{out}"
        );
    }
}

/// `pbkdf2_count` in owamp-server.conf reaches the greeting and the key derivation: the
/// greeting carries it, a client deriving with it logs in (owping in encrypted mode runs
/// a session), and one that assumes the default 2048 is refused.
#[test]
fn the_pbkdf2_count_of_the_conf_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let conf = confdir(&root, "pbkdf2_count 4096\n", "");
    let server = Server::start_in(
        dir,
        "127.0.0.1",
        free_port(),
        &["-c", conf.to_str().unwrap()],
    );
    let raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.greeting.count, 4096);
    let mut wrong = Raw::connect(server.addr).unwrap();
    wrong.greeting.count = 2048;
    assert_eq!(
        wrong.setup(Mode::Encrypted, "alice", b"testpass").unwrap(),
        1
    );
    let mut right = Raw::connect(server.addr).unwrap();
    assert_eq!(
        right.setup(Mode::Encrypted, "alice", b"testpass").unwrap(),
        0
    );
    drop(right);
    let pfs = root.join("client.pfs");
    let target = server.target();
    let out = owping_ok(&[
        "-A",
        "E",
        "-u",
        "alice",
        "-k",
        pfs.to_str().unwrap(),
        "-c",
        "5",
        "-i",
        "0.01f",
        "-L",
        "2",
        "-M",
        &target,
    ]);
    assert_eq!(machine_values(&out, "SENT"), ["5", "5"], "{out}");
}

#[test]
fn saved_sessions_are_fetched_and_read_back() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("to.owp");
    let from = tmp.path().join("from.owp");
    owping_ok(&[
        "-c",
        "15",
        "-i",
        "0.01f",
        "-L",
        "2",
        "-Q",
        "-T",
        to.to_str().unwrap(),
        "-F",
        from.to_str().unwrap(),
        &server.target(),
    ]);
    for f in [&to, &from] {
        let out = run_client("owstats", &["-M", f.to_str().unwrap()], LONG);
        assert!(
            out.status.success(),
            "owstats {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8_lossy(&out.stdout);
        assert_eq!(machine_values(&s, "SENT"), ["15"], "{s}");
        assert_eq!(machine_values(&s, "LOST"), ["0"], "{s}");
    }
    // The server keeps the session it received; owfetch gets it again by SID.
    let out = run_client("owstats", &["-M", to.to_str().unwrap()], LONG);
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let sid = machine_values(&s, "SID").pop().expect("SID line");
    let again = tmp.path().join("again.owp");
    let out = run_client(
        "owfetch",
        &["-M", &server.target(), &sid, again.to_str().unwrap()],
        LONG,
    );
    assert!(
        out.status.success(),
        "owfetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&to).unwrap());
    // The data store holds it under the class hierarchy, and links nothing into the
    // catalog (the reference's links by SID; our index is in memory).
    let stored = server.session_file(&sid);
    assert!(stored.is_some(), "no {sid}.owp under hierarchy/");
    let links = std::fs::read_dir(server.datadir().join("catalog")).unwrap();
    assert_eq!(links.count(), 0);
}

#[test]
fn a_bandwidth_limit_refuses_the_session() {
    let (server, _) = start_with_conf("", "limit root with bandwidth=1k\n");
    let out = run_client(
        "owping",
        &["-c", "100", "-i", "0.001f", "-t", &server.target()],
        LONG,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Accept") || err.contains("refused") || err.contains("denied"),
        "{err}"
    );
}

/// `maxcontrolsessions`, counted by the master alone (docs/processes.md): a connection
/// over it is closed before any greeting, and a connection that ends (control's
/// `ConnectionDone`) frees its place.
#[test]
fn maxcontrolsessions_is_the_masters_count_and_freed_when_a_connection_ends() {
    let (server, _) = start_with_conf("maxcontrolsessions 1\n", "");
    // Greeted and set up: an open connection, once the harness's own readiness probe
    // (a connection too) has been reported done.
    let greeted = |addr| {
        Raw::connect(addr)
            .and_then(|mut c| Ok((c.setup(Mode::Open, "", b"")?, c)))
            .ok()
            .filter(|(accept, _)| *accept == 0)
            .map(|(_, c)| c)
    };
    let mut first = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            first = greeted(server.addr);
            first.is_some()
        }),
        "no connection greeted: {}",
        server.stderr()
    );
    // The second is closed at once; Raw::connect fails reading the greeting.
    assert!(
        Raw::connect(server.addr).is_err(),
        "a second connection was greeted"
    );
    assert!(
        wait_for(Duration::from_secs(10), || server
            .stderr()
            .contains("refused, maxcontrolsessions (1) reached")),
        "{}",
        server.stderr()
    );
    drop(first);
    // Control reports the end; then a new connection is greeted again.
    assert!(
        wait_for(Duration::from_secs(10), || greeted(server.addr).is_some()),
        "the first connection's place was never freed: {}",
        server.stderr()
    );
}

#[test]
fn port_range_exhaustion_answers_accept_5() {
    let port = free_port();
    let range = format!("{port}-{port}");
    let server = Server::start(&["-P", &range]);
    let mut first = Raw::connect(server.addr).unwrap();
    assert_eq!(first.setup(Mode::Open, "", b"").unwrap(), 0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = receive_request(udp.local_addr().unwrap(), server.addr.ip(), 10);
    let acc = first.request(&req).unwrap();
    assert_eq!(acc.accept, owamp::AcceptCode::Ok);
    assert_eq!(acc.port, port, "the only port in the range");
    let mut second = Raw::connect(server.addr).unwrap();
    assert_eq!(second.setup(Mode::Open, "", b"").unwrap(), 0);
    assert_eq!(
        second.request(&req).unwrap().accept,
        owamp::AcceptCode::TemporaryResourceLimit
    );
    // Once the first connection goes away, its port is free again.
    drop(first);
    let mut third_port = None;
    let freed = wait_for(Duration::from_secs(10), || {
        let mut third = Raw::connect(server.addr).unwrap();
        assert_eq!(third.setup(Mode::Open, "", b"").unwrap(), 0);
        let acc = third.request(&req).unwrap();
        third_port = Some(acc.port);
        acc.accept == owamp::AcceptCode::Ok
    });
    assert!(freed, "port never freed");
    assert_eq!(third_port, Some(port));
}

#[test]
fn configuration_errors_stop_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("owamp-server.conf"),
        "# a comment\nfrobnicate yes\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(e2e::bin("owampd"))
            .args(["-Z", "-S", &format!("127.0.0.1:{}", free_port())])
            .args([
                "-R",
                dir.path().to_str().unwrap(),
                "-d",
                dir.path().to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["-c", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owamp-server.conf:2"), "{err}");
    assert!(err.contains("frobnicate"), "{err}");
    for bad in [
        &["-P", "9000-8000"][..],
        &["-a", "X"],
        &["-S", "[::1"],
        &["-e", "nosuchfacility"],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.trim().is_empty() && err.trim().lines().count() <= 2,
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn sigterm_and_sighup_stop_everything_within_dieby() {
    for sig in ["TERM", "HUP", "INT"] {
        let mut server = Server::start(&[]);
        let pid_file = server.dir.path().join("owamp-server.pid");
        let info_file = server.dir.path().join("owamp-server.info");
        let pid = server.child.id();
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap().trim(),
            pid.to_string()
        );
        let info = std::fs::read_to_string(&info_file).unwrap();
        assert!(
            info.starts_with("START=") && info.contains(&format!("PID={pid}")),
            "{info}"
        );
        let control = [server.control_pid()];
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status();
        assert!(st.unwrap().success());
        let mut status = None;
        wait_for(Duration::from_secs(8), || {
            status = server.child.try_wait().unwrap();
            status.is_some()
        });
        let status = status.unwrap_or_else(|| panic!("SIG{sig}: not stopped"));
        assert!(status.success(), "SIG{sig}: {status}");
        assert!(
            !Path::new(&format!("/proc/{}", control[0])).exists(),
            "control survived"
        );
        assert!(!pid_file.exists(), "pid file left behind");
    }
}

#[test]
fn a_killed_control_process_is_restarted_and_stored_data_kept() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("to.owp");
    owping_ok(&[
        "-c",
        "10",
        "-i",
        "0.01f",
        "-L",
        "2",
        "-Q",
        "-T",
        to.to_str().unwrap(),
        &server.target(),
    ]);
    let out = run_client("owstats", &["-M", to.to_str().unwrap()], LONG);
    let sid = machine_values(&String::from_utf8_lossy(&out.stdout), "SID")
        .pop()
        .unwrap();

    let control = [server.control_pid()];
    Command::new("kill")
        .args(["-KILL", &control[0].to_string()])
        .status()
        .unwrap();
    let mut kids = Vec::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            kids = child_pids(server.child.id());
            kids.len() == 1 && kids[0] != control[0]
        }),
        "control not restarted: {kids:?}"
    );
    let new_control = kids[0];
    assert_ne!(new_control, control[0]);
    // Still measures, and the stored session survived the restart.
    owping_ok(&["-c", "10", "-i", "0.01f", "-L", "2", "-Q", &server.target()]);
    let again = tmp.path().join("again.owp");
    let out = run_client(
        "owfetch",
        &["-Q", &server.target(), &sid, again.to_str().unwrap()],
        LONG,
    );
    assert!(
        out.status.success(),
        "owfetch after restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A receive session accepted but never started has an empty data file; if control is
/// killed then, nobody deletes it on the connection's close. The restarted control
/// removes it (it holds no data) and says so.
#[test]
fn an_empty_file_left_by_a_killed_control_is_removed_at_restart() {
    let server = Server::start(&[]);
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.setup(Mode::Open, "", b"").unwrap(), 0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = receive_request(udp.local_addr().unwrap(), server.addr.ip(), 10);
    let acc = raw.request(&req).unwrap();
    assert_eq!(acc.accept, owamp::AcceptCode::Ok);
    let hierarchy = server.datadir().join("hierarchy");
    let files = owp_files(&hierarchy);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), 0);

    let control = server.control_pid();
    Command::new("kill")
        .args(["-KILL", &control.to_string()])
        .status()
        .unwrap();
    let removed = wait_for(Duration::from_secs(5), || {
        let kids = child_pids(server.child.id());
        kids.len() == 1 && kids[0] != control && owp_files(&hierarchy).is_empty()
    });
    assert!(
        removed,
        "empty file not removed after the restart: {:?}; {}",
        owp_files(&hierarchy),
        server.stderr()
    );
    assert!(!files[0].exists());
    assert!(
        wait_for(Duration::from_secs(5), || server
            .stderr()
            .contains("empty (a session accepted but never started)")),
        "no log line for the removal: {}",
        server.stderr()
    );
    drop(raw);
}

#[test]
fn a_killed_tester_ends_only_its_own_session() {
    let server = Server::start(&[]);
    let target = server.target();
    // A long session toward the server (its tester is a receiver)...
    let long = std::thread::spawn(move || {
        run_client(
            "owping",
            &["-c", "2000", "-i", "0.005f", "-L", "2", "-t", "-M", &target],
            LONG,
        )
    });
    let control = server.control_pid();
    let mut testers = Vec::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            testers = server.tester_pids();
            !testers.is_empty()
        }),
        "no tester appeared"
    );
    let tester = testers[0];
    // ps names the session (once the tester has set its name), and the data file is
    // bounded (RLIMIT_FSIZE).
    let cmdline = || std::fs::read_to_string(format!("/proc/{tester}/cmdline")).unwrap();
    wait_for(Duration::from_secs(10), || {
        cmdline().starts_with("owampd-tester [sid=")
    });
    assert!(
        cmdline().starts_with("owampd-tester [sid="),
        "{:?}",
        cmdline()
    );
    // argv[0] is there from the exec; the tester sets RLIMIT_FSIZE itself a moment
    // later, in its sandbox step, before it reads its first message.
    let fsize = || {
        std::fs::read_to_string(format!("/proc/{tester}/limits"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max file size"))
            .unwrap_or_default()
            .to_string()
    };
    wait_for(Duration::from_secs(10), || {
        let l = fsize();
        !l.is_empty() && !l.contains("unlimited")
    });
    let fsize = fsize();
    assert!(!fsize.is_empty() && !fsize.contains("unlimited"), "{fsize}");
    Command::new("kill")
        .args(["-KILL", &tester.to_string()])
        .status()
        .unwrap();
    // ...meanwhile another session completes normally.
    owping_ok(&["-c", "10", "-i", "0.01f", "-L", "2", "-M", &server.target()]);
    let out = long.join().unwrap();
    // The interrupted session ends (with an error or partial results), without hanging.
    let _ = out.status;
    assert_eq!(
        child_pids(server.child.id()),
        vec![control],
        "control survived the tester"
    );
}

/// A tester asks for a timer slack of 1 % of its session's mean interval (1 ms at 10
/// packets/s), so the kernel can end many sessions' sleeps with one interrupt.
#[test]
fn a_tester_sets_its_timer_slack_from_the_session_rate() {
    let server = Server::start(&[]);
    let target = server.target();
    let client = std::thread::spawn(move || {
        run_client(
            "owping",
            &["-c", "30", "-i", "0.1", "-L", "2", "-t", &target],
            LONG,
        )
    });
    let mut tester = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            tester = server.tester_pids().first().copied();
            tester.is_some()
        }),
        "no tester appeared"
    );
    let tester = tester.unwrap_or_default();
    let slack = || {
        std::fs::read_to_string(format!("/proc/{tester}/timerslack_ns"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert!(
        wait_for(Duration::from_secs(10), || slack() == "1000000"),
        "tester {tester}: timerslack_ns {:?}",
        slack()
    );
    let out = client.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
