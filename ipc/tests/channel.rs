//! The channel over a real socketpair: fds, bounds, EOF, garbage.

use std::io::{IoSlice, Read};
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use ipc::master::{ControlToMaster, LogLevel, LogRecord, MasterToControl};
use ipc::{Channel, IpcError};
use nix::sys::socket::{MsgFlags, sendmsg};

fn raw_send(ch: &Channel, bytes: &[u8]) {
    sendmsg::<()>(
        ch.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &[],
        MsgFlags::empty(),
        None,
    )
    .expect("raw sendmsg");
}

#[test]
fn message_round_trip() {
    let (a, b) = Channel::pair().expect("pair");
    let m = ControlToMaster::Log(LogRecord {
        level: LogLevel::Info,
        message: "owampd-control: hello".into(),
    });
    a.send(&m, &[]).expect("send");
    let r = b.recv::<ControlToMaster>().expect("recv");
    assert_eq!(r.msg, m);
    assert!(r.fds.is_empty());
}

#[test]
fn passes_a_udp_socket_that_works_on_the_other_side() {
    let (a, b) = Channel::pair().expect("pair");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    let m = MasterToControl::Connection {
        peer: addr,
        local: addr,
    };
    a.send(&m, &[sock.as_fd()]).expect("send");
    drop(sock); // only the passed copy remains
    let r = b.recv::<MasterToControl>().expect("recv");
    assert_eq!(r.msg, m);
    let mut fds = r.fds;
    assert_eq!(fds.len(), 1);
    let fd: OwnedFd = fds.remove(0);
    let got = UdpSocket::from(fd);
    assert_eq!(got.local_addr().expect("addr"), addr);
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sender.send_to(b"ping", addr).expect("send_to");
    let mut buf = [0u8; 16];
    let (n, _) = got.recv_from(&mut buf).expect("recv_from");
    assert_eq!(buf.get(..n), Some(&b"ping"[..]));
}

#[test]
fn received_fds_are_cloexec() {
    let (a, b) = Channel::pair().expect("pair");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    a.send(&MasterToControl::Shutdown, &[sock.as_fd()])
        .expect("send");
    let r = b.recv::<MasterToControl>().expect("recv");
    let fd = r.fds.first().expect("one fd");
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).expect("getfd");
    assert_ne!(flags & libc::FD_CLOEXEC, 0);
}

#[test]
fn too_many_fds_refused_on_send() {
    let (a, _b) = Channel::pair().expect("pair");
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let fds = vec![s.as_fd(); ipc::channel::MAX_FDS + 1];
    let e = a
        .send(&MasterToControl::Shutdown, &fds)
        .expect_err("refused");
    assert!(matches!(e, IpcError::TooManyFds { .. }), "{e:?}");
}

#[test]
fn extra_fds_from_a_peer_are_dropped() {
    let (a, b) = Channel::pair().expect("pair");
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let raw = vec![s.as_raw_fd(); ipc::channel::MAX_FDS + 3];
    let cm = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
    sendmsg::<()>(
        a.as_raw_fd(),
        &[IoSlice::new(&[0x03])],
        &cm,
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
    let r = b.recv::<MasterToControl>().expect("recv");
    assert_eq!(r.msg, MasterToControl::Shutdown);
    assert_eq!(r.fds.len(), ipc::channel::MAX_FDS);
}

#[test]
fn oversized_message_refused_on_send() {
    let (a, _b) = Channel::pair().expect("pair");
    let m = ControlToMaster::Log(LogRecord {
        level: LogLevel::Info,
        message: "x".repeat(ipc::channel::MAX_MESSAGE),
    });
    let e = a.send(&m, &[]).expect_err("refused");
    assert!(matches!(e, IpcError::TooLarge { .. }), "{e:?}");
}

#[test]
fn oversized_message_refused_on_receive() {
    let (a, b) = Channel::pair().expect("pair");
    raw_send(&a, &vec![0u8; ipc::channel::MAX_MESSAGE + 100]);
    let e = b.recv::<ControlToMaster>().expect_err("refused");
    assert!(matches!(e, IpcError::Truncated { .. }), "{e:?}");
    // The channel is still usable afterwards.
    a.send(&ControlToMaster::Ready, &[]).expect("send");
    assert_eq!(
        b.recv::<ControlToMaster>().expect("recv").msg,
        ControlToMaster::Ready
    );
}

#[test]
fn garbage_is_an_error() {
    let (a, b) = Channel::pair().expect("pair");
    raw_send(&a, &[0xff, 0xff, 0xff, 0xff, 0xff]);
    let e = b.recv::<MasterToControl>().expect_err("garbage");
    assert!(matches!(e, IpcError::Decode { len: 5, .. }), "{e:?}");
}

#[test]
fn eof_is_closed() {
    let (a, b) = Channel::pair().expect("pair");
    a.send(&ControlToMaster::Ready, &[]).expect("send");
    drop(a);
    assert_eq!(
        b.recv::<ControlToMaster>()
            .expect("queued message first")
            .msg,
        ControlToMaster::Ready
    );
    let e = b.recv::<ControlToMaster>().expect_err("eof");
    assert!(matches!(e, IpcError::Closed), "{e:?}");
    let e = b
        .send(&MasterToControl::Shutdown, &[])
        .expect_err("peer gone");
    assert!(matches!(e, IpcError::Closed), "{e:?}");
}

/// A peer that exits with a message of ours still unread makes the kernel flag our end
/// with ECONNRESET (unix_release_sock), and the next receive reports that error before
/// the messages the peer queued for us. Those messages (a tester's final report, sent
/// just before it exits while control's Stop is still in its queue) must still arrive.
#[test]
fn messages_queued_before_a_reset_are_still_received() {
    for nonblocking in [false, true] {
        let (a, b) = Channel::pair().expect("pair");
        a.set_nonblocking(nonblocking).expect("mode");
        // Our message stays unread in b's queue when b goes away.
        a.send(&MasterToControl::Shutdown, &[]).expect("send to b");
        b.send(&ControlToMaster::Ready, &[]).expect("send to a");
        b.send(&ControlToMaster::ConnectionDone, &[])
            .expect("send to a");
        drop(b);
        let first = if nonblocking {
            a.try_recv::<ControlToMaster>()
                .expect("first")
                .expect("queued")
        } else {
            a.recv::<ControlToMaster>().expect("first")
        };
        assert_eq!(first.msg, ControlToMaster::Ready);
        let second = a.recv::<ControlToMaster>().expect("second");
        assert_eq!(second.msg, ControlToMaster::ConnectionDone);
        let e = a.recv::<ControlToMaster>().expect_err("then the end");
        assert!(matches!(e, IpcError::Closed), "{e:?}");
    }
}

#[test]
fn try_recv_and_nonblocking() {
    let (a, b) = Channel::pair().expect("pair");
    assert!(b.try_recv::<ControlToMaster>().expect("try").is_none());
    b.set_nonblocking(true).expect("nonblock");
    let e = b.recv::<ControlToMaster>().expect_err("would block");
    assert!(
        matches!(
            e,
            IpcError::Sys {
                source: nix::errno::Errno::EAGAIN,
                ..
            }
        ),
        "{e:?}"
    );
    a.send(&ControlToMaster::ConnectionDone, &[]).expect("send");
    let r = b.try_recv::<ControlToMaster>().expect("try").expect("one");
    assert_eq!(r.msg, ControlToMaster::ConnectionDone);
}

#[test]
fn take_inherited_missing_fd() {
    let e = ipc::fds::take_inherited(999).expect_err("not open");
    assert!(matches!(e, IpcError::MissingFd { fd: 999 }), "{e:?}");
    assert_eq!(
        ipc::fds::started_by_hand_line("owampd-tester", "owampd-control", ipc::fds::IPC_FD),
        "owampd-tester: must be started by owampd-control (fd 3 missing)"
    );
}

/// An OwnedFd for a copy of `fd` at the lowest free number ≥ `at`.
fn dup_at(fd: &std::os::fd::OwnedFd, at: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let n =
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(at)).expect("F_DUPFD_CLOEXEC");
    // SAFETY: fcntl just returned `n`, a new descriptor nothing else owns.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(n) }
}

/// Fds are placed even when a source sits on another's target (a swap); the environment
/// is cleared, argv[0] set, and the exit code comes back through wait.
#[test]
fn spawn_places_swapped_fds() {
    use std::ffi::OsString;
    let (ra, wa) = nix::unistd::pipe().expect("pipe");
    let (rb, wb) = nix::unistd::pipe().expect("pipe");
    // Each goes to the other's number: wa's copy to y, wb's copy to x.
    let wax = dup_at(&wa, 40);
    let wby = dup_at(&wb, 41);
    let (x, y) = (wax.as_raw_fd(), wby.as_raw_fd());
    drop((wa, wb));
    let script = format!("echo \"$0 ${{HOME:-nohome}} $FOO\" >&{y}; echo forty >&{x}; exit 7");
    let mut child = ipc::spawn::spawn_child(
        // bash: dash takes only one-digit descriptors in redirections.
        std::path::Path::new("/bin/bash"),
        "owampd-test-child",
        &[OsString::from("-c"), OsString::from(script)],
        &[(OsString::from("FOO"), OsString::from("bar"))],
        vec![(wax, y), (wby, x)],
    )
    .expect("spawn");
    assert_eq!(child.wait().expect("wait").code(), Some(7));
    // Reaped: kill is a no-op, not a signal to a reused pid.
    child.kill().expect("kill after reap");
    let mut a = String::new();
    std::fs::File::from(ra)
        .read_to_string(&mut a)
        .expect("read a");
    let mut b = String::new();
    std::fs::File::from(rb)
        .read_to_string(&mut b)
        .expect("read b");
    assert_eq!(a, "owampd-test-child nohome bar\n");
    assert_eq!(b, "forty\n");
}

#[test]
fn spawn_of_a_missing_program_fails() {
    let e = ipc::spawn::spawn_child(
        std::path::Path::new("/nonexistent/owampd-tester"),
        "x",
        &[],
        &[],
        vec![],
    )
    .expect_err("no such program");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}
