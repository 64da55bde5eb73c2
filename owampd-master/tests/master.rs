//! The real `owampd` binary, run with -Z (or daemonized) on 127.0.0.1 with a fake
//! owampd-control (the `fake-control` example; `cargo test` builds examples).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(20);

fn owampd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_owampd")
}

fn fake_control() -> PathBuf {
    let p = Path::new(owampd_bin())
        .parent()
        .expect("bin dir")
        .join("examples/fake-control");
    assert!(
        p.is_file(),
        "{} missing: run `cargo test -p owampd-master` (it builds examples) or \
         `cargo build -p owampd-master --example fake-control`",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A temp tree: lib/owampd-control (the fake), conf/, data/, var/, and a syslog socket.
struct Env {
    dir: tempfile::TempDir,
    syslog: UnixDatagram,
    port: u16,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["lib", "conf", "data", "var"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        std::os::unix::fs::symlink(fake_control(), dir.path().join("lib/owampd-control"))
            .expect("symlink");
        let syslog = UnixDatagram::bind(dir.path().join("log.sock")).expect("bind log");
        syslog
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Env {
            dir,
            syslog,
            port: free_port(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn conf(&self, text: &str) {
        std::fs::write(self.path("conf/owamp-server.conf"), text).expect("write conf");
    }
    fn marker(&self, name: &str) {
        std::fs::write(self.path("data").join(name), "").expect("marker");
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(owampd_bin());
        c.current_dir(self.dir.path())
            .env("OWAMPD_LIBEXEC_DIR", self.path("lib"))
            .env("OWAMPD_SYSLOG_SOCKET", self.path("log.sock"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
    /// The usual arguments of a server run on our port, foreground.
    fn server_args(&self) -> Vec<String> {
        vec![
            "-Z".into(),
            "-f".into(),
            "-c".into(),
            "conf".into(),
            "-d".into(),
            "data".into(),
            "-R".into(),
            "var".into(),
            "-S".into(),
            format!("127.0.0.1:{}", self.port),
        ]
    }
    /// `owampd` without -Z: the launcher's output, once it has exited.
    fn run_daemonized(&self) -> Output {
        let args = self.server_args();
        let args: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "-Z")
            .collect();
        self.cmd(&args).output().expect("run")
    }
    fn start(&self, extra: &[&str]) -> Child {
        if !self.path("conf/owamp-server.conf").exists() {
            self.conf("");
        }
        let mut args: Vec<&str> = Vec::new();
        let owned = self.server_args();
        args.extend(owned.iter().map(String::as_str));
        args.extend_from_slice(extra);
        self.cmd(&args).spawn().expect("spawn owampd")
    }
    /// Read syslog lines until one contains `needle`; all lines seen so far are returned
    /// in the panic message when it never comes.
    fn wait_log(&self, needle: &str, seen: &mut Vec<String>) {
        self.wait_log_count(needle, 1, seen);
    }
    /// Like [`Env::wait_log`], until `n` lines seen so far contain `needle`.
    fn wait_log_count(&self, needle: &str, n: usize, seen: &mut Vec<String>) {
        let count = |seen: &Vec<String>| seen.iter().filter(|l| l.contains(needle)).count();
        let mut buf = vec![0u8; 4096];
        // Every line waiting now (each recv waits at most its read timeout), then the
        // verdict; lines past the n-th stay queued for the next wait.
        let found = e2e::wait_for(WAIT, || {
            while count(seen) < n {
                let Ok(k) = self.syslog.recv(&mut buf) else {
                    break;
                };
                seen.push(String::from_utf8_lossy(buf.get(..k).unwrap_or(&[])).into_owned());
            }
            count(seen) >= n
        });
        assert!(
            found,
            "fewer than {n} lines containing {needle:?}; got {seen:#?}"
        );
    }
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    let mut status = None;
    e2e::wait_for(WAIT, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("owampd did not exit");
    })
}

fn term(child: &Child) {
    let pid = i32::try_from(child.id()).expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("kill");
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run to completion; it must fail with status 1 and exactly one line naming `needle`.
fn refused(env: &Env, args: &[&str], needle: &str) {
    let out = env.cmd(args).output().expect("run owampd");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: one line wanted, got {err:?}"
    );
    assert!(err.starts_with("owampd: "), "{err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn bad_options_and_values_exit_1_with_one_line() {
    let env = Env::new();
    env.conf("");
    let base = ["-Z", "-f", "-c", "conf", "-S", "127.0.0.1:1"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    refused(&env, &["extra"], "extra");
    refused(&env, &with(&["-a", "XYZ"]), "-a: invalid authmode \"XYZ\"");
    refused(
        &env,
        &with(&["-P", "9000-80"]),
        "-P: invalid port range \"9000-80\"",
    );
    refused(&env, &with(&["-P", "abc"]), "-P");
    refused(&env, &with(&["-S", "[::1"]), "-S: ");
    refused(&env, &with(&["-S", "host:notaport"]), "-S");
    refused(
        &env,
        &with(&["-d", "/nonexistent/owampd"]),
        "-d \"/nonexistent/owampd\"",
    );
    refused(
        &env,
        &with(&["-R", "/nonexistent/owampd"]),
        "-R \"/nonexistent/owampd\"",
    );
    refused(
        &env,
        &with(&["-e", "nosuchfacility"]),
        "-e \"nosuchfacility\"",
    );
    refused(&env, &["-Z", "-f", "-c", "data"], "owamp-server.conf");
    if nix::unistd::Uid::effective().is_root() {
        refused(&env, &with(&["-U", "no-such-user-owampd"]), "-U");
        refused(
            &env,
            &with(&["-U", "nobody", "-G", "no-such-group-owampd"]),
            "-G",
        );
    }
}

/// What getopt refuses (an unknown option, a missing value) is a usage error: the line,
/// the usage on stderr, exit status 2.
#[test]
fn usage_errors_exit_2_with_the_usage() {
    let env = Env::new();
    for (args, needle) in [
        (&["-x"][..], "-x"),
        (&["-Z", "-a"][..], "-a"),
        (&["--frob"][..], "--frob"),
    ] {
        let out = env.cmd(args).output().expect("run owampd");
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("owampd: ") && first.contains(needle),
            "{err}"
        );
        assert!(err.contains("\nusage: owampd [options]\n"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn missing_control_binary_is_refused() {
    let env = Env::new();
    env.conf("");
    let out = env
        .cmd(&["-Z", "-f", "-c", "conf", "-S", "127.0.0.1:1"])
        .env("OWAMPD_LIBEXEC_DIR", env.path("data"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    // The line says where owampd looked, and why there.
    assert!(
        err.contains("owampd-control") && err.contains("OWAMPD_LIBEXEC_DIR"),
        "{err}"
    );
}

#[test]
fn h_prints_usage() {
    let env = Env::new();
    let out = env.cmd(&["-h"]).output().expect("run");
    assert!(out.status.success());
    let usage = String::from_utf8_lossy(&out.stdout);
    assert!(usage.starts_with("usage: owampd [options]"), "{usage}");
    // As the reference's usage ends, with the version.
    let version = buildinfo::version();
    assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
    assert!(
        usage.ends_with(&format!("\n\nVersion: {version}\n")),
        "{usage}"
    );
    for v in ["-V", "--version"] {
        let out = env.cmd(&[v]).output().expect("run");
        assert!(out.status.success(), "{v}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("owampd {version}\n"),
            "{v}"
        );
    }
    for opt in [
        "-a", "-c", "-d", "-e", "-f", "-G", "-h", "-P", "-R", "-S", "-U", "-v", "-V,", "-Z",
    ] {
        assert!(
            usage.contains(&format!("   {opt} ")),
            "{opt} missing from usage"
        );
    }
}

#[test]
fn unknown_conf_keyword_names_file_and_line() {
    let env = Env::new();
    env.conf("# comment\nauthmode AE\n\nfrobnicate yes\n");
    let want = format!(
        "{}:4: unknown keyword \"frobnicate\"",
        env.path("conf/owamp-server.conf").display()
    );
    refused(&env, &["-Z", "-f", "-c", "conf"], &want);
}

/// With only the older `owampd.conf` in the conf dir, messages about its values name
/// that file, not `owamp-server.conf`.
#[test]
fn errors_name_the_older_conf_file_when_that_is_the_one_read() {
    let env = Env::new();
    let old = env.path("conf/owampd.conf");
    for (text, needle) in [
        (
            "datadir /nonexistent/owampd\n",
            format!("datadir (in {}) \"/nonexistent/owampd\"", old.display()),
        ),
        (
            "vardir /nonexistent/owampd\n",
            format!("vardir (in {}) \"/nonexistent/owampd\"", old.display()),
        ),
        (
            "loglevel WARN\n",
            format!("{}:1: invalid loglevel", old.display()),
        ),
    ] {
        std::fs::write(&old, text).expect("write owampd.conf");
        let out = env
            .cmd(&["-Z", "-f", "-c", "conf", "-S", "127.0.0.1:1"])
            .output()
            .expect("run");
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&needle), "{err:?} lacks {needle:?}");
        assert!(!err.contains("owamp-server.conf"), "{err}");
    }
}

#[test]
fn bad_conf_value_names_file_and_line() {
    let env = Env::new();
    env.conf("loglevel WARN\n");
    refused(&env, &["-Z", "-f", "-c", "conf"], "owamp-server.conf:1:");
}

/// Lines the reference's owampd accepts start ours too, read as the reference reads
/// them (a flag with any value is on, numbers as C's strtoul reads them), with one
/// warning each in the log naming the file, the line and what was ignored.
#[test]
fn reference_conf_forms_start_with_one_warning_each() {
    let env = Env::new();
    env.conf("verbose off\nloglocation on\nrootfolly yes\ndieby 0x10\ncontroltimeout 30s\n");
    let mut child = env.start(&[]);
    let mut seen = Vec::new();
    let file = env.path("conf/owamp-server.conf").display().to_string();
    for (line, what) in [
        (
            1,
            "\"verbose\" is a flag and takes no value: \"off\" ignored, verbose is on",
        ),
        (
            2,
            "\"loglocation\" is a flag and takes no value: \"on\" ignored",
        ),
        (
            3,
            "\"rootfolly\" is a flag and takes no value: \"yes\" ignored",
        ),
        (4, "dieby \"0x10\" read as 0: \"x10\" ignored"),
        (5, "controltimeout \"30s\" read as 30: \"s\" ignored"),
    ] {
        env.wait_log(&format!("[master] {file}:{line}: {what}"), &mut seen);
    }
    env.wait_log("owampd-control ready", &mut seen);
    env.wait_log("dieby=0 maxcontrolsessions=0", &mut seen);
    env.wait_log("loglevel=info", &mut seen);
    env.wait_log("controltimeout=30", &mut seen);
    let warnings = seen
        .iter()
        .filter(|l| l.contains(&format!("{file}:")))
        .count();
    assert_eq!(warnings, 5, "one warning per line: {seen:#?}");
    term(&child);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn root_without_user_is_refused() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "this test needs root under CI"
        );
        eprintln!("root_without_user_is_refused: skipped, not root");
        return;
    }
    let env = Env::new();
    env.conf("");
    refused(
        &env,
        &["-Z", "-c", "conf", "-S", &format!("127.0.0.1:{}", env.port)],
        "root",
    );
}

#[test]
fn serves_writes_pid_and_info_and_stops_on_term() {
    let env = Env::new();
    let mut child = env.start(&[]);
    let mut seen = Vec::new();
    env.wait_log(
        &format!("[master] owampd {} starting", buildinfo::version()),
        &mut seen,
    );
    env.wait_log("owampd-control ready", &mut seen);
    // An unsynchronised clock (STA_UNSYNC, read as the master reads it) is logged once,
    // before control is started.
    let unsync = sandbox::kernel_clock().is_none_or(|c| !c.synchronized);
    let ntp = seen.iter().filter(|l| l.contains("[master] NTP: ")).count();
    assert_eq!(ntp, usize::from(unsync), "{seen:#?}");
    env.wait_log("[control] configured, datadir", &mut seen);
    assert!(seen.iter().all(|l| l.contains("owampd[")), "{seen:#?}");

    let pid = std::fs::read_to_string(env.path("var/owamp-server.pid")).expect("pid file");
    assert_eq!(pid, format!("{}\n", child.id()));
    let info = std::fs::read_to_string(env.path("var/owamp-server.info")).expect("info");
    let mut lines = info.lines();
    let start = lines
        .next()
        .and_then(|l| l.strip_prefix("START="))
        .expect("START=");
    assert_eq!(start.len(), 20, "{info}");
    let ntp: u64 = start.parse().expect("number");
    assert!(ntp >> 32 > 3_900_000_000, "NTP seconds after 2023: {info}");
    assert_eq!(lines.next(), Some(format!("PID={}", child.id()).as_str()));

    // The connection goes through the master to the fake control, which greets it.
    let mut s = TcpStream::connect(("127.0.0.1", env.port)).expect("connect");
    let mut greeting = String::new();
    s.read_to_string(&mut greeting).expect("read");
    let local = s.local_addr().expect("addr");
    assert_eq!(
        greeting,
        format!("fake-control {local} 127.0.0.1:{}\n", env.port)
    );
    env.wait_log(&format!("[control] {local}: connection on"), &mut seen);

    term(&child);
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    assert!(!env.path("var/owamp-server.pid").exists());
    env.wait_log("owampd-control stopped", &mut seen);
}

#[test]
fn command_line_overrides_conf() {
    let env = Env::new();
    env.conf("authmode O\ntestports 9000-9100\ndieby 7\nmaxcontrolsessions 3\n");
    let mut child = env.start(&["-a", "E", "-v"]);
    let mut seen = Vec::new();
    let tester = env.path("lib/owampd-tester");
    env.wait_log(
        &format!(
            "settings authmodes=4 testports=Some((9000, 9100)) dieby=7 maxcontrolsessions=3 \
             run_as=None loglevel=info tester={}",
            tester.display()
        ),
        &mut seen,
    );
    term(&child);
    assert!(wait_exit(&mut child).success());

    // -P 0 (ephemeral) overrides the file's range; -U as root gives a uid/gid.
    let mut extra = vec!["-P", "0"];
    if nix::unistd::Uid::effective().is_root() {
        extra.extend_from_slice(&["-U", "nobody", "-G", "-65534"]);
    }
    let mut child = env.start(&extra);
    let want = if nix::unistd::Uid::effective().is_root() {
        "testports=None dieby=7 maxcontrolsessions=3 run_as=Some((65534, 65534))"
    } else {
        "testports=None dieby=7 maxcontrolsessions=3 run_as=None"
    };
    env.wait_log(want, &mut seen);
    term(&child);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn over_maxcontrolsessions_is_closed_without_greeting() {
    let env = Env::new();
    env.marker("fake-hold");
    env.conf("maxcontrolsessions 1\n");
    let mut child = env.start(&[]);
    let mut seen = Vec::new();
    env.wait_log("owampd-control ready", &mut seen);
    let mut first = TcpStream::connect(("127.0.0.1", env.port)).expect("connect");
    let mut line = [0u8; 13];
    first.read_exact(&mut line).expect("greeting");
    assert_eq!(&line, b"fake-control ");
    let first_addr = first.local_addr().expect("addr");
    env.wait_log(&format!("[control] {first_addr}: connection on"), &mut seen);
    let mut second = TcpStream::connect(("127.0.0.1", env.port)).expect("connect");
    let mut rest = Vec::new();
    second.read_to_end(&mut rest).expect("read");
    assert!(rest.is_empty(), "no greeting wanted, got {rest:?}");
    env.wait_log("refused, maxcontrolsessions (1) reached", &mut seen);
    term(&child);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn second_instance_with_same_vardir_is_refused() {
    let env = Env::new();
    let mut child = env.start(&[]);
    let mut seen = Vec::new();
    env.wait_log("owampd-control ready", &mut seen);
    let out = env
        .cmd(&[
            "-Z",
            "-f",
            "-c",
            "conf",
            "-R",
            "var",
            "-S",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("another owampd"),
        "{}",
        stderr_of(&out)
    );
    term(&child);
    assert!(wait_exit(&mut child).success());
}

/// A control that keeps crashing is restarted fast (within a second) ten times in a
/// row, as README promises; only past that burst are restarts slowed, with a warning
/// saying so. The crashes come from the `fake-crash` marker (exit right after Ready).
#[test]
fn restarts_control_fast_then_throttles_a_crash_loop_with_a_warning() {
    let env = Env::new();
    env.marker("fake-crash");
    let mut child = env.start(&[]);
    let mut seen = Vec::new();
    // One step at a time, so that a slow machine gets the deadline for each restart.
    for n in 1..=10 {
        env.wait_log_count("restarting owampd-control in 500 ms", n, &mut seen);
    }
    env.wait_log("restarts slowed", &mut seen);
    let fast = seen
        .iter()
        .filter(|l| l.contains("restarting owampd-control in 500 ms"))
        .count();
    assert_eq!(fast, 10, "{seen:#?}");
    let started = seen
        .iter()
        .filter(|l| l.contains("started owampd-control"))
        .count();
    assert!(started >= 10, "{seen:#?}");
    let slowed = seen.iter().find(|l| l.contains("restarts slowed")).unwrap();
    assert!(
        slowed.contains("died 11 times within 60 s") && slowed.contains("in 5000 ms"),
        "{slowed}"
    );
    term(&child);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn kills_control_that_ignores_shutdown_after_dieby() {
    let env = Env::new();
    env.marker("fake-ignore-shutdown");
    env.conf("dieby 1\n");
    let mut child = env.start(&[]);
    let mut seen = Vec::new();
    env.wait_log("owampd-control ready", &mut seen);
    term(&child);
    env.wait_log("[control] shutdown", &mut seen);
    env.wait_log(
        "killing owampd-control: did not stop within dieby",
        &mut seen,
    );
    assert!(wait_exit(&mut child).success());
    assert!(!env.path("var/owamp-server.pid").exists());
}

#[test]
fn control_version_mismatch_is_fatal() {
    let env = Env::new();
    env.marker("fake-bad-version");
    let mut child = env.start(&[]);
    let mut seen = Vec::new();
    env.wait_log("version mismatch", &mut seen);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1));
}

#[test]
fn daemonizes_without_z() {
    let env = Env::new();
    env.conf("");
    let out = env.run_daemonized();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The launcher returned only once the daemon was ready: the port answers at the
    // first try and the pid file is written, with no waiting.
    std::net::TcpStream::connect(("127.0.0.1", env.port)).expect("daemon listening");
    let mut seen = Vec::new();
    env.wait_log("owampd-control ready", &mut seen);
    let pid: i32 = std::fs::read_to_string(env.path("var/owamp-server.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("kill daemon");
    env.wait_log("[master] exiting", &mut seen);
    assert!(e2e::wait_for(WAIT, || !env
        .path("var/owamp-server.pid")
        .exists()));
}

/// A failure after the fork (here the info file cannot be written) reaches the
/// terminal through the launcher, which exits 1; the daemon leaves no pid behind.
#[test]
fn a_daemon_failing_after_the_fork_is_reported_by_the_launcher() {
    let env = Env::new();
    env.conf("");
    std::fs::create_dir_all(env.path("var/owamp-server.info")).expect("mkdir");
    let out = env.run_daemonized();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.starts_with("owampd: ")
            && err.contains("owamp-server.info")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", env.port)).is_err(),
        "a failed daemon is listening"
    );
    assert!(
        !env.path("var/owamp-server.pid").exists(),
        "a failed daemon left its pid file"
    );
}

/// The daemon is ready only once its first control is: a control that cannot open its
/// data store (a datadir the run-as user cannot write) fails the start. The launcher
/// exits 1 with control's line, no pid file is left, nothing listens, and control is
/// not restarted.
#[test]
fn a_control_that_cannot_start_fails_the_daemon_start() {
    let env = Env::new();
    env.conf("");
    env.marker("fake-start-fail");
    let out = env.run_daemonized();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "owampd: owampd-control: data store: create {}: Permission denied (os error 13)\n",
        env.path("data")
            .canonicalize()
            .expect("datadir")
            .join("hierarchy")
            .display()
    );
    assert_eq!(err, want);
    assert!(!env.path("var/owamp-server.pid").exists(), "pid file left");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", env.port)).is_err(),
        "a failed daemon is listening"
    );
    let mut seen = Vec::new();
    env.wait_log("[master] exiting", &mut seen);
    let starts = seen
        .iter()
        .filter(|l| l.contains("started owampd-control"))
        .count();
    assert_eq!(starts, 1, "control restarted: {seen:#?}");
    assert!(
        !seen.iter().any(|l| l.contains("restarting owampd-control")),
        "{seen:#?}"
    );

    // In the foreground too: exit 1, not a control crash-looping behind a live master.
    let mut child = env.start(&[]);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(!env.path("var/owamp-server.pid").exists(), "pid file left");
}

/// A missing vardir, or one where the pid file cannot be written (here its name is
/// taken by a directory), fails the start in daemon mode too: the launcher exits 1
/// with one line naming it, and no daemon is left.
#[test]
fn a_missing_or_unwritable_vardir_fails_the_daemon_start() {
    let env = Env::new();
    env.conf("");
    std::fs::remove_dir(env.path("var")).expect("rm var");
    let out = env.run_daemonized();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("owampd: -R \"var\": ") && err.lines().count() == 1,
        "{err}"
    );

    std::fs::create_dir_all(env.path("var/owamp-server.pid")).expect("mkdir");
    let out = env.run_daemonized();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("owampd: ") && err.contains("owamp-server.pid") && err.lines().count() == 1,
        "{err}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", env.port)).is_err(),
        "a failed daemon is listening"
    );
}

/// A first control that exits during start-up without a word fails the start too.
#[test]
fn a_control_exiting_during_start_up_fails_the_daemon_start() {
    let env = Env::new();
    env.conf("");
    env.marker("fake-silent-exit");
    let out = env.run_daemonized();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("owampd: owampd-control exited during start-up (exit status: 1)")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!env.path("var/owamp-server.pid").exists(), "pid file left");
}

#[test]
fn fake_control_refuses_to_run_by_hand() {
    let out = Command::new(fake_control())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out),
        "owampd-control: must be started by owampd (fd 3 missing)\n"
    );
}

/// Reads datagrams until one arrives or `WAIT` passes.
fn recv_datagram(sock: &UnixDatagram) -> String {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = vec![0u8; 512];
    let mut got = None;
    e2e::wait_for(WAIT, || {
        got = sock
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned());
        got.is_some()
    });
    got.expect("no datagram on the notification socket")
}

/// As a `Type=notify` unit runs it: `READY=1` naming owampd itself arrives once it
/// accepts connections with its pid file written, and `STOPPING=1` on SIGTERM.
fn notifies(env: &Env, manager: &UnixDatagram, notify_socket: &std::ffi::OsStr) {
    env.conf("");
    // The log socket holds 10 datagrams (net.unix.max_dgram_qlen): read it, as a
    // syslog daemon would, or a start-up that logs more than that blocks in send.
    let log = env.syslog.try_clone().expect("clone log socket");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while log.recv(&mut buf).is_ok() || log.take_error().is_ok() {}
    });
    let args = env.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = env
        .cmd(&args)
        .env("NOTIFY_SOCKET", notify_socket)
        .spawn()
        .expect("spawn owampd");
    let ready = recv_datagram(manager);
    assert_eq!(ready, format!("READY=1\nMAINPID={}\n", child.id()));
    // Ready means ready: no waiting from here on.
    TcpStream::connect(("127.0.0.1", env.port)).expect("listening when READY=1 came");
    assert!(env.path("var/owamp-server.pid").is_file());
    term(&child);
    assert_eq!(recv_datagram(manager), "STOPPING=1\n");
    assert!(wait_exit(&mut child).success());
}

#[test]
fn tells_systemd_when_ready_and_when_stopping() {
    let env = Env::new();
    let path = env.path("notify.sock");
    let manager = UnixDatagram::bind(&path).expect("bind notify socket");
    notifies(&env, &manager, path.as_os_str());
}

#[test]
fn notify_socket_in_the_abstract_namespace() {
    use std::os::linux::net::SocketAddrExt;
    let env = Env::new();
    let name = format!("owampd-test-notify-{}-{}", std::process::id(), env.port);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
    let manager = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
    notifies(&env, &manager, std::ffi::OsStr::new(&format!("@{name}")));
}

#[test]
fn a_bad_notify_socket_is_refused() {
    let env = Env::new();
    env.conf("");
    let args = env.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env
        .cmd(&args)
        .env("NOTIFY_SOCKET", "relative/notify")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.starts_with("owampd: NOTIFY_SOCKET=") && err.lines().count() == 1,
        "{err}"
    );
    let out = env
        .cmd(&args)
        .env("NOTIFY_SOCKET", env.path("nobody-listens"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("nobody-listens") && err.lines().count() == 1,
        "{err}"
    );
}

/// With -Z the log goes to stderr too, except when stderr is the journal systemd gave
/// us (`JOURNAL_STREAM` names it), which already receives the syslog lines.
#[test]
fn no_second_copy_of_the_log_on_a_journal_stream() {
    use std::os::fd::AsFd;
    for journal in [true, false] {
        let env = Env::new();
        env.conf("");
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        let st = nix::sys::stat::fstat(write_end.as_fd()).expect("fstat");
        // A stream that is not stderr's must not silence it.
        let ino = if journal { st.st_ino } else { st.st_ino + 1 };
        let args = env.server_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = env
            .cmd(&args)
            .env("JOURNAL_STREAM", format!("{}:{ino}", st.st_dev))
            .stderr(Stdio::from(write_end))
            .spawn()
            .expect("spawn owampd");
        let mut seen = Vec::new();
        env.wait_log("owampd-control ready", &mut seen);
        term(&child);
        assert!(wait_exit(&mut child).success());
        drop(child);
        let mut err = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut err)
            .expect("read stderr");
        assert_eq!(
            err.contains("owampd-control ready"),
            !journal,
            "journal stream {journal}: stderr {err:?}"
        );
    }
}
