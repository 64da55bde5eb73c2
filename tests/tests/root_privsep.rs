//! Root-only end-to-end tests (CI runs as root): inside a private network namespace,
//! owampd on the default port 861 with `-U nobody`; while a session runs, every owampd
//! process is inspected through /proc: control and testers run as nobody in all four
//! uid fields with no capabilities, NoNewPrivs and seccomp filtering; the master keeps
//! at most CAP_SETUID, CAP_SETGID, CAP_KILL and CAP_NET_BIND_SERVICE.

use e2e::{Server, enter_private_netns, require_root, run_client, wait_for};
use std::os::unix::fs::chown;
use std::time::Duration;

const NOBODY: u32 = 65534;
const CAP_KILL: u32 = 5;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_NET_BIND_SERVICE: u32 = 10;

fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {key}"))
}

fn caps(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, key), 16).unwrap()
}

/// Why `pid` is not (yet) confined, or Ok.
fn confinement(pid: u32, what: &str) -> Result<(), String> {
    for key in ["Uid", "Gid"] {
        let ids: Vec<u32> = status_field(pid, key)
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let want = if key == "Uid" { NOBODY } else { ids[0] };
        if ids.len() != 4 || !ids.iter().all(|&i| i == want) {
            return Err(format!("{what} {key}: {ids:?}, want all {want}"));
        }
    }
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let c = caps(pid, key);
        if c != 0 {
            return Err(format!("{what} {key} = {c:#x}"));
        }
    }
    for (key, want) in [("NoNewPrivs", "1"), ("Seccomp", "2")] {
        let v = status_field(pid, key);
        if v != want {
            return Err(format!("{what} {key} = {v}, want {want}"));
        }
    }
    Ok(())
}

/// A process confines itself shortly after it starts: give it time, then insist.
fn assert_confined(pid: u32, what: &str) {
    wait_for(Duration::from_secs(10), || confinement(pid, what).is_ok());
    if let Err(e) = confinement(pid, what) {
        panic!("{e}");
    }
}

#[test]
fn default_port_as_nobody_with_every_process_confined() {
    if !require_root("default_port_as_nobody_with_every_process_confined") {
        return;
    }
    enter_private_netns();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    chown(&data, Some(NOBODY), None).unwrap();
    let server = Server::start_in(dir, "127.0.0.1", 861, &["-U", "nobody"]);
    let master = server.child.id();
    // A session long enough to catch its testers alive.
    let long = std::thread::spawn(|| {
        run_client(
            "owping",
            &["-c", "300", "-i", "0.01f", "-L", "2", "-M", "127.0.0.1"],
            Duration::from_secs(60),
        )
    });
    let control = server.control_pid();
    let spawner = server.spawner_pid();
    let mut testers = Vec::new();
    assert!(
        e2e::wait_for(Duration::from_secs(10), || {
            testers = server.tester_pids();
            !testers.is_empty()
        }),
        "no tester appeared"
    );
    assert_confined(control, "owampd-control");
    assert_confined(spawner, "owampd-spawner");
    for t in &testers {
        assert_confined(*t, "owampd-tester");
    }
    let allowed =
        (1u64 << CAP_KILL) | (1 << CAP_SETGID) | (1 << CAP_SETUID) | (1 << CAP_NET_BIND_SERVICE);
    for key in ["CapPrm", "CapEff"] {
        let c = caps(master, key);
        assert_eq!(
            c & !allowed,
            0,
            "master {key} = {c:#x} holds more than the four"
        );
    }
    // The bounding set may add CAP_SETPCAP (8), held in no other set of the master, so
    // that a restarted control can empty its own bounding set (ARCHITECTURE.md).
    let bnd = caps(master, "CapBnd");
    assert_eq!(bnd & !(allowed | 1 << 8), 0, "master CapBnd = {bnd:#x}");
    assert_eq!(caps(master, "CapAmb"), 0);
    let out = long.join().unwrap();
    assert!(
        out.status.success(),
        "owping against port 861: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("\nLOST\t0").count(), 2, "{stdout}");
    // The files the nobody-owned control process wrote are there.
    let stored = e2e::files_under(&server.datadir().join("hierarchy"));
    assert!(!stored.is_empty());
}

#[test]
fn root_without_a_user_is_refused() {
    if !require_root("root_without_a_user_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(e2e::bin("owampd"))
        .args(["-Z", "-S", &format!("127.0.0.1:{}", e2e::free_port())])
        .arg("-R")
        .arg(dir.path())
        .arg("-d")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("-U") || err.contains("root"), "{err}");
}

/// Needs root (`-U nobody`). A datadir the run-as user cannot write, in daemon mode:
/// the launcher waits for control to open its data store, so it exits 1 with control's
/// one line, leaving no pid file, nothing listening and no process behind (control is
/// not restarted in a loop).
#[test]
fn a_datadir_the_run_as_user_cannot_write_fails_the_start() {
    use std::os::unix::fs::PermissionsExt;
    if !require_root("a_datadir_the_run_as_user_cannot_write_fails_the_start") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Root's, readable and searchable by nobody, not writable.
    for d in [dir.path(), data.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = std::os::unix::net::UnixDatagram::bind(dir.path().join("log.sock")).unwrap();
    let port = e2e::free_port();
    let out = std::process::Command::new(e2e::bin("owampd"))
        .args(["-U", "nobody", "-S", &format!("127.0.0.1:{port}")])
        .arg("-d")
        .arg(&data)
        .arg("-R")
        .arg(dir.path())
        .env("OWAMPD_SYSLOG_SOCKET", dir.path().join("log.sock"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "owampd: owampd-control: data store: create {}: Permission denied (os error 13)\n",
        data.canonicalize().unwrap().join("hierarchy").display()
    );
    assert_eq!(err, want);
    assert!(
        !dir.path().join("owamp-server.pid").exists(),
        "pid file left"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // The daemon and its control are gone: no process names our data directory.
    let here = data.display().to_string();
    let ours = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter(|e| {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // A zombie (Z) has exited; only live processes count.
                String::from_utf8_lossy(&cmd).contains(&here)
                    && !state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
            })
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(10), || ours() == 0),
        "owampd still running"
    );
    drop(log);
}
