//! owampd stopped (SIGTERM, SIGINT, SIGHUP) while test sessions run: every running
//! session ends with the Stop-Sessions exchange (RFC 4656 §3.8) within `dieby`, so the
//! client keeps what was measured in both directions and the server keeps, finalised,
//! what it received. Connections doing anything else are closed.

use e2e::raw::{Raw, receive_request};
use e2e::{Server, free_port, owp_files, run_client, wait_for};
use owamp::wire::{CommandKind, StartAck, StartSessions};
use owamp::{AcceptCode, Mode};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The server's one receive file, once its tester has written `n` records into it:
/// the header is written at Start-Sessions, records follow as packets arrive.
fn wait_for_records(server: &Server, n: u64) -> PathBuf {
    let hierarchy = server.datadir().join("hierarchy");
    let mut file = None;
    let found = wait_for(Duration::from_secs(30), || {
        file = owp_files(&hierarchy).into_iter().next();
        file.as_ref().is_some_and(|f| file_len(f) > 0)
    });
    assert!(found, "no receive file with a header: {}", server.stderr());
    let file = file.unwrap();
    let header = file_len(&file);
    // Records are 25 bytes.
    let flowing = wait_for(Duration::from_secs(30), || {
        file_len(&file) >= header + 25 * n
    });
    assert!(flowing, "no packets recorded: {}", server.stderr());
    file
}

fn signal(server: &Server, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn wait_exit(server: &mut Server) -> ExitStatus {
    let mut status = None;
    let stopped = wait_for(LONG, || {
        status = server.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(stopped, "owampd did not stop: {}", server.stderr());
    status.unwrap()
}

/// "N sent, M lost" lines of owping's summaries, as (N, M).
fn sent_lost(stdout: &str) -> Vec<(u32, u32)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (sent, rest) = l.split_once(" sent, ")?;
            let lost = rest.split_once(" lost")?.0;
            Some((sent.parse().ok()?, lost.parse().ok()?))
        })
        .collect()
}

fn machine_value(stdout: &str, key: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}\t")).map(str::to_string))
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// owping mid-test in both directions, the master stopped by each signal: owping
/// gets partial results of both sessions and exits 0; the server stops cleanly and
/// keeps its receive session finalised as complete, with what owping reported.
///
/// Both sides keep only records sent at least Timeout (`-L`) before the stop
/// (RFC 4656 §3.8, as the reference does): the stop comes 2.5 s into the session
/// with a 1 s Timeout, so about 150 of the 1000 packets are counted.
#[test]
fn a_stop_signal_ends_running_sessions_with_stop_sessions() {
    for sig in ["TERM", "INT", "HUP"] {
        let mut server = Server::start(&[]);
        let target = server.target();
        let client = std::thread::spawn(move || {
            run_client(
                "owping",
                &["-c", "1000", "-i", "0.01", "-L", "1", &target],
                LONG,
            )
        });
        let stored = wait_for_records(&server, 250);
        signal(&server, sig);
        let status = wait_exit(&mut server);
        assert!(status.success(), "SIG{sig}: owampd {status}");
        let out = client.join().unwrap();
        assert!(out.status.success(), "SIG{sig}: owping {}", describe(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let figures = sent_lost(&stdout);
        assert_eq!(
            figures.len(),
            2,
            "SIG{sig}: two summaries: {}",
            describe(&out)
        );
        for (sent, lost) in &figures {
            assert!(
                *sent > 0 && *sent < 1000,
                "SIG{sig}: a partial session: {}",
                describe(&out)
            );
            assert!(lost < sent, "SIG{sig}: {}", describe(&out));
        }
        let log = server.stderr();
        assert!(
            log.contains("ending 2 running session(s) with Stop-Sessions"),
            "SIG{sig}: {log}"
        );
        // What the server received is kept, finalised from owping's Stop-Sessions:
        // complete, with the packets owping says it sent toward it (the first summary).
        let stats = run_client("owstats", &["-M", stored.to_str().unwrap()], LONG);
        assert!(stats.status.success(), "SIG{sig}: {}", describe(&stats));
        let stats = String::from_utf8_lossy(&stats.stdout);
        assert_eq!(
            machine_value(&stats, "SESSION_FINISHED").as_deref(),
            Some("1"),
            "SIG{sig}: {stats}"
        );
        assert_eq!(
            machine_value(&stats, "SENT"),
            Some(figures[0].0.to_string()),
            "SIG{sig}: {stats}\nowping:\n{stdout}"
        );
    }
}

/// systemd's `systemctl stop` (KillMode=control-group) and ^C at a terminal send the
/// stop signal to every process of the server at once, not only to the master: control
/// and the testers must not die of it, so that the sessions still end with
/// Stop-Sessions and owping gets both partial results.
#[test]
fn a_stop_signal_to_every_server_process_at_once_still_ends_with_stop_sessions() {
    let mut server = Server::start(&[]);
    let target = server.target();
    let client = std::thread::spawn(move || {
        run_client(
            "owping",
            &["-c", "1000", "-i", "0.01", "-L", "1", &target],
            LONG,
        )
    });
    wait_for_records(&server, 250);
    let mut pids = vec![
        server.child.id(),
        server.control_pid(),
        server.spawner_pid(),
    ];
    let testers = server.tester_pids();
    assert_eq!(testers.len(), 2, "a sender and a receiver: {testers:?}");
    pids.extend(testers);
    // The master last: once it has the signal, a stopped sender's tester may exit
    // before `kill` reaches its pid.
    pids.reverse();
    let st = Command::new("kill")
        .arg("-TERM")
        .args(pids.iter().map(u32::to_string))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "kill -TERM {pids:?}: {}\n{}",
        String::from_utf8_lossy(&st.stderr),
        server.stderr()
    );
    assert!(wait_exit(&mut server).success(), "{}", server.stderr());
    let out = client.join().unwrap();
    assert!(out.status.success(), "owping {}", describe(&out));
    let figures = sent_lost(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(figures.len(), 2, "two summaries: {}", describe(&out));
    assert!(
        figures.iter().all(|(sent, _)| *sent > 0 && *sent < 1000),
        "partial sessions: {}",
        describe(&out)
    );
}

/// A connection with an accepted session not yet started is simply closed, and the
/// session's empty file removed.
#[test]
fn a_stop_closes_connections_whose_sessions_never_started() {
    let mut server = Server::start(&[]);
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.setup(Mode::Open, "", b"").unwrap(), 0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = receive_request(udp.local_addr().unwrap(), server.addr.ip(), 10);
    assert_eq!(raw.request(&req).unwrap().accept, AcceptCode::Ok);
    let hierarchy = server.datadir().join("hierarchy");
    assert_eq!(owp_files(&hierarchy).len(), 1);
    signal(&server, "TERM");
    assert!(raw.closed_without_reply(), "{}", server.stderr());
    assert!(wait_exit(&mut server).success(), "{}", server.stderr());
    assert_eq!(owp_files(&hierarchy), Vec::<PathBuf>::new());
}

/// A client that never answers the server's Stop-Sessions does not hold the stop
/// past `dieby`: the server's receive data is kept, finalised as incomplete.
#[test]
fn a_client_that_never_answers_does_not_hold_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("owamp-server.conf"), "dieby 2\n").unwrap();
    let mut server = Server::start_in(
        dir,
        "127.0.0.1",
        free_port(),
        &["-c", conf.to_str().unwrap()],
    );
    let mut raw = Raw::connect(server.addr).unwrap();
    assert_eq!(raw.setup(Mode::Open, "", b"").unwrap(), 0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = receive_request(udp.local_addr().unwrap(), server.addr.ip(), 1000);
    assert_eq!(raw.request(&req).unwrap().accept, AcceptCode::Ok);
    raw.stream
        .write_message(&[&StartSessions.encode()])
        .unwrap();
    let ack = raw.stream.read_blocks(1).unwrap();
    raw.stream.read_hmac().unwrap();
    let ack = StartAck::decode(&ack.try_into().unwrap()).unwrap();
    assert_eq!(ack.accept, AcceptCode::Ok);
    let hierarchy = server.datadir().join("hierarchy");
    let mut file = None;
    let started = wait_for(Duration::from_secs(30), || {
        file = owp_files(&hierarchy).into_iter().next();
        file.as_ref().is_some_and(|f| file_len(f) > 0)
    });
    assert!(started, "no receive file: {}", server.stderr());
    signal(&server, "TERM");
    // The server's Stop-Sessions comes; it is never answered.
    let header = raw.stream.read_blocks(1).unwrap();
    assert_eq!(
        CommandKind::from_block(&header.try_into().unwrap()),
        CommandKind::StopSessions
    );
    assert!(wait_exit(&mut server).success(), "{}", server.stderr());
    let log = server.stderr();
    assert!(log.contains("finished=2"), "kept as incomplete: {log}");
    let file = file.unwrap();
    assert!(file.exists(), "receive data discarded: {log}");
    let stats = run_client("owstats", &["-M", file.to_str().unwrap()], LONG);
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert_eq!(
        machine_value(&stats, "SESSION_FINISHED").as_deref(),
        Some("0"),
        "{stats}"
    );
    drop(raw);
}
