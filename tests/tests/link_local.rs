//! IPv6 link-local test addresses (protocol.md §2.1.3): accepted when the control connection
//! is itself link-local, the scope (interface) being that connection's. Needs root for
//! a private network namespace with a veth pair (loopback has no link-local address).

use e2e::{Server, enter_private_netns, free_port, require_root, run_client};
use std::process::Command;
use std::time::Duration;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

/// Values of one key in owping -M output, one per session.
fn machine_values(stdout: &str, key: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}\t")).map(str::to_string))
        .collect()
}

#[test]
fn sessions_over_a_link_local_control_connection() {
    if !require_root("sessions_over_a_link_local_control_connection") {
        return;
    }
    enter_private_netns();
    ip(&["link", "add", "ll0", "type", "veth", "peer", "name", "ll1"]);
    ip(&["link", "set", "ll0", "up"]);
    ip(&["link", "set", "ll1", "up"]);
    // nodad: usable at once, without waiting for duplicate address detection.
    ip(&["addr", "add", "fe80::1/64", "dev", "ll0", "nodad"]);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir, "::", free_port(), &[]);
    let target = format!("[fe80::1%ll0]:{}", server.addr.port());
    let out = run_client(
        "owping",
        &["-c", "20", "-i", "0.01f", "-L", "2", "-M", &target],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "owping over link-local failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(machine_values(&stdout, "SENT"), ["20", "20"], "{stdout}");
    assert_eq!(machine_values(&stdout, "LOST"), ["0", "0"], "{stdout}");
    assert_eq!(
        machine_values(&stdout, "FROM_ADDR"),
        ["fe80::1", "fe80::1"],
        "{stdout}"
    );
}
