//! Runs `sandbox-probe` (this package's binary) in a child process, lets it enter a role's
//! sandbox and do one action, and checks how it ended: allowed actions exit 0, forbidden
//! syscalls die by SIGSYS, Landlock denials return EACCES.
//!
//! These need root (uid change, bounding set). Not root: they print why and pass, except
//! under CI=true, where they fail (ARCHITECTURE.md "Conventions").

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output};

const PROBE: &str = env!("CARGO_BIN_EXE_sandbox-probe");

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and CI=true forbids skipping");
    }
    eprintln!("{test}: skipped, needs root (uid change, capability bounding set)");
    false
}

fn nobody() -> sandbox::RunAs {
    sandbox::lookup_user("nobody").expect("user nobody")
}

fn run_as_arg() -> String {
    let n = nobody();
    format!("{}:{}", n.uid, n.gid)
}

/// Runs the probe; RUST_BACKTRACE is removed because printing a backtrace opens
/// /proc/self/maps, which the tester may not do (a panic must end by SIGABRT).
fn probe(role: &str, action: &str, extra: &[&str]) -> Output {
    Command::new(PROBE)
        .arg(role)
        .arg(action)
        .args(extra)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run sandbox-probe")
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_lives(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(0), "{what}: {}", describe(out));
}

fn assert_sigsys(out: &Output, what: &str) {
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSYS),
        "{what}: {}",
        describe(out)
    );
}

/// A data dir the run-as user owns, as the packaged owampd datadir is.
fn data_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let n = nobody();
    std::os::unix::fs::chown(d.path(), Some(n.uid), Some(n.gid)).expect("chown data dir");
    d
}

fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

const FORBIDDEN_TESTER: &[&str] = &[
    "open",
    "stat-path",
    "socket",
    "connect",
    "execve",
    "fork",
    "mmap-exec",
];
const ALLOWED_TESTER: &[&str] = &[
    "nothing",
    "fds-closed",
    "udp",
    "sockopts",
    "write-file",
    "write-too-big",
    "clock",
    "alloc",
    "name",
];

#[test]
fn tester_forbidden_syscalls_die_by_sigsys() {
    if !root_or_skip("tester_forbidden_syscalls_die_by_sigsys") {
        return;
    }
    let who = run_as_arg();
    for action in FORBIDDEN_TESTER {
        assert_sigsys(&probe("tester", action, &["--run-as", &who]), action);
    }
}

#[test]
fn tester_allowed_actions_live() {
    if !root_or_skip("tester_allowed_actions_live") {
        return;
    }
    let who = run_as_arg();
    for action in ALLOWED_TESTER {
        assert_lives(&probe("tester", action, &["--run-as", &who]), action);
    }
}

#[test]
fn tester_panic_aborts_instead_of_sigsys() {
    if !root_or_skip("tester_panic_aborts_instead_of_sigsys") {
        return;
    }
    let out = probe("tester", "panic", &["--run-as", &run_as_arg()]);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{}",
        describe(&out)
    );
}

#[test]
fn enter_refuses_a_multi_threaded_process() {
    if !root_or_skip("enter_refuses_a_multi_threaded_process") {
        return;
    }
    let out = probe("tester", "threaded", &["--run-as", &run_as_arg()]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("single_thread"),
        "{}",
        describe(&out)
    );
}

#[test]
fn tester_log_mode_does_not_kill() {
    if !root_or_skip("tester_log_mode_does_not_kill") {
        return;
    }
    // socket() is forbidden; in Log mode it is only logged, so the probe reports the
    // unexpected success itself (exit 1) instead of dying.
    let out = probe("tester", "socket", &["--run-as", &run_as_arg(), "--log"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

#[test]
fn uid_drop_is_complete_for_the_tester() {
    if !root_or_skip("uid_drop_is_complete_for_the_tester") {
        return;
    }
    let n = nobody();
    let out = probe("tester", "status", &["--run-as", &run_as_arg()]);
    assert_lives(&out, "status");
    let s = String::from_utf8_lossy(&out.stdout);
    let uid = n.uid.to_string();
    let gid = n.gid.to_string();
    assert_eq!(
        status_field(&s, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [uid.as_str(); 4]
    );
    assert_eq!(
        status_field(&s, "Gid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [gid.as_str(); 4]
    );
    assert_eq!(status_field(&s, "Groups"), "");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&s, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(status_field(&s, "NoNewPrivs"), "1");
    assert_eq!(status_field(&s, "Seccomp"), "2");
}

#[test]
fn uid_drop_is_complete_for_control() {
    if !root_or_skip("uid_drop_is_complete_for_control") {
        return;
    }
    let d = data_dir();
    let dir = d.path().to_str().expect("utf-8 temp path");
    let out = probe(
        "control",
        "status",
        &["--run-as", &run_as_arg(), "--data-dir", dir],
    );
    assert_lives(&out, "status");
    let s = String::from_utf8_lossy(&out.stdout);
    let uid = nobody().uid.to_string();
    assert_eq!(
        status_field(&s, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [uid.as_str(); 4]
    );
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&s, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(status_field(&s, "NoNewPrivs"), "1");
    assert_eq!(status_field(&s, "Seccomp"), "2");
}

/// Started without root (as nobody): no uid change and no bounding-set change are
/// possible, everything else still applies (docs/processes.md "Sandbox", last paragraph).
#[test]
fn unprivileged_start_still_confines() {
    if !root_or_skip("unprivileged_start_still_confines") {
        return;
    }
    assert_unprivileged_status("tester");
    assert_sigsys(&probe_as_nobody("tester", "open"), "open as nobody");
    assert_lives(&probe_as_nobody("tester", "udp"), "udp as nobody");
}

/// Runs the probe as `nobody` (not root from the start).
fn probe_as_nobody(role: &str, action: &str) -> std::process::Output {
    let n = nobody();
    Command::new(PROBE)
        .args([role, action])
        .env_remove("RUST_BACKTRACE")
        .uid(n.uid)
        .gid(n.gid)
        .output()
        .expect("run probe as nobody")
}

/// A `role` probe started as nobody has no capabilities, no_new_privs and a seccomp
/// filter. (Not root: nothing to hand on, so no_new_privs is safe for the master too
/// and lets its deny-list load without CAP_SYS_ADMIN.)
fn assert_unprivileged_status(role: &str) {
    let out = probe_as_nobody(role, "status");
    assert_lives(&out, "status");
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status_field(&s, "CapPrm"), "0000000000000000", "{role}");
    assert_eq!(status_field(&s, "CapEff"), "0000000000000000", "{role}");
    assert_eq!(status_field(&s, "NoNewPrivs"), "1", "{role}");
    assert_eq!(status_field(&s, "Seccomp"), "2", "{role}");
}

#[test]
fn unprivileged_master_gets_no_new_privs_and_no_caps() {
    if !root_or_skip("unprivileged_master_gets_no_new_privs_and_no_caps") {
        return;
    }
    assert_unprivileged_status("master");
    assert_sigsys(&probe_as_nobody("master", "unshare"), "unshare");
}

#[test]
fn control_landlock_allows_the_data_dir_only() {
    if !root_or_skip("control_landlock_allows_the_data_dir_only") {
        return;
    }
    let d = data_dir();
    let dir = d.path().to_str().expect("utf-8 temp path");
    let who = run_as_arg();
    let args = ["--run-as", who.as_str(), "--data-dir", dir];
    // Writes, renames and deletes inside the data dir work.
    assert_lives(&probe("control", "data-dir-rw", &args), "data-dir-rw");
    // /etc/passwd is outside: EACCES from Landlock (the probe checks the errno).
    assert_lives(&probe("control", "open-passwd", &args), "open-passwd");
}

#[test]
fn the_spawner_may_execute_the_tester_and_nothing_else() {
    if !root_or_skip("the_spawner_may_execute_the_tester_and_nothing_else") {
        return;
    }
    let who = run_as_arg();
    let args = ["--run-as", who.as_str(), "--exec", PROBE];
    // Landlock: /bin/true is not the tester (EACCES), /etc/passwd is not readable.
    assert_lives(&probe("spawner", "exec-denied", &args), "exec-denied");
    assert_lives(&probe("spawner", "open-passwd", &args), "open-passwd");
    // seccomp: it creates no socket and maps no anonymous executable memory.
    assert_sigsys(&probe("spawner", "socket", &args), "socket");
    assert_sigsys(&probe("spawner", "mmap-exec", &args), "mmap-exec");
    assert_sigsys(&probe("spawner", "unshare", &args), "unshare");
}

#[test]
fn control_seccomp_pins_arguments() {
    if !root_or_skip("control_seccomp_pins_arguments") {
        return;
    }
    let d = data_dir();
    let dir = d.path().to_str().expect("utf-8 temp path");
    let who = run_as_arg();
    let args = ["--run-as", who.as_str(), "--data-dir", dir];
    assert_lives(&probe("control", "udp", &args), "udp");
    assert_lives(&probe("control", "sockopts", &args), "sockopts");
    // socket(AF_NETLINK): only AF_INET, AF_INET6, AF_UNIX are allowed.
    assert_sigsys(&probe("control", "socket-netlink", &args), "socket-netlink");
    // No anonymous executable memory.
    assert_sigsys(&probe("control", "mmap-exec", &args), "mmap-exec");
    // connect is not in control's list (connections arrive over SCM_RIGHTS).
    assert_sigsys(&probe("control", "connect", &args), "connect");
    // Control starts no process itself: its spawner does.
    assert_sigsys(&probe("control", "execve", &args), "execve");
    assert_sigsys(&probe("control", "fork", &args), "fork");
}

#[test]
fn control_fails_on_missing_data_dir_naming_the_step() {
    if !root_or_skip("control_fails_on_missing_data_dir_naming_the_step") {
        return;
    }
    let missing = Path::new("/nonexistent/owampd-data");
    let out = probe(
        "control",
        "nothing",
        &[
            "--run-as",
            &run_as_arg(),
            "--data-dir",
            missing.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("landlock"), "{err}");
    assert!(err.contains("/nonexistent/owampd-data"), "{err}");
}

#[test]
fn master_keeps_only_its_four_capabilities() {
    if !root_or_skip("master_keeps_only_its_four_capabilities") {
        return;
    }
    let out = probe("master", "status", &[]);
    assert_lives(&out, "status");
    let s = String::from_utf8_lossy(&out.stdout);
    // CAP_SETGID 6, CAP_SETUID 7, CAP_NET_BIND_SERVICE 10, CAP_KILL 5.
    let keep: u64 = (1 << 5) | (1 << 6) | (1 << 7) | (1 << 10);
    let want = format!("{keep:016x}");
    assert_eq!(status_field(&s, "CapPrm"), want);
    assert_eq!(status_field(&s, "CapEff"), want);
    // The bounding set adds CAP_SETPCAP (8), which the master does not hold, so that a
    // control process it restarts can empty its own bounding set.
    let bounding: u64 = keep | (1 << 8);
    assert_eq!(status_field(&s, "CapBnd"), format!("{bounding:016x}"));
    assert_eq!(status_field(&s, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&s, "CapAmb"), "0000000000000000");
    // Not set for the master: it execs control as root (see sandbox::Role::Master).
    assert_eq!(status_field(&s, "NoNewPrivs"), "0");
    assert_eq!(status_field(&s, "Seccomp"), "2");
    // The master's deny-list kills on namespace creation.
    assert_sigsys(&probe("master", "unshare", &[]), "unshare");
    // Ordinary work goes on.
    assert_lives(&probe("master", "udp", &[]), "udp");
}

/// examples/control-runtime, built by `cargo test -p sandbox` (cargo builds a package's
/// examples for its tests; a filtered `--test probe` run does not).
fn control_runtime_example() -> std::path::PathBuf {
    let me = std::env::current_exe().expect("test exe path");
    // target/<profile>/deps/probe-<hash> → target/<profile>/examples/control-runtime
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let ex = profile_dir.join("examples").join("control-runtime");
    assert!(
        ex.exists(),
        "{} missing: run `cargo test -p sandbox` (it builds the examples)",
        ex.display()
    );
    ex
}

/// The real process layout: control forks its spawner, both enter their sandboxes, and
/// control's runtime asks the spawner for testers (sandbox-probe as a tester, with fds
/// 3-6 passed as control passes a tester's) through `ipc::spawner`: the tester's whole
/// start under the spawner's filter and its own, and a kill through a pidfd.
#[test]
fn control_policy_runs_tokio_store_and_spawn() {
    if !root_or_skip("control_policy_runs_tokio_store_and_spawn") {
        return;
    }
    let d = data_dir();
    let out = Command::new(control_runtime_example())
        .arg(d.path())
        .arg(PROBE)
        .arg(run_as_arg())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run control-runtime");
    assert_lives(&out, "control-runtime");
}
