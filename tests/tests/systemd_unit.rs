//! Root-only: the shipped systemd unit (`contrib/systemd/owamp-server.service`) works as
//! written. Its ExecStart runs with the unit's paths moved into a temporary directory,
//! in a private network namespace (port 861), under the unit's CapabilityBoundingSet
//! (applied with setpriv, as systemd would), and the Type=notify contract holds: the
//! process systemd starts sends `READY=1` naming itself to `NOTIFY_SOCKET` only once it
//! listens, then measures and stops on SIGTERM, removing its pid file.
//!
//! Here systemd is not PID 1: this checks everything the unit asks of owampd.
//! tests/package/run starts the packaged unit under a real systemd.

use e2e::{bin, enter_private_netns, require_root, run_client, wait_for};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NOBODY: u32 = 65534;

/// `key=value` lines of the unit's `[Service]` section.
fn service_setting(unit: &str, key: &str) -> String {
    let mut in_service = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && let Some(v) = line.strip_prefix(&format!("{key}=")) {
            return v.to_string();
        }
    }
    panic!("the unit has no {key}= in [Service]")
}

fn unit_text() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/owamp-server.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `/run/x` → `<root>/run/x`, creating the directory.
fn moved(root: &Path, path: &str) -> PathBuf {
    let p = root.join(path.trim_start_matches('/'));
    if p.extension().is_none() {
        std::fs::create_dir_all(&p).unwrap();
    }
    p
}

/// Stop the daemon whatever the test's outcome.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

/// The unit's ExecStart, with its absolute paths moved under a temporary root and the
/// binary built here, and the configuration a packager ships beside it (the user).
struct Installed {
    root: tempfile::TempDir,
    args: Vec<String>,
    pid_file: PathBuf,
    /// CapabilityBoundingSet=CAP_A CAP_B, as setpriv's names: a, b.
    bounding: Vec<String>,
}

impl Installed {
    /// For a root test: `None` (skipped) when not root outside CI; else a private
    /// network namespace for this test's thread, and the unit installed.
    fn for_test(test: &str) -> Option<Installed> {
        if !require_root(test) {
            return None;
        }
        enter_private_netns();
        Some(Installed::new())
    }

    fn new() -> Installed {
        let unit = unit_text();
        assert_eq!(service_setting(&unit, "Type"), "notify");
        let root = tempfile::tempdir().unwrap();
        // nobody must reach the data directory through the temporary directory.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exec: Vec<String> = service_setting(&unit, "ExecStart")
            .split_whitespace()
            .map(String::from)
            .collect();
        assert!(exec[0].ends_with("/owampd"), "{exec:?}");
        let mut args: Vec<String> = Vec::new();
        let mut confdir = None;
        let mut vardir = None;
        let mut it = exec[1..].iter();
        while let Some(a) = it.next() {
            args.push(a.clone());
            if matches!(a.as_str(), "-c" | "-R" | "-d") {
                let p = moved(root.path(), it.next().expect("option value"));
                if a == "-c" {
                    confdir = Some(p.clone());
                }
                if a == "-R" {
                    vardir = Some(p.clone());
                }
                args.push(p.display().to_string());
            }
        }
        // RuntimeDirectory=, as systemd makes it before ExecStart.
        let runtime = service_setting(&unit, "RuntimeDirectory");
        let vardir = vardir.expect("ExecStart names the vardir");
        assert_eq!(vardir, root.path().join("run").join(&runtime));
        let confdir = confdir.expect("ExecStart names the configuration directory");
        let data = root.path().join("var/lib/owamp");
        std::fs::create_dir_all(&data).unwrap();
        chown(&data, Some(NOBODY), None).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(
            confdir.join("owamp-server.conf"),
            format!("user nobody\ndatadir {}\n", data.display()),
        )
        .unwrap();
        let pid_file = vardir.join("owamp-server.pid");
        let bounding = service_setting(&unit, "CapabilityBoundingSet")
            .split_whitespace()
            .map(|c| c.trim_start_matches("CAP_").to_lowercase())
            .collect();
        Installed {
            root,
            args,
            pid_file,
            bounding,
        }
    }

    /// ExecStart under a bounding set, as systemd applies CapabilityBoundingSet, with
    /// NOTIFY_SOCKET naming the returned socket, as systemd does for Type=notify.
    fn exec_start(&self, bounding: &[String]) -> (Child, UnixDatagram) {
        let notify = self.root.path().join("notify.sock");
        let _ = std::fs::remove_file(&notify);
        let manager = UnixDatagram::bind(&notify).expect("bind the notify socket");
        let plus: Vec<String> = bounding.iter().map(|c| format!("+{c}")).collect();
        let child = Command::new("setpriv")
            .arg(format!("--bounding-set=-all,{}", plus.join(",")))
            // setpriv execs owampd: systemd's main pid is owampd's.
            .arg("--")
            .arg(bin("owampd"))
            .args(&self.args)
            .env("NOTIFY_SOCKET", &notify)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run setpriv");
        (child, manager)
    }
}

#[test]
fn the_systemd_unit_starts_a_ready_daemon_under_its_bounding_set() {
    let Some(unit) =
        Installed::for_test("the_systemd_unit_starts_a_ready_daemon_under_its_bounding_set")
    else {
        return;
    };
    let pid_file = unit.pid_file.clone();
    let (child, manager) = unit.exec_start(&unit.bounding);
    let pid = child.id();
    let mut daemon = Daemon(child);
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 256];
    let n = manager.recv(&mut buf).unwrap_or_else(|e| {
        let _ = daemon.0.kill();
        panic!("no READY=1 from ExecStart: {e}")
    });
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        format!("READY=1\nMAINPID={pid}\n")
    );
    // Ready means ready: no waiting from here on.
    std::net::TcpStream::connect("127.0.0.1:861").expect("listening when READY=1 came");
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file"),
        format!("{pid}\n")
    );
    let cap_bnd = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cap_bnd = cap_bnd
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    // Once confined, the master holds no more than NET_BIND_SERVICE 10, SETUID 7,
    // SETGID 6, KILL 5 and SETPCAP 8 in its bounding set: the unit's CAP_SYS_ADMIN is gone.
    assert_eq!(
        cap_bnd & !((1 << 10) | (1 << 7) | (1 << 6) | (1 << 5) | (1 << 8)),
        0
    );

    let m = run_client(
        "owping",
        &["-c", "20", "-i", "0.01f", "-L", "2", "-M", "127.0.0.1"],
        Duration::from_secs(60),
    );
    assert!(
        m.status.success(),
        "owping against the unit's daemon: {}",
        String::from_utf8_lossy(&m.stderr)
    );
    let stop = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let n = manager.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .0
            .try_wait()
            .unwrap()
            .is_some()),
        "still running after SIGTERM"
    );
    assert!(!pid_file.exists(), "pid file left after SIGTERM");
}

/// Without CAP_SYS_ADMIN the master cannot install its filter: the start fails, and
/// the command (not only a log nobody reads) says why, with status 1.
#[test]
fn a_bounding_set_without_cap_sys_admin_fails_the_start_saying_so() {
    let Some(unit) =
        Installed::for_test("a_bounding_set_without_cap_sys_admin_fails_the_start_saying_so")
    else {
        return;
    };
    assert!(unit.bounding.iter().any(|c| c == "sys_admin"));
    let fewer: Vec<String> = unit
        .bounding
        .iter()
        .filter(|c| *c != "sys_admin")
        .cloned()
        .collect();
    let (child, manager) = unit.exec_start(&fewer);
    let out = child.wait_with_output().expect("wait for owampd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("owampd: ")
            && l.contains("sandbox step seccomp failed")
            && l.contains("CAP_SYS_ADMIN")),
        "{err}"
    );
    manager.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        manager.recv(&mut buf).is_err(),
        "READY=1 from a failed start"
    );
    assert!(!unit.pid_file.exists(), "a failed start left its pid file");
    assert!(std::net::TcpStream::connect("127.0.0.1:861").is_err());
}
