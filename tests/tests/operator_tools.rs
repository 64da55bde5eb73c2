//! The operator tools of the server package against a real owampd: `owampd-cleanup`
//! keeps the file a running tester writes and removes an old one nobody holds, and a
//! `.pfs` file written by `owpfstore` is what owampd and owping authenticate with.

use e2e::{Server, bin, files_under, run_client, wait_for};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn cleanup(args: &[&str]) -> Output {
    Command::new(bin("owampd-cleanup"))
        .args(args)
        .output()
        .expect("run owampd-cleanup")
}

#[test]
fn cleanup_keeps_the_file_a_running_tester_holds() {
    let server = Server::start(&[]);
    let hierarchy = server.datadir().join("hierarchy");
    let catalog = server.datadir().join("catalog");
    // The server receives for 15 s and writes the session file meanwhile.
    let owping = Command::new(bin("owping"))
        .args(["-t", "-c", "300", "-i", "0.05", "-L", "2", &server.target()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn owping");
    assert!(
        wait_for(Duration::from_secs(20), || files_under(&hierarchy)
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "owp"))),
        "no session file under {}: {}",
        hierarchy.display(),
        server.stderr()
    );
    let session = files_under(&hierarchy).remove(0);
    // A file nobody holds, from a session long gone.
    let stale = session.with_file_name("0000000000000000000000000000000a.owp");
    std::fs::write(&stale, "old").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3 * 86_400))
        .unwrap();

    // -a 0: every file is old enough, so only being held open can keep one.
    let h = hierarchy.to_str().unwrap();
    let c = catalog.to_str().unwrap();
    let dry = cleanup(&["-n", "-a", "0", "-d", h, "-l", c]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let kept = format!(
        "kept {}: open in pid ",
        session.canonicalize().unwrap().display()
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&kept))
        .unwrap_or_else(|| panic!("the session file is not seen held open:\n{text}"));
    // Control holds it too; the tester writing it must be among the holders.
    assert!(line.ends_with(')') && line.contains(" (owtest-"), "{line}");
    assert!(text.contains("would remove "), "{text}");
    assert!(stale.exists(), "-n removed a file");

    let run = cleanup(&["-v", "-d", h, "-l", c]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!stale.exists(), "the stale file is still there:\n{text}");
    assert!(
        session.exists(),
        "the running session's file was removed:\n{text}"
    );

    let out = owping.wait_with_output().expect("owping");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("300 sent, 0 lost"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// owpfstore with the pass-phrase on standard input: `setsid` takes the terminal
/// away, as in a script.
fn pfstore(args: &[&str], passphrase: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("setsid")
        .arg("-w")
        .arg(bin("owpfstore"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run setsid owpfstore");
    // A refusal (the file exists already) comes before the pass-phrase is read: the
    // child may be gone before we write, and that is not the test's failure.
    match child.stdin.take().unwrap().write_all(passphrase.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("writing the pass-phrase to owpfstore: {e}"),
    }
    child.wait_with_output().unwrap()
}

#[test]
fn owpfstore_files_authenticate_owping_with_owampd() {
    let conf = tempfile::tempdir().unwrap();
    let pfs = conf.path().join("owamp-server.pfs");
    let pfs_s = pfs.to_str().unwrap();
    let ok = |o: Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(pfstore(&["-f", pfs_s, "-n", "alice"], "not this one\n"));
    ok(pfstore(&["-f", pfs_s, "bob"], "bob's phrase\n"));
    ok(pfstore(&["-f", pfs_s, "alice"], "correct horse\n"));
    let refused = pfstore(&["-f", pfs_s, "-n", "carol"], "x\n");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        format!("owpfstore: {pfs_s}: exists already\n")
    );
    std::fs::write(conf.path().join("owamp-server.conf"), "").unwrap();
    std::fs::write(
        conf.path().join("owamp-server.limits"),
        "limit root with allow_open_mode=off\nassign default root\n",
    )
    .unwrap();

    let server = Server::start(&["-c", conf.path().to_str().unwrap(), "-a", "AE"]);
    for mode in ["A", "E"] {
        let m = run_client(
            "owping",
            &[
                "-A",
                mode,
                "-u",
                "alice",
                "-k",
                pfs_s,
                "-c",
                "10",
                "-i",
                "0.01",
                &server.target(),
            ],
            Duration::from_secs(60),
        );
        assert!(
            m.status.success(),
            "-A {mode}: {}{}",
            String::from_utf8_lossy(&m.stderr),
            server.stderr()
        );
        assert_eq!(
            String::from_utf8_lossy(&m.stdout)
                .matches("10 sent, 0 lost")
                .count(),
            2
        );
    }
    // After a delete, alice is unknown to a restarted server.
    ok(pfstore(&["-f", pfs_s, "-d", "alice"], ""));
    drop(server);
    let server = Server::start(&["-c", conf.path().to_str().unwrap(), "-a", "AE"]);
    let client_pfs = conf.path().join("client.pfs");
    std::fs::write(&client_pfs, "alice 636f727265637420686f727365\n").unwrap();
    let m = run_client(
        "owping",
        &[
            "-A",
            "A",
            "-u",
            "alice",
            "-k",
            client_pfs.to_str().unwrap(),
            "-c",
            "3",
            &server.target(),
        ],
        Duration::from_secs(60),
    );
    assert!(
        !m.status.success(),
        "a deleted identity still authenticates"
    );
}
