//! powstream against the real owampd of this workspace, as pScheduler's latencybg tool
//! runs it: the files it prints are complete and readable, `owstats -R` lines parse
//! with the tool's regular expression, consecutive sessions' scheduled packets have no
//! gap and no overlap, failed connections are retried, signals finish cleanly, and bad
//! command lines get one clear line.
//!
//! They need the workspace's binaries (`cargo build --workspace` first), as the other
//! end-to-end tests do.

use e2e::{Server, child_pids, free_port, wait_for};
use owamp::Timestamp;
use owamp::owp::OwpFile;
use owamp::schedule::Schedule;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

const POWSTREAM: &str = env!("CARGO_BIN_EXE_powstream");
const OWSTATS: &str = env!("CARGO_BIN_EXE_owstats");
const LIMIT: Duration = Duration::from_secs(90);

/// A running powstream: its printed lines arrive on a channel as they are printed.
struct Powstream {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Powstream {
    /// Starts `powstream args` with its stderr in a file of a scratch directory.
    fn start(args: &[&str]) -> Powstream {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let mut child = Command::new(POWSTREAM)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Powstream {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `n` printed lines end with `ext`; returns every line so far.
    fn wait_printed(&mut self, ext: &str, n: usize) -> Vec<String> {
        let enough = |seen: &[String]| seen.iter().filter(|l| l.ends_with(ext)).count() >= n;
        let printed = e2e::wait_for(LIMIT, || {
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            if enough(&self.seen) {
                return true;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // What it printed before it exited may still be on its way.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.seen.push(l);
                }
                assert!(
                    enough(&self.seen),
                    "powstream exited with {st}: {}",
                    self.stderr()
                );
                return true;
            }
            false
        });
        assert!(
            printed,
            "{n} {ext} lines not printed within {LIMIT:?}: {:?}\nstderr:\n{}",
            self.seen,
            self.stderr()
        );
        self.seen.clone()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Waits for the exit; returns its status and every line printed.
    fn wait_exit(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut status = None;
        e2e::wait_for(LIMIT, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let st = status.unwrap_or_else(|| panic!("powstream did not exit: {}", self.stderr()));
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (st, self.seen.clone())
    }
}

impl Drop for Powstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// pScheduler's pattern for `owstats -R` lines, checked field by field:
/// `^(\d+) (\d+) (\d) ([-.0-9e+]*) (\d+) (\d) ([-.0-9e+]*) (\d+)$`.
fn matches_pscheduler_regex(line: &str) -> bool {
    let f: Vec<&str> = line.split(' ').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let digit = |s: &str| s.len() == 1 && digits(s);
    let float = |s: &str| s.bytes().all(|b| b"-.0123456789e+".contains(&b));
    f.len() == 8
        && digits(f[0])
        && digits(f[1])
        && digit(f[2])
        && float(f[3])
        && digits(f[4])
        && digit(f[5])
        && float(f[6])
        && digits(f[7])
}

/// `owstats -R path`: the lines, after checking each against pScheduler's pattern.
fn raw_lines(path: &str) -> Vec<String> {
    let out = Command::new(OWSTATS).args(["-R", path]).output().unwrap();
    assert!(out.status.success(), "owstats -R {path}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    for l in &lines {
        assert!(matches_pscheduler_regex(l), "{path}: {l:?}");
    }
    lines
}

/// A printed `.owp` file's session: its start time, the scheduled send time of its
/// last packet, the time in its name, and its records' seqnos.
struct SessionFile {
    start: Timestamp,
    sched_end: Timestamp,
    name_start: u64,
    name_end: u64,
    seqnos: Vec<u32>,
    npackets: u32,
}

fn read_session(path: &str) -> SessionFile {
    let mut f = OwpFile::open(path).unwrap();
    let s = f.session().unwrap().clone();
    let fields = s.fields();
    let mut sched = Schedule::new(
        fields.sid,
        fields.start_time,
        &fields.slots,
        fields.npackets,
    );
    let sched_end = sched.send_time(fields.npackets - 1).unwrap();
    let name = Path::new(path).file_stem().unwrap().to_str().unwrap();
    let (a, b) = name.split_once('_').unwrap();
    SessionFile {
        start: fields.start_time,
        sched_end,
        name_start: a.parse().unwrap(),
        name_end: b.parse().unwrap(),
        seqnos: f.read_records().unwrap().iter().map(|r| r.seq).collect(),
        npackets: fields.npackets,
    }
}

/// Checks what a run printed: every path readable, named `<start>_<end>.<ext>` in
/// `dir`; every `.owp` parses (pScheduler's pattern) and the complete ones (`complete`
/// first ones) hold every packet; consecutive sessions have no gap and no overlap.
fn check_printed(printed: &[String], dir: &Path, complete: usize) {
    for p in printed {
        assert!(
            p.starts_with(&format!("{}/", dir.display())),
            "{p} is not in {}",
            dir.display()
        );
        assert!(p.ends_with(".owp") || p.ends_with(".sum"), "{p}");
        std::fs::File::open(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    let owps: Vec<&String> = printed.iter().filter(|p| p.ends_with(".owp")).collect();
    let sessions: Vec<SessionFile> = owps.iter().map(|p| read_session(p)).collect();
    for (i, (p, s)) in owps.iter().zip(&sessions).enumerate() {
        let lines = raw_lines(p);
        assert_eq!(lines.len(), s.seqnos.len(), "{p}");
        assert_eq!(
            s.name_start, s.start.0,
            "{p}: the name starts at the session's start"
        );
        if i < complete {
            let mut seqs = s.seqnos.clone();
            seqs.sort_unstable();
            assert_eq!(
                seqs,
                (0..s.npackets).collect::<Vec<_>>(),
                "{p}: every packet, once"
            );
            assert_eq!(
                s.name_end, s.sched_end.0,
                "{p}: the name ends at the last packet"
            );
        } else {
            assert!(s.name_end <= s.sched_end.0, "{p}");
        }
        // The .sum of the same session follows its .owp.
        let sum = p.replace(".owp", ".sum");
        assert!(printed.contains(&sum), "{sum} not printed");
        let text = std::fs::read_to_string(&sum).unwrap();
        assert!(text.starts_with("SUMMARY\t3.00\n"), "{sum}: {text}");
    }
    for w in sessions.windows(2) {
        assert_eq!(
            w[1].start, w[0].sched_end,
            "a session starts exactly at the previous one's last scheduled packet"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".i"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn out_dir(root: &Path) -> PathBuf {
    let d = root.join("data");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// pScheduler's command line, both directions: `powstream -p -d DIR -g LEVEL -D TOS -s
/// PADDING -P LOW-HIGH -c COUNT -i INTERVAL -L TIMEOUT -4 [-t] -S ADDR [ADDR]:PORT`,
/// stopped with SIGTERM as pScheduler stops it.
#[test]
fn pscheduler_command_line_both_directions() {
    let srv = Server::start(&[]);
    let port = srv.addr.port().to_string();
    let target = format!("[127.0.0.1]:{port}");
    let low = free_port().min(60000);
    let range = format!("{low}-{}", low + 20);
    for flip in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dir = out_dir(root.path());
        let d = dir.display().to_string();
        let mut args = vec![
            "-p", "-d", &d, "-g", "WARN", "-D", "10", "-s", "20", "-P", &range, "-c", "80", "-i",
            "0.05", "-L", "1", "-4",
        ];
        if !flip {
            args.push("-t");
        }
        args.extend(["-S", "127.0.0.1", &target]);
        let mut ps = Powstream::start(&args);
        ps.wait_printed(".owp", 3);
        ps.signal(nix::sys::signal::Signal::SIGTERM);
        let (st, printed) = ps.wait_exit();
        assert_eq!(st.code(), Some(0), "{}", ps.stderr());
        check_printed(&printed, &dir, 3);
        assert!(dir.join(".powlock").exists());
    }
}

/// Sub-sessions (-N) as receiver: a .sum per sub-session, named from the previous
/// sub-session's last packet to its own, then the session's .owp and .sum; the JSON
/// documents say which is which.
#[test]
fn sub_sessions_and_json() {
    let srv = Server::start(&[]);
    let root = tempfile::tempdir().unwrap();
    let dir = out_dir(root.path());
    let d = dir.display().to_string();
    let target = srv.target();
    let mut ps = Powstream::start(&[
        "-p", "--json", "-d", &d, "-c", "60", "-N", "15", "-i", "0.05", "-L", "0.5", "-P", "0",
        &target,
    ]);
    ps.wait_printed(".owp", 2);
    ps.signal(nix::sys::signal::Signal::SIGINT);
    let (st, lines) = ps.wait_exit();
    assert_eq!(st.code(), Some(0), "{}", ps.stderr());
    let (json, printed): (Vec<String>, Vec<String>) =
        lines.into_iter().partition(|l| l.starts_with('{'));
    check_printed(&printed, &dir, 2);
    // The first session: four sub-session summaries, then its .owp and .sum.
    let first = read_session(&printed[4]);
    assert!(printed[4].ends_with(".owp"), "{printed:?}");
    let mut sched = {
        let f = OwpFile::open(&printed[4]).unwrap();
        let s = f.session().unwrap().fields().clone();
        Schedule::new(s.sid, s.start_time, &s.slots, s.npackets)
    };
    let mut from = first.start.0;
    for (k, p) in printed[..4].iter().enumerate() {
        let to = sched.send_time(15 * k as u32 + 14).unwrap().0;
        assert!(
            p.ends_with(&format!("{from:020}_{to:020}.sum")),
            "sub-session {k}: {p}"
        );
        let text = std::fs::read_to_string(p).unwrap();
        assert!(text.contains("SAMPLE_PACKET_COUNT\t15\n"), "{text}");
        assert!(
            text.contains("SENT\t15\n") && text.contains("LOST\t0\n"),
            "{text}"
        );
        from = to;
    }
    // One JSON document per summary, in the same order as the .sum files.
    let sums: Vec<&String> = printed.iter().filter(|p| p.ends_with(".sum")).collect();
    assert_eq!(json.len(), sums.len(), "{json:?}");
    for (doc, sum) in json.iter().zip(sums) {
        let v: serde_json::Value = serde_json::from_str(doc).unwrap();
        assert_eq!(v["sum"].as_str(), Some(sum.as_str()));
        let kind = v["kind"].as_str().unwrap();
        assert!(kind == "sub-session" || kind == "session", "{doc}");
        if kind == "session" {
            assert_eq!(
                v["owp"].as_str(),
                Some(sum.replace(".sum", ".owp").as_str())
            );
        } else {
            assert_eq!(
                v["summary"]["last_seq"].as_u64().unwrap()
                    - v["summary"]["first_seq"].as_u64().unwrap(),
                15
            );
        }
    }
    let v: serde_json::Value = serde_json::from_str(&json[4]).unwrap();
    assert_eq!(v["kind"], "session");
    assert_eq!(v["summary"]["sent"], 60);
    assert_eq!(v["summary"]["lost"], 0);
}

/// A refused connection is retried every -I seconds with one line each; once the
/// server is up the sessions flow; a server restart costs the sessions it carried and
/// the stream resumes against the new server.
#[test]
fn retries_after_refusal_and_server_restart() {
    let port = free_port();
    let root = tempfile::tempdir().unwrap();
    let dir = out_dir(root.path());
    let d = dir.display().to_string();
    let target = format!("127.0.0.1:{port}");
    let mut ps = Powstream::start(&[
        "-p", "-I", "1", "-d", &d, "-c", "40", "-i", "0.05", "-L", "0.5", "-P", "0", &target,
    ]);
    assert!(
        wait_for(LIMIT, || ps.stderr().matches("Connection refused").count()
            >= 2),
        "{}",
        ps.stderr()
    );
    for l in ps.stderr().lines() {
        assert!(l.starts_with("powstream: "), "{l}");
    }
    let mut srv = Server::start_in(tempfile::tempdir().unwrap(), "127.0.0.1", port, &[]);
    ps.wait_printed(".owp", 2);
    let refused = ps.stderr().matches("Connection refused").count();
    srv.terminate(Duration::from_secs(20))
        .expect("owampd stops");
    drop(srv);
    let before = ps.seen.iter().filter(|l| l.ends_with(".owp")).count();
    assert!(
        wait_for(LIMIT, || ps.stderr().matches("Connection refused").count()
            > refused),
        "no attempt while the server was down: {}",
        ps.stderr()
    );
    let _srv = Server::start_in(tempfile::tempdir().unwrap(), "127.0.0.1", port, &[]);
    ps.wait_printed(".owp", before + 2);
    ps.signal(nix::sys::signal::Signal::SIGTERM);
    let (st, printed) = ps.wait_exit();
    assert_eq!(st.code(), Some(0), "{}", ps.stderr());
    for p in printed.iter().filter(|p| p.ends_with(".owp")) {
        raw_lines(p);
    }
}

/// SIGINT mid-session as receiver, SIGTERM mid-session with -t: the running session's
/// data so far is saved (its name ends at its last packet's scheduled time), the exit
/// status is 0, and powstream leaves no process behind. SIGHUP starts over.
#[test]
fn signals_save_the_running_session() {
    let srv = Server::start(&[]);
    let target = srv.target();
    for (sender, sig) in [
        (false, nix::sys::signal::Signal::SIGINT),
        (true, nix::sys::signal::Signal::SIGTERM),
    ] {
        let root = tempfile::tempdir().unwrap();
        let dir = out_dir(root.path());
        let d = dir.display().to_string();
        let mut args = vec![
            "-p", "-d", &d, "-c", "400", "-N", "20", "-i", "0.05", "-L", "0.5", "-P", "0",
        ];
        if sender {
            args.push("-t");
        }
        args.push(&target);
        let mut ps = Powstream::start(&args);
        ps.wait_printed(".sum", 2);
        let pid = ps.child.id();
        assert!(
            child_pids(pid).is_empty(),
            "powstream runs no other process"
        );
        ps.signal(sig);
        let (st, printed) = ps.wait_exit();
        assert_eq!(st.code(), Some(0), "{}", ps.stderr());
        let owps: Vec<&String> = printed.iter().filter(|p| p.ends_with(".owp")).collect();
        assert_eq!(owps.len(), 1, "{printed:?}");
        let s = read_session(owps[0]);
        assert!(
            !s.seqnos.is_empty() && s.seqnos.len() < 400,
            "{} records",
            s.seqnos.len()
        );
        let f = OwpFile::open(owps[0]).unwrap();
        let fields = f.session().unwrap().fields().clone();
        let mut sched = Schedule::new(fields.sid, fields.start_time, &fields.slots, 400);
        let highest = *s.seqnos.iter().max().unwrap();
        assert_eq!(s.name_end, sched.send_time(highest).unwrap().0);
        check_printed(&printed, &dir, 0);
        assert!(ps.stderr().contains("SIGTERM/SIGINT"), "{}", ps.stderr());
    }

    // SIGHUP: the running session is saved, then a new one starts.
    let root = tempfile::tempdir().unwrap();
    let dir = out_dir(root.path());
    let d = dir.display().to_string();
    let mut ps = Powstream::start(&[
        "-p", "-d", &d, "-c", "400", "-N", "20", "-i", "0.05", "-L", "0.5", "-P", "0", &target,
    ]);
    ps.wait_printed(".sum", 1);
    ps.signal(nix::sys::signal::Signal::SIGHUP);
    ps.wait_printed(".owp", 1);
    // Two more summaries: at most one is the saved session's, so the new session has
    // summarised a sub-session of its own.
    let sums = ps.seen.iter().filter(|l| l.ends_with(".sum")).count();
    ps.wait_printed(".sum", sums + 2);
    ps.signal(nix::sys::signal::Signal::SIGTERM);
    let (st, printed) = ps.wait_exit();
    assert_eq!(st.code(), Some(0), "{}", ps.stderr());
    assert_eq!(printed.iter().filter(|p| p.ends_with(".owp")).count(), 2);
    assert!(ps.stderr().contains("SIGHUP"), "{}", ps.stderr());
}

/// Two powstreams cannot share a directory: the second says so and exits 1.
#[test]
fn one_powstream_per_directory() {
    let srv = Server::start(&[]);
    let root = tempfile::tempdir().unwrap();
    let dir = out_dir(root.path());
    let d = dir.display().to_string();
    let target = srv.target();
    let mut first = Powstream::start(&[
        "-p", "-d", &d, "-c", "40", "-i", "0.05", "-L", "0.5", &target,
    ]);
    first.wait_printed(".owp", 1);
    let out = Command::new(POWSTREAM)
        .args(["-d", &d, &target])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Besides the clock warning every client gives once on an unsynchronised clock.
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains(": NTP: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        err.contains("another powstream writes to this directory")
            && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    first.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(first.wait_exit().0.code(), Some(0));
}

/// Bad command lines: exactly one line on stderr, exit 1; -h: the usage with its
/// Version line, exit 0.
#[test]
fn bad_options_get_one_clear_line() {
    let out = Command::new(POWSTREAM).arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let usage = String::from_utf8_lossy(&out.stderr);
    assert!(usage.starts_with("usage: powstream [arguments] testaddr [servaddr]\n"));
    let last = usage.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{usage}"
    );
    let out = Command::new(POWSTREAM).arg("-V").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(&format!("powstream {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    for opt in [
        "-t", "-c", "-D", "-I", "-N", "-p", "-R", "-U", "-g", "-e", "--json",
    ] {
        assert!(
            usage.contains(&format!("   {opt} ")),
            "{opt} missing from -h"
        );
    }
    let cases: &[(&[&str], &str)] = &[
        (&["-x", "h"], "invalid option -- 'x'"),
        (&["-c"], "option requires an argument -- 'c'"),
        (&["-c", "x", "h"], "for -c"),
        (&["-c", "0", "h"], "-c"),
        (&["-c", "10", "-N", "3", "h"], "-N 3 must divide -c 10"),
        (&["-4", "-6", "h"], "-4 and -6"),
        (&["-P", "9000-9000", "h"], "at least 2 ports"),
        (&["-P", "9-x", "h"], "-P"),
        (&["-g", "loud", "h"], "for -g"),
        (&["-e", "nowhere", "h"], "for -e"),
        (&["-L", "0", "h"], "for -L"),
        (&["-i", "0.1e", "h"], "for -i"),
        (&["-D", "99", "h"], "DSCP"),
        (&["-A", "X", "h"], "for -A"),
        (&[], "expected: testaddr [servaddr]"),
        (&["h", "-c", "10"], "options must come before testaddr"),
    ];
    for (args, want) in cases {
        let out = Command::new(POWSTREAM).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("powstream: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    // A directory that cannot be used is a clear refusal too.
    let out = Command::new(POWSTREAM)
        .args(["-d", "/nonexistent/dir", "127.0.0.1:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/nonexistent/dir/.powlock"), "{err}");
}
