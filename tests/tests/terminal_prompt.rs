//! owping asks for the pass-phrase on its controlling terminal, with echo off, when no
//! `-k` file is given (protocol.md §1.4; the reference's I2ReadPassPhrase). The terminal is a
//! real pseudo-terminal: `script(1)` (util-linux) runs owping as the session leader of
//! a new pty and copies its own standard input to it, as typing would.

use e2e::{Server, bin, free_port};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PROMPT: &str = "Enter passphrase for identity 'alice': ";
const PASS: &str = "testpass";

/// A server whose pfs holds alice's pass-phrase ("testpass" in hex).
fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("owamp-server.pfs"), "alice 7465737470617373\n").unwrap();
    std::fs::write(etc.join("owamp-server.conf"), "# test\n").unwrap();
    let c = etc.to_str().unwrap().to_string();
    Server::start_in(dir, "127.0.0.1", free_port(), &["-c", &c])
}

/// Runs `owping <args>` on a new pty; types `typed` (then a newline) once the prompt
/// is on the terminal. Returns the exit status's success and the terminal transcript.
fn owping_on_a_terminal(args: &[&str], typed: &str) -> (bool, String) {
    let cmd = std::iter::once(bin("owping").display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    // -q: no "Script started" lines; -e: owping's exit status is script's.
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run script(1) (util-linux)");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut transcript = Vec::new();
    let mut stdin = child.stdin.take();
    // Kept open until the end: script ends the session when its input closes.
    let mut typed_into = None;
    // Typed only once the prompt shows: owping turns echo off before it prints it, so
    // a pass-phrase typed after it must not come back.
    e2e::wait_for(Duration::from_secs(60), || {
        let mut disconnected = false;
        loop {
            match rx.try_recv() {
                Ok(b) => transcript.extend_from_slice(&b),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if String::from_utf8_lossy(&transcript).contains(PROMPT)
            && let Some(mut s) = stdin.take()
        {
            s.write_all(format!("{typed}\n").as_bytes()).unwrap();
            typed_into = Some(s);
        }
        if let Ok(Some(_)) = child.try_wait() {
            // Take what is still buffered.
            while let Ok(b) = rx.recv_timeout(Duration::from_millis(200)) {
                transcript.extend_from_slice(&b);
            }
            return true;
        }
        disconnected
    });
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    drop(typed_into);
    let _ = reader.join();
    (
        status.success(),
        String::from_utf8_lossy(&transcript).to_string(),
    )
}

#[test]
fn the_pass_phrase_is_read_from_the_terminal_without_echo() {
    let server = server();
    let target = server.target();
    let args = [
        "-A", "A", "-u", "alice", "-c", "10", "-i", "0.01f", "-L", "2", "-M", &target,
    ];
    let (ok, transcript) = owping_on_a_terminal(&args, PASS);
    assert!(ok, "owping failed on a terminal:\n{transcript}");
    assert!(transcript.contains(PROMPT), "no prompt:\n{transcript}");
    assert!(
        !transcript.contains(PASS),
        "the pass-phrase was echoed:\n{transcript}"
    );
    // Both directions ran: two -M summaries with every packet sent.
    let sent: Vec<&str> = transcript
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("SENT\t"))
        .collect();
    assert_eq!(sent, ["10", "10"], "{transcript}");
}

#[test]
fn a_wrong_pass_phrase_typed_on_the_terminal_is_refused() {
    let server = server();
    let target = server.target();
    let args = ["-A", "A", "-u", "alice", "-c", "5", "-i", "0.01f", &target];
    let (ok, transcript) = owping_on_a_terminal(&args, "not-the-pass-phrase");
    assert!(!ok, "owping accepted a wrong pass-phrase:\n{transcript}");
    assert!(transcript.contains(PROMPT), "no prompt:\n{transcript}");
    assert!(
        !transcript.contains("not-the-pass-phrase"),
        "the pass-phrase was echoed:\n{transcript}"
    );
}
