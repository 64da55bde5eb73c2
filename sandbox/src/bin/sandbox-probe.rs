//! Test helper: enters a role's sandbox, then performs one named action, so the tests in
//! `sandbox/tests/probe.rs` can check from outside how it ends (exit status or signal).
//!
//! Usage: `sandbox-probe <tester|control|spawner|master> <action> [--run-as UID:GID]
//!         [--data-dir DIR] [--exec PATH] [--log] [--inherited]`
//! With no arguments, they are read (split at spaces) from `SANDBOX_PROBE`: the
//! spawner starts its program without arguments, as it starts `owampd-tester`.
//!
//! Exit 0: the action behaved as expected for an allowed action (or an expected errno for
//! Landlock denials); 1: unexpected outcome; 2: usage; 3: `enter` failed. Forbidden
//! syscalls never return: the process dies by SIGSYS.
//!
//! Everything a tester would inherit (UDP sockets, the data file, a handle on
//! /proc/self/status) is set up *before* `enter`, and kept below `keep_fds`. With
//! `--inherited` it comes from the parent instead, as a tester's does: fd 3 a stream on
//! which the outcome is reported (`ok`, or the error), fd 4 and fd 6 UDP sockets, fd 5
//! the data file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use sandbox::{Role, RunAs, SandboxOptions, SeccompMode};

struct Args {
    role: Role,
    action: String,
    run_as: Option<RunAs>,
    data_dir: Option<PathBuf>,
    exec: Vec<PathBuf>,
    log: bool,
    inherited: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        argv = std::env::var("SANDBOX_PROBE")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
    }
    let mut it = argv.into_iter();
    let role = match it.next().as_deref() {
        Some("tester") => Role::Tester,
        Some("control") => Role::Control,
        Some("spawner") => Role::Spawner,
        Some("master") => Role::Master,
        other => return Err(format!("bad role {other:?}")),
    };
    let action = it.next().ok_or("missing action")?;
    let mut args = Args {
        role,
        action,
        run_as: None,
        data_dir: None,
        exec: Vec::new(),
        log: false,
        inherited: false,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--run-as" => {
                let v = it.next().ok_or("--run-as needs UID:GID")?;
                let (u, g) = v.split_once(':').ok_or("--run-as needs UID:GID")?;
                args.run_as = Some(RunAs {
                    uid: u.parse().map_err(|e| format!("uid: {e}"))?,
                    gid: g.parse().map_err(|e| format!("gid: {e}"))?,
                });
            }
            "--data-dir" => args.data_dir = Some(it.next().ok_or("--data-dir needs DIR")?.into()),
            "--exec" => args.exec.push(it.next().ok_or("--exec needs PATH")?.into()),
            "--log" => args.log = true,
            "--inherited" => args.inherited = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

/// What the sandboxed code gets to use, opened before `enter`.
struct Inherited {
    udp_a: UdpSocket,
    udp_b: UdpSocket,
    /// Bound to [::1] when the host has IPv6 loopback.
    udp_v6: Option<UdpSocket>,
    data: std::fs::File,
    /// None when Landlock (inherited from a spawner) hides /proc.
    status: Option<std::fs::File>,
    /// With `--inherited`: where the outcome is reported.
    report: Option<std::os::unix::net::UnixStream>,
}

/// Takes the descriptors a parent placed (see the module comment).
fn take_inherited() -> Result<Inherited, String> {
    use std::os::fd::FromRawFd;
    for fd in 3..=6 {
        // SAFETY: F_GETFD only reads the descriptor flags of `fd`, if it is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!("--inherited: fd {fd} is not open"));
        }
    }
    // SAFETY: fds 3..=6 are open (checked) and were placed for this process alone by
    // its parent, per the layout above; each is taken once.
    unsafe {
        Ok(Inherited {
            report: Some(std::os::unix::net::UnixStream::from_raw_fd(3)),
            udp_a: UdpSocket::from_raw_fd(4),
            data: std::fs::File::from_raw_fd(5),
            udp_b: UdpSocket::from_raw_fd(6),
            udp_v6: None,
            status: None,
        })
    }
}

fn prepare(args: &Args) -> Result<Inherited, String> {
    if args.inherited {
        return take_inherited();
    }
    let udp_a = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp: {e}"))?;
    let udp_b = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("udp: {e}"))?;
    // In the data dir when there is one (a tester started by a control probe can only
    // create files there); a missing one is left for `enter` to refuse.
    let udp_v6 = UdpSocket::bind("[::1]:0").ok();
    let dir = match &args.data_dir {
        Some(d) if d.is_dir() => d.clone(),
        _ => std::env::temp_dir(),
    };
    let path = dir.join(format!("probe-{}.dat", std::process::id()));
    let data = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // The name is not needed any more; the open fd is what a tester gets.
    let _ = std::fs::remove_file(&path);
    let status = std::fs::File::open("/proc/self/status").ok();
    Ok(Inherited {
        udp_a,
        udp_b,
        udp_v6,
        data,
        status,
        report: None,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sandbox-probe: {e}");
            return ExitCode::from(2);
        }
    };
    let inh = match prepare(&args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("sandbox-probe: prepare: {e}");
            return ExitCode::from(2);
        }
    };
    let keep = [
        inh.report.as_ref().map_or(2, |r| r.as_raw_fd()),
        inh.udp_a.as_raw_fd(),
        inh.udp_b.as_raw_fd(),
        inh.data.as_raw_fd(),
    ]
    .into_iter()
    .chain(inh.status.as_ref().map(|f| f.as_raw_fd()))
    .chain(inh.udp_v6.as_ref().map(|s| s.as_raw_fd()))
    .max()
    .unwrap_or(2);
    // A stray descriptor above keep_fds, as a careless parent would leak: enter must
    // close it (action "fds-closed" checks).
    let stray = match std::fs::File::open("/dev/null") {
        // F_DUPFD puts the copy at keep+10 or above, whatever gaps lie below keep.
        // SAFETY: F_DUPFD only creates a new descriptor; `f` stays valid and is dropped.
        Ok(f) => unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD, keep + 10) },
        Err(_) => -1,
    };
    let opts = SandboxOptions {
        run_as: args.run_as,
        data_dir: args.data_dir.clone(),
        exec_paths: args.exec.clone(),
        keep_fds: keep,
        max_file_size: Some(1 << 20),
        seccomp: if args.log {
            SeccompMode::Log
        } else {
            SeccompMode::Enforce
        },
    };
    // "threaded": a second thread is alive when enter runs, which it must refuse.
    let _sleeper = (args.action == "threaded")
        .then(|| std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(5))));
    if let Err(e) = sandbox::enter(args.role, &opts) {
        eprintln!("sandbox-probe: enter: {e}");
        return ExitCode::from(3);
    }
    let mut inh = inh;
    let mut report = inh.report.take();
    let outcome = act(&args, inh, stray);
    if let Some(r) = report.as_mut() {
        let line = match &outcome {
            Ok(()) => "ok\n".to_owned(),
            Err(e) => format!("{}: {e}\n", args.action),
        };
        let _ = r.write_all(line.as_bytes());
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox-probe: {}: {e}", args.action);
            ExitCode::from(1)
        }
    }
}

/// Ok when the action behaved as an allowed one should (or, for Landlock denials, was
/// refused with EACCES).
fn act(args: &Args, mut inh: Inherited, stray: i32) -> Result<(), String> {
    match args.action.as_str() {
        // --- must live ---
        "nothing" => Ok(()),
        "fds-closed" => {
            if stray <= 2 {
                return Err(format!("no stray fd was opened ({stray})"));
            }
            // SAFETY: F_GETFD only reads the descriptor flags of `stray`, if it exists.
            let rc = unsafe { libc::fcntl(stray, libc::F_GETFD) };
            let errno = std::io::Error::last_os_error().raw_os_error();
            (rc == -1 && errno == Some(libc::EBADF))
                .then_some(())
                .ok_or_else(|| format!("fd {stray} still open (rc {rc})"))
        }
        "udp" => {
            let to = inh.udp_b.local_addr().map_err(|e| e.to_string())?;
            inh.udp_a
                .send_to(b"owamp", to)
                .map_err(|e| format!("send: {e}"))?;
            let mut buf = [0u8; 16];
            let (n, _) = inh
                .udp_b
                .recv_from(&mut buf)
                .map_err(|e| format!("recv: {e}"))?;
            (buf.get(..n) == Some(b"owamp".as_slice()))
                .then_some(())
                .ok_or_else(|| "wrong datagram".to_owned())
        }
        "sockopts" => {
            // What owamp::engine::UdpTestSocket::new does to fd 4, IPv4 then IPv6.
            test_socket_options(&inh.udp_a, false)?;
            if let Some(v6) = &inh.udp_v6 {
                test_socket_options(v6, true)?;
            }
            Ok(())
        }
        "write-file" => {
            inh.data
                .write_all(&[0x5a; 25])
                .map_err(|e| format!("write: {e}"))?;
            inh.data.sync_all().map_err(|e| format!("fsync: {e}"))?;
            let len = inh.data.metadata().map_err(|e| format!("stat: {e}"))?.len();
            (len == 25)
                .then_some(())
                .ok_or_else(|| format!("len {len}"))
        }
        "write-too-big" => {
            // RLIMIT_FSIZE is 1 MiB in the probe: writing past it must fail with EFBIG
            // (SIGXFSZ is ignored first so the write returns the error).
            // SAFETY: setting a signal to SIG_IGN installs no handler code.
            unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
            let big = vec![0u8; 2 << 20];
            match inh.data.write_all(&big) {
                Err(e) if e.raw_os_error() == Some(libc::EFBIG) => Ok(()),
                other => Err(format!("expected EFBIG, got {other:?}")),
            }
        }
        "clock" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?;
            std::thread::sleep(std::time::Duration::from_millis(1));
            let _ = sandbox::kernel_clock();
            (now.as_secs() > 0)
                .then_some(())
                .ok_or_else(|| "clock at 0".to_owned())
        }
        "alloc" => {
            let mut v = vec![0u8; 10 << 20];
            for (i, b) in v.iter_mut().enumerate().step_by(4096) {
                *b = (i % 251) as u8;
            }
            let sum: u64 = v.iter().map(|&b| u64::from(b)).sum();
            std::hint::black_box(sum);
            Ok(())
        }
        "sleep" => {
            // Something for a control probe to stop with SIGKILL.
            std::thread::sleep(std::time::Duration::from_secs(30));
            Ok(())
        }
        "name" => sandbox::set_process_name("owampd-tester").map_err(|e| e.to_string()),
        "status" => {
            // /proc/<pid>/status is regenerated on every read from offset 0.
            let status = inh.status.as_mut().ok_or("/proc/self/status not open")?;
            status.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            let mut s = String::new();
            status.read_to_string(&mut s).map_err(|e| e.to_string())?;
            print!("{s}");
            Ok(())
        }
        "panic" => panic!("probe panics on purpose"),
        // --- must die by SIGSYS (tester) ---
        "open" => {
            let r = std::fs::File::open("/etc/hostname");
            Err(format!("open returned {r:?}"))
        }
        "stat-path" => {
            // statx/newfstatat are allowed on the tester's own fds only, never on a path.
            let r = std::fs::metadata("/etc/passwd");
            Err(format!("stat returned {r:?}"))
        }
        "socket" => {
            let r = UdpSocket::bind("127.0.0.1:0");
            Err(format!("socket returned {r:?}"))
        }
        "socket-netlink" => {
            // SAFETY: socket(2) takes integers only.
            let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) };
            Err(format!("netlink socket returned {fd}"))
        }
        "connect" => {
            let r = inh.udp_a.connect("127.0.0.1:9");
            Err(format!("connect returned {r:?}"))
        }
        "execve" => {
            let prog = c"/bin/true";
            let r = nix::unistd::execv(prog, &[prog]);
            Err(format!("execve returned {r:?}"))
        }
        "fork" => {
            // SAFETY: the probe is single-threaded; the child (if any) exits at once.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: _exit is async-signal-safe and ends the child immediately.
                unsafe { libc::_exit(0) };
            }
            Err(format!("fork returned {pid}"))
        }
        "mmap-exec" => {
            // SAFETY: an anonymous private mapping touches no existing memory; it is
            // never used, and the filter should kill us before it exists.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            Err(format!("mmap PROT_EXEC returned {p:?}"))
        }
        "unshare" => {
            // Denied by the master's deny-list (and absent from the allow-lists).
            // SAFETY: unshare(2) takes flags only.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWUTS) };
            Err(format!("unshare returned {rc}"))
        }
        // --- control: Landlock ---
        "data-dir-rw" => {
            let dir = args.data_dir.clone().ok_or("needs --data-dir")?;
            let sub = dir.join("hierarchy").join("regular");
            std::fs::create_dir_all(&sub).map_err(|e| format!("mkdir: {e}"))?;
            let f = sub.join("0000.owp");
            std::fs::write(&f, b"OwA\0").map_err(|e| format!("write: {e}"))?;
            let back = std::fs::read(&f).map_err(|e| format!("read: {e}"))?;
            std::fs::rename(&f, sub.join("0001.owp")).map_err(|e| format!("rename: {e}"))?;
            std::fs::remove_file(sub.join("0001.owp")).map_err(|e| format!("unlink: {e}"))?;
            (back == b"OwA\0")
                .then_some(())
                .ok_or_else(|| "read back differs".to_owned())
        }
        "open-passwd" => expect_eacces(std::fs::File::open("/etc/passwd").map(drop)),
        "exec-denied" => {
            // Landlock (the spawner's): /bin/true is not the tester.
            let prog = c"/bin/true";
            match nix::unistd::execv(prog, &[prog]) {
                Err(nix::errno::Errno::EACCES) => Ok(()),
                other => Err(format!("expected EACCES, got {other:?}")),
            }
        }
        other => Err(format!("unknown action {other}")),
    }
}

/// The socket options of the test engine, read back where the kernel reports them as set.
fn test_socket_options(sock: &UdpSocket, v6: bool) -> Result<(), String> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    fn e(what: &'static str) -> impl Fn(nix::Error) -> String {
        move |err| format!("{what}: {err}")
    }
    setsockopt(sock, sockopt::SndBuf, &65536).map_err(e("SO_SNDBUF"))?;
    setsockopt(sock, sockopt::RcvBuf, &65536).map_err(e("SO_RCVBUF"))?;
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).map_err(e("SO_TIMESTAMPNS"))?;
    if v6 {
        setsockopt(sock, sockopt::Ipv6Ttl, &255).map_err(e("IPV6_UNICAST_HOPS"))?;
        setsockopt(sock, sockopt::Ipv6RecvHopLimit, &true).map_err(e("IPV6_RECVHOPLIMIT"))?;
        setsockopt(sock, sockopt::Ipv6TClass, &(46 << 2)).map_err(e("IPV6_TCLASS"))?;
    } else {
        setsockopt(sock, sockopt::Ipv4Ttl, &255).map_err(e("IP_TTL"))?;
        setsockopt(sock, sockopt::Ipv4RecvTtl, &true).map_err(e("IP_RECVTTL"))?;
        setsockopt(sock, sockopt::Ipv4Tos, &(46 << 2)).map_err(e("IP_TOS"))?;
        let ttl = getsockopt(sock, sockopt::Ipv4Ttl).map_err(e("IP_TTL get"))?;
        if ttl != 255 {
            return Err(format!("ttl {ttl}"));
        }
    }
    let ts = getsockopt(sock, sockopt::ReceiveTimestampns).map_err(e("SO_TIMESTAMPNS get"))?;
    if !ts {
        return Err("SO_TIMESTAMPNS not set".into());
    }
    sock.set_nonblocking(true)
        .map_err(|err| format!("set_nonblocking: {err}"))
}

fn expect_eacces(r: std::io::Result<()>) -> Result<(), String> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(()),
        other => Err(format!("expected EACCES, got {other:?}")),
    }
}
