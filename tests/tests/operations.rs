//! What an operator sees: syslog lines with the configured facility and level (an
//! access line per connection, refusals with their reason) and OWAMP_DEBUG_TIMEOFFSET.

use e2e::raw::Raw;
use e2e::{Server, free_port, run_client};
use owamp::Mode;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Collects syslog datagrams for up to `limit` or until `done` says enough.
fn collect(sock: &UnixDatagram, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    e2e::wait_for(limit, || {
        // Each datagram waiting now, then the verdict.
        while let Ok(n) = sock.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).to_string());
            if done(&lines) {
                break;
            }
        }
        done(&lines)
    });
    lines
}

#[test]
fn syslog_has_access_lines_and_refusals_at_the_configured_facility() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("owamp-server.conf"), "loglevel info\n").unwrap();
    std::fs::write(conf.join("owamp-server.pfs"), "alice 7465737470617373\n").unwrap();
    let server = Server::start_env(
        dir,
        "127.0.0.1",
        free_port(),
        &["-c", conf.to_str().unwrap(), "-e", "local5"],
        &[("OWAMPD_SYSLOG_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut ok = Raw::connect(server.addr).unwrap();
    assert_eq!(ok.setup(Mode::Open, "", b"").unwrap(), 0);
    let mut bad = Raw::connect(server.addr).unwrap();
    assert_eq!(
        bad.setup(Mode::Authenticated, "alice", b"wrong").unwrap(),
        1
    );
    let lines = collect(&sock, Duration::from_secs(10), |l| {
        l.iter().any(|x| x.contains("accepted")) && l.iter().any(|x| x.contains("alice"))
    });
    // local5 = 21; info = 6, notice/warning for refusals: PRI = 21·8 + severity.
    let access = lines
        .iter()
        .find(|l| l.contains("accepted") && l.contains("127.0.0.1"))
        .unwrap_or_else(|| panic!("no access line in {lines:#?}"));
    assert!(access.starts_with("<174>"), "{access}");
    let refusal = lines
        .iter()
        .find(|l| l.contains("alice"))
        .unwrap_or_else(|| panic!("no refusal line in {lines:#?}"));
    let pri: u32 = refusal[1..refusal.find('>').unwrap()].parse().unwrap();
    assert_eq!(pri / 8, 21, "{refusal}");
    assert!(refusal.contains("127.0.0.1"), "{refusal}");
}

#[test]
fn loglevel_warning_hides_access_lines() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("owamp-server.conf"), "loglevel warning\n").unwrap();
    let server = Server::start_env(
        dir,
        "127.0.0.1",
        free_port(),
        &["-c", conf.to_str().unwrap()],
        &[("OWAMPD_SYSLOG_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut ok = Raw::connect(server.addr).unwrap();
    assert_eq!(ok.setup(Mode::Open, "", b"").unwrap(), 0);
    let lines = collect(&sock, Duration::from_secs(2), |_| false);
    assert!(
        !lines.iter().any(|l| l.contains("accepted")),
        "an INFO line passed loglevel warning: {lines:#?}"
    );
}

/// Values of one key in owping -M output, in order.
fn machine_values(stdout: &str, key: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}\t")))
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn owamp_debug_timeoffset_shifts_the_servers_clock() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_env(
        dir,
        "127.0.0.1",
        free_port(),
        &[],
        &[("OWAMP_DEBUG_TIMEOFFSET", "0.5")],
    );
    let out = run_client(
        "owping",
        &["-c", "10", "-i", "0.01f", "-L", "3", "-M", &server.target()],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let min = machine_values(&stdout, "MIN");
    assert_eq!(min.len(), 2, "{stdout}");
    // To the server (its receive clock is 0.5 s ahead): about +0.5 s. From it (its send
    // clock is ahead): about −0.5 s.
    assert!(
        (min[0] - 0.5).abs() < 0.1,
        "to-server delay {}: {stdout}",
        min[0]
    );
    assert!(
        (min[1] + 0.5).abs() < 0.1,
        "from-server delay {}: {stdout}",
        min[1]
    );
}
