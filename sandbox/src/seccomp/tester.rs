//! The tester's allow-list (no open, socket, bind, exec, fork; connect only on its test
//! socket). It only works on the descriptors control handed it: fd 3 IPC, fd 4 the bound
//! UDP test socket, fd 5 the session data file (receiver). It is single-threaded: no clone.

use super::rules::{Policy, PolicyError, all_of, c, eq, le, none_of};

/// Socket options the test engine sets or reads on fd 4 (owamp::engine::UdpTestSocket):
/// kernel receive timestamps, TTL/hop limit reception and sending, DSCP, buffer sizes.
pub(super) const TEST_SOCKOPTS: &[(libc::c_int, libc::c_int)] = &[
    (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS),
    (libc::SOL_SOCKET, libc::SO_SNDBUF),
    (libc::SOL_SOCKET, libc::SO_RCVBUF),
    (libc::IPPROTO_IP, libc::IP_RECVTTL),
    (libc::IPPROTO_IP, libc::IP_TTL),
    (libc::IPPROTO_IP, libc::IP_TOS),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT),
    (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS),
];

/// The tester's UDP test socket (`ipc::fds::TEST_SOCKET_FD`; this crate does not link
/// `ipc`). The only descriptor the tester may `connect`.
pub(super) const TEST_SOCKET_FD: u64 = 4;

/// The highest fd number the tester uses; `*at` calls must name one of its fds, never
/// AT_FDCWD (which is -100, i.e. huge as an unsigned int).
const MAX_FD: u64 = 1023;

/// The tester policy.
pub fn policy() -> Result<Policy, PolicyError> {
    let mut p = Policy::default();
    let no_exec = none_of(2, c(libc::PROT_EXEC));

    // I/O on inherited fds: IPC framing and records (engine, owp::Writer, ipc).
    p.allow(libc::SYS_read);
    p.allow(libc::SYS_write);
    p.allow(libc::SYS_readv);
    p.allow(libc::SYS_writev);
    p.allow(libc::SYS_pread64); // owp header re-read
    p.allow(libc::SYS_pwrite64); // owp header rewrite at Stop
    p.allow(libc::SYS_lseek); // std::fs::File seek
    p.allow(libc::SYS_fsync); // Stop: header + records durable
    p.allow(libc::SYS_fdatasync); // periodic flush
    p.allow(libc::SYS_ftruncate); // drop a partial trailing record
    p.allow(libc::SYS_fstat); // std File::metadata fallback
    p.allow(libc::SYS_close); // std drop
    p.allow(libc::SYS_flock); // owp file lock shared with control
    // std File::metadata: statx(fd, "", AT_EMPTY_PATH): only on an fd, never a path.
    p.allow_if(
        libc::SYS_statx,
        &[&[le(0, MAX_FD), all_of(2, c(libc::AT_EMPTY_PATH))]],
    )?;
    p.allow_if(
        libc::SYS_newfstatat,
        &[&[le(0, MAX_FD), all_of(3, c(libc::AT_EMPTY_PATH))]],
    )?;
    // fcntl: std/nix reading and setting fd flags (O_NONBLOCK, FD_CLOEXEC); no F_DUPFD.
    p.allow_if(
        libc::SYS_fcntl,
        &[
            &[eq(1, c(libc::F_GETFD))],
            &[eq(1, c(libc::F_SETFD))],
            &[eq(1, c(libc::F_GETFL))],
            &[eq(1, c(libc::F_SETFL))],
        ],
    )?;

    // UdpTestSocket::new: std set_nonblocking is ioctl(FIONBIO); nothing else.
    p.allow_if(
        libc::SYS_ioctl,
        &[&[eq(1, u64::from(libc::FIONBIO as u32))]],
    )?;

    // The test socket (fd 4) and the IPC socket (fd 3): engine send/receive loops.
    p.allow(libc::SYS_sendto);
    p.allow(libc::SYS_sendmsg);
    p.allow(libc::SYS_recvfrom);
    p.allow(libc::SYS_recvmsg);
    p.allow(libc::SYS_recvmmsg); // owamp::engine::UdpTestSocket::recv_queued (receiver batches)
    p.allow(libc::SYS_getsockname); // UdpSocket::local_addr for the session log line
    // UdpTestSocket::new connects the test socket to the peer (RFC 4656 §3.5 ports), so
    // the kernel drops datagrams from anyone else before they take its buffer. Only fd 4:
    // the IPC socket is already connected and the tester creates no socket, so this lets
    // it reach nothing that `sendto` on fd 4 could not.
    p.allow_if(libc::SYS_connect, &[&[eq(0, TEST_SOCKET_FD)]])?;
    let opts: Vec<[super::rules::Cond; 2]> = TEST_SOCKOPTS
        .iter()
        .map(|&(level, name)| [eq(1, c(level)), eq(2, c(name))])
        .collect();
    let alts: Vec<&[super::rules::Cond]> = opts.iter().map(|a| a.as_slice()).collect();
    p.allow_if(libc::SYS_setsockopt, &alts)?;
    let mut get = opts.clone();
    get.push([eq(1, c(libc::SOL_SOCKET)), eq(2, c(libc::SO_ERROR))]);
    let alts: Vec<&[super::rules::Cond]> = get.iter().map(|a| a.as_slice()).collect();
    p.allow_if(libc::SYS_getsockopt, &alts)?;

    // Waiting: the engine polls fd 3 (and fd 4) with a deadline.
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_poll); // std/nix poll on x86_64
    p.allow(libc::SYS_ppoll); // nix ppoll, and poll on aarch64
    p.allow(libc::SYS_restart_syscall); // an interrupted sleep/poll resumed by the kernel

    // Time: owamp::time::Clock and the send schedule.
    p.allow(libc::SYS_clock_gettime); // vDSO fallback
    p.allow(libc::SYS_clock_getres);
    p.allow(libc::SYS_gettimeofday); // vDSO fallback
    p.allow(libc::SYS_clock_nanosleep); // the sender's wait without a control descriptor
    p.allow(libc::SYS_nanosleep);
    // sandbox::kernel_clock: adjtimex(modes=0). The struct cannot be inspected by BPF, but
    // any mode other than 0 needs CAP_SYS_TIME, which the tester does not have.
    p.allow(libc::SYS_adjtimex);
    // glibc implements adjtimex() as clock_adjtime(CLOCK_REALTIME, ...).
    p.allow_if(
        libc::SYS_clock_adjtime,
        &[&[eq(0, c(libc::CLOCK_REALTIME))]],
    )?;
    p.allow(libc::SYS_getrandom); // std HashMap seeds, padding octets (owamp::packet)

    // Memory: the global allocator. Never executable memory.
    p.allow_if(libc::SYS_mmap, &[std::slice::from_ref(&no_exec)])?;
    p.allow_if(libc::SYS_mprotect, &[&[no_exec]])?;
    p.allow(libc::SYS_munmap);
    p.allow(libc::SYS_mremap);
    p.allow(libc::SYS_brk);
    p.allow(libc::SYS_madvise);

    // Signals: std's runtime, the Stop/TERM handling, and abort() after a panic.
    p.allow(libc::SYS_rt_sigaction);
    p.allow(libc::SYS_rt_sigprocmask);
    p.allow(libc::SYS_rt_sigreturn);
    p.allow(libc::SYS_sigaltstack); // std's stack-overflow handler
    // glibc abort() raises SIGABRT at itself with tgkill: a panic must die by SIGABRT.
    p.allow_if(libc::SYS_tgkill, &[&[eq(2, c(libc::SIGABRT))]])?;

    // Process bits.
    p.allow(libc::SYS_exit);
    p.allow(libc::SYS_exit_group);
    p.allow(libc::SYS_getpid); // log lines, abort()
    p.allow(libc::SYS_gettid); // abort()
    p.allow(libc::SYS_futex); // std Mutex/Once
    p.allow(libc::SYS_sched_yield); // std's spin loops
    p.allow(libc::SYS_getcwd); // std's panic message (shortens the source path)
    // prctl: the process name, our own seccomp check, the timer slack.
    p.allow_if(
        libc::SYS_prctl,
        &[
            &[eq(0, c(libc::PR_SET_NAME))],
            &[eq(0, c(libc::PR_GET_SECCOMP))],
            // The session's timer slack (owamp::engine::timer_slack).
            &[eq(0, c(libc::PR_SET_TIMERSLACK))],
        ],
    )?;
    p.finish()
}
