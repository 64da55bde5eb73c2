//! The tester spawner as control uses it: forked for real from a single-threaded
//! process (this test has no libtest harness, whose threads would make the fork
//! refuse), starting this same test binary as its program. Started with
//! `SPAWNER_TEST_CHILD` set, the binary is the child: it reports its argv[0], its
//! environment and its descriptors on fd 3, then waits for fd 3 to close.

use ipc::Channel;
use ipc::spawner::{Request, SpawnReply, fork_spawner, pidfd_kill, serve};
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const CHILD: &str = "SPAWNER_TEST_CHILD";

fn child() -> ! {
    // SAFETY: fd 3 was placed for this child by the spawner; nothing else owns it.
    let mut s = unsafe { UnixStream::from_raw_fd(3) };
    let open = |fd| nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_GETFD).is_ok();
    let report = format!(
        "argv0={} env={} fd4={} fd5={} fd9={}\n",
        std::env::args().next().unwrap_or_default(),
        std::env::var(CHILD).unwrap_or_default(),
        open(4),
        open(5),
        open(9),
    );
    let _ = s.write_all(report.as_bytes());
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    std::process::exit(0)
}

fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: only used for an F_GETFD probe of a number that may be closed; the kernel
    // checks the number, nothing is read or closed through it.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

fn request(env: &str, targets: Vec<i32>) -> Request {
    Request::Spawn {
        argv0: "owampd-tester [sid=test]".into(),
        env: vec![(CHILD.into(), env.into())],
        targets,
    }
}

fn spawn(
    chan: &Channel,
    req: &Request,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> (SpawnReply, Vec<OwnedFd>) {
    chan.send(req, fds).expect("send request");
    let r = chan.recv::<SpawnReply>().expect("reply");
    (r.msg, r.fds)
}

fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        e2e::wait_for(Duration::from_secs(20), cond),
        "timed out waiting for {what}"
    );
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
    }
    let program = std::env::current_exe().expect("current_exe");
    let (chan, spawner_pid) = fork_spawner(7, 8, move |chan| match serve(&chan, &program) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("spawner: {e}");
            2
        }
    })
    .expect("fork the spawner");

    // 1. A child gets exactly its descriptors, at their numbers, and its argv[0] and env.
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let (extra, _keep) = UnixStream::pair().unwrap();
    let (reply, fds) = spawn(
        &chan,
        &request("one", vec![3, 5]),
        &[theirs.as_fd(), extra.as_fd()],
    );
    drop(theirs);
    let SpawnReply::Spawned { pid } = reply else {
        panic!("not spawned: {reply:?}");
    };
    assert_eq!(fds.len(), 1, "a pidfd with the reply");
    let mut line = String::new();
    let mut buf = [0u8; 256];
    while !line.ends_with('\n') {
        let n = ours.read(&mut buf).expect("read the child's report");
        assert!(n > 0, "child closed before reporting: {line:?}");
        line.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    assert_eq!(
        line, "argv0=owampd-tester [sid=test] env=one fd4=false fd5=true fd9=false\n",
        "the child's view"
    );
    // Closing our end lets it exit; the kernel reaps it (no zombie left behind).
    drop(ours);
    wait_for("the first child to be reaped", || gone(pid));

    // 2. A child that would run on is killed through its pidfd, by the spawner when
    // asked (Kill, not answered), or by anyone allowed to signal it.
    for by_spawner in [true, false] {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (reply, fds) = spawn(&chan, &request("two", vec![3]), &[theirs.as_fd()]);
        drop(theirs);
        let SpawnReply::Spawned { pid } = reply else {
            panic!("not spawned: {reply:?}");
        };
        if by_spawner {
            chan.send(&Request::Kill, &[fds[0].as_fd()]).expect("Kill");
        } else {
            pidfd_kill(fds[0].as_fd()).expect("pidfd_kill");
        }
        wait_for("the killed child to be reaped", || gone(pid));
        // Killing what is gone is not an error.
        pidfd_kill(fds[0].as_fd()).expect("pidfd_kill of an exited process");
        drop(ours);
    }

    // 3. A request whose descriptors do not match its targets is refused; the spawner
    // carries on.
    let (_a, b) = UnixStream::pair().unwrap();
    let (reply, fds) = spawn(&chan, &request("three", vec![3, 4]), &[b.as_fd()]);
    assert!(
        matches!(&reply, SpawnReply::Failed { reason } if reason.contains("1 descriptors for 2 targets")),
        "{reply:?}"
    );
    assert!(fds.is_empty());
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (reply, _fds) = spawn(&chan, &request("four", vec![3]), &[theirs.as_fd()]);
    assert!(matches!(reply, SpawnReply::Spawned { .. }), "{reply:?}");
    drop((ours, theirs));

    // 4. Closing control's end ends the spawner, with status 0 (and no reply is owed for
    // the Kills above: the next reply read would otherwise be out of step).
    drop(chan);
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawner_pid as i32), None)
        .expect("waitpid the spawner");
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(spawner_pid as i32), 0)
    );
    println!("spawner: 4 checks passed");
}
