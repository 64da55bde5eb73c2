//! The clients against the real `owampd` of this workspace (protocol.md §8.2 end to end):
//! both directions in open, authenticated and encrypted modes, -T/-F files read back by
//! owstats, owfetch by SID, owup.
//!
//! They need the workspace's binaries: `cargo build --workspace` first (the README's
//! test command does). The same scenarios also run against the in-process mock server
//! in `mock_e2e.rs`.

use e2e::{Server, free_port, is_root, run_client};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const FAST: &[&str] = &["-c", "20", "-i", "0.01f", "-L", "1", "-E", "0.2", "-P", "0"];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A confdir with a pfs for user alice (pass-phrase "secret") and open limits.
fn confdir(dir: &std::path::Path) -> String {
    let c = dir.join("conf");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("owamp-server.conf"), "").unwrap();
    std::fs::write(c.join("owamp-server.pfs"), "alice 736563726574\n").unwrap();
    std::fs::write(
        c.join("owamp-server.limits"),
        "limit root with disk=0,bandwidth=0,delete_on_fetch=off,allow_open_mode=on\nassign default root\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.pfs"), "alice 736563726574\n").unwrap();
    c.display().to_string()
}

/// owampd with the confdir in a fresh directory the run-as user (nobody, when we are
/// root) can write; returns the server and the directory for client files.
fn start_server() -> (Server, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let conf = confdir(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for d in [dir.path(), data.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let files = dir.path().to_path_buf();
    let mut extra = vec!["-c".to_string(), conf];
    if is_root() {
        extra.extend(["-U".to_string(), "nobody".to_string()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let srv = Server::start_in(dir, "127.0.0.1", free_port(), &extra);
    let pfs = files.join("client.pfs").display().to_string();
    (srv, files, pfs)
}

fn check_both(out: &std::process::Output) {
    let so = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{so}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert_eq!(so.matches("--- owping statistics from").count(), 2, "{so}");
    assert_eq!(so.matches("20 sent, 0 lost").count(), 2, "{so}");
}

#[test]

fn owping_open_auth_encrypted() {
    let (srv, _files, pfs) = start_server();
    let target = srv.target();
    let mut open = FAST.to_vec();
    open.push(&target);
    check_both(&run_client("owping", &open, LIMIT));
    for modes in ["A", "E"] {
        let mut a = FAST.to_vec();
        a.extend(["-A", modes, "-u", "alice", "-k", &pfs, &target]);
        check_both(&run_client("owping", &a, LIMIT));
    }
}

#[test]

fn files_owstats_owfetch_owup() {
    let (srv, files, _) = start_server();
    let target = srv.target();
    let to = files.join("to.owp").display().to_string();
    let from = files.join("from.owp").display().to_string();
    let mut a = FAST.to_vec();
    a.extend(["-M", "-T", &to, "-F", &from, &target]);
    let out = run_client("owping", &a, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    let to_sid = so
        .lines()
        .find_map(|l| l.strip_prefix("SID\t"))
        .expect("a SID line")
        .to_string();
    for f in [&to, &from] {
        let st = run_client("owstats", &["-M", f], LIMIT);
        assert!(st.status.success(), "{}", text(&st.stderr));
        assert!(text(&st.stdout).contains("SENT\t20\n"));
    }
    let fetched = files.join("fetched.owp").display().to_string();
    let f = run_client("owfetch", &["-R", &target, &to_sid, &fetched], LIMIT);
    assert!(f.status.success(), "{}", text(&f.stderr));
    let raw = run_client("owstats", &["-R", &to], LIMIT);
    assert_eq!(text(&f.stdout), text(&raw.stdout));
    let up = run_client("owup", &[&target], LIMIT);
    assert!(up.status.success(), "{}", text(&up.stderr));
    // The one line, after the warning of an unsynchronised clock (as the reference's).
    let up_lines: Vec<String> = text(&up.stderr)
        .lines()
        .filter(|l| !l.contains(": NTP: "))
        .map(String::from)
        .collect();
    assert_eq!(up_lines.len(), 1, "{}", text(&up.stderr));
    assert!(up_lines[0].starts_with("Server Up Since: "), "{up_lines:?}");
}

/// A loss timeout of 1 ns makes every packet of both directions late, so nothing is
/// received: each `-M` summary, whole or `-N` sub-session, still carries MINTTL 255
/// and MAXTTL 0 (what `.sum` parsers expect) and only `<TTLBUCKETS>` is left out.
#[test]
fn machine_summary_keeps_ttl_keys_when_nothing_arrives() {
    let (srv, _files, _) = start_server();
    let target = srv.target();
    let base = [
        "-c",
        "5",
        "-i",
        "0.05",
        "-L",
        "0.000000001",
        "-b",
        "0.000000001",
    ];
    for (extra, summaries) in [(&["-M"][..], 2), (&["-M", "-N", "2"][..], 6)] {
        let mut a = base.to_vec();
        a.extend(extra);
        a.push(&target);
        let out = run_client("owping", &a, LIMIT);
        let so = text(&out.stdout);
        assert!(out.status.success(), "{so}{}", text(&out.stderr));
        assert_eq!(so.matches("SUMMARY\t3.00\n").count(), summaries, "{so}");
        assert_eq!(so.matches("\nSENT\t0\n").count(), summaries, "{so}");
        assert_eq!(
            so.matches("\nMINTTL\t255\nMAXTTL\t0\n").count(),
            summaries,
            "{so}"
        );
        assert!(!so.contains("TTLBUCKETS"), "{so}");
    }
}

/// owping names its own end by its resolved name and the test peer as it was typed,
/// as the reference's owping does: the same names in the human and the `-M` summaries.
/// The expected local name is what owstats prints for the saved file's sender address
/// (owstats resolves as the reference does), so the test holds whatever /etc/hosts says.
#[test]
fn owping_names_this_host_resolved_and_the_peer_as_typed() {
    let (srv, files, _) = start_server();
    let port = srv.target().rsplit_once(':').unwrap().1.to_string();
    let to = files.join("names-to.owp").display().to_string();
    let from = files.join("names-from.owp").display().to_string();
    for peer in ["127.0.0.1", "localhost"] {
        let target = format!("{peer}:{port}");
        let mut a = FAST.to_vec();
        a.extend(["-M", "-T", &to, "-F", &from, &target]);
        let out = run_client("owping", &a, LIMIT);
        let so = text(&out.stdout);
        assert!(out.status.success(), "{so}{}", text(&out.stderr));
        let st = run_client("owstats", &["-M", &to], LIMIT);
        let local = text(&st.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("FROM_HOST\t"))
            .expect("FROM_HOST in owstats -M")
            .to_string();
        // The "to" session, then the "from" one.
        let hosts: Vec<&str> = so
            .lines()
            .filter_map(|l| {
                l.strip_prefix("FROM_HOST\t")
                    .or(l.strip_prefix("TO_HOST\t"))
            })
            .collect();
        assert_eq!(hosts, [local.as_str(), peer, peer, local.as_str()], "{so}");
        let mut a = FAST.to_vec();
        a.push(&target);
        let so = text(&run_client("owping", &a, LIMIT).stdout);
        let heads: Vec<&str> = so.lines().filter(|l| l.starts_with("--- owping")).collect();
        assert_eq!(heads.len(), 2, "{so}");
        assert!(
            heads[0].starts_with(&format!("--- owping statistics from [{local}]:"))
                && heads[0].contains(&format!(" to [{peer}]:")),
            "{so}"
        );
        assert!(
            heads[1].starts_with(&format!("--- owping statistics from [{peer}]:"))
                && heads[1].contains(&format!(" to [{local}]:")),
            "{so}"
        );
    }
}

/// A stored session without one record (owping interrupted before the start time, so
/// its Stop-Sessions says nothing was sent): owping's fetch of it and owfetch's are
/// refused as the reference's clients refuse them, and no file is written; owfetch's
/// connection stays usable for the next SID.
#[test]
fn fetch_of_a_session_without_records_is_refused_and_writes_nothing() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use std::io::BufRead;
    let (srv, files, _) = start_server();
    let target = srv.target();
    let to = files.join("empty-to.owp");
    let mut child = std::process::Command::new(e2e::bin("owping"))
        .args(["-t", "-z", "30", "-c", "5", "-P", "0", "-T"])
        .arg(&to)
        .arg(&target)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // "Approximately …" is printed once Start-Sessions is acknowledged.
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("Approximately"), "{first}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the session holds no records"), "{err}");
    assert!(!to.exists(), "no file for a session without records");
    let sid = err
        .split("Unable to fetch data for sid(")
        .nth(1)
        .and_then(|r| r.get(..32))
        .expect("the SID in the message")
        .to_string();

    let a = files.join("empty-a.owp").display().to_string();
    let b = files.join("empty-b.owp").display().to_string();
    let f = run_client("owfetch", &[&target, &sid, &a, &sid, &b], LIMIT);
    let ferr = text(&f.stderr);
    assert_eq!(f.status.code(), Some(1), "{ferr}");
    assert_eq!(
        ferr.matches(&format!(
            "Unable to fetch sid({sid}): the session holds no records"
        ))
        .count(),
        2,
        "both fetches refused on one connection: {ferr}"
    );
    assert!(text(&f.stdout).is_empty(), "no nan statistics");
    assert!(!std::path::Path::new(&a).exists() && !std::path::Path::new(&b).exists());
}
