//! Control's allow-list. Control is one tokio current_thread process (epoll, with a
//! blocking pool for the data store) that receives client connections over SCM_RIGHTS
//! (so no accept/listen/connect), owns the data store (Landlock confines the paths) and
//! asks its spawner, forked before this filter was loaded, to start testers. So control
//! itself never execs and never forks: it creates threads only, and its filter is not
//! inherited by any tester.

use super::rules::{Cond, Policy, PolicyError, all_of, c, eq, none_of};
use super::tester::TEST_SOCKOPTS;

/// Socket options control sets besides the test-socket ones: on the passed TCP control
/// connections and its own sockets.
const CONTROL_SOCKOPTS: &[(libc::c_int, libc::c_int)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR), // test port allocation
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE), // control connections
    (libc::SOL_SOCKET, libc::SO_LINGER),    // close of a refused connection
    (libc::IPPROTO_TCP, libc::TCP_NODELAY), // small control messages
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), // IPv6 test sockets
];

/// Read-only socket options: tokio/std querying socket state.
const CONTROL_GETSOCKOPTS: &[(libc::c_int, libc::c_int)] = &[
    (libc::SOL_SOCKET, libc::SO_ERROR),
    (libc::SOL_SOCKET, libc::SO_TYPE),
    (libc::SOL_SOCKET, libc::SO_DOMAIN),
];

/// The control policy.
pub fn policy() -> Result<Policy, PolicyError> {
    let mut p = Policy::default();
    // No executable memory at all (no JIT, no shellcode staging, no library loading).
    let no_exec = none_of(2, c(libc::PROT_EXEC));

    // Plain I/O on fds it holds: connections, IPC, data files (tokio, std, ipc, owp).
    p.allow(libc::SYS_read);
    p.allow(libc::SYS_write);
    p.allow(libc::SYS_readv);
    p.allow(libc::SYS_writev);
    p.allow(libc::SYS_pread64); // owp header reads (Fetch-Session), ld.so
    p.allow(libc::SYS_pwrite64); // finalising an incomplete file
    p.allow(libc::SYS_lseek);
    p.allow(libc::SYS_fsync);
    p.allow(libc::SYS_fdatasync);
    p.allow(libc::SYS_ftruncate);
    p.allow(libc::SYS_fstat);
    p.allow(libc::SYS_close);
    p.allow(libc::SYS_flock); // owp file lock
    p.allow(libc::SYS_fcntl); // tokio/std fd flags, File::try_clone (F_DUPFD_CLOEXEC)
    // ioctl: FIONBIO (std set_nonblocking), FIOCLEX/FIONCLEX (fd flags), nothing else.
    p.allow_if(
        libc::SYS_ioctl,
        &[
            &[eq(1, u64::from(libc::FIONBIO as u32))],
            &[eq(1, u64::from(libc::FIOCLEX as u32))],
            &[eq(1, u64::from(libc::FIONCLEX as u32))],
        ],
    )?;

    // Files: the data store (hierarchy/), paths confined by Landlock.
    p.allow(libc::SYS_openat);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_open);
    p.allow(libc::SYS_mkdirat); // std::fs::create_dir_all
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_mkdir);
    p.allow(libc::SYS_unlinkat); // remove_file/remove_dir (emptying catalog/ at start)
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_unlink);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_rmdir);
    p.allow(libc::SYS_renameat); // atomic finalisation of .owp files
    p.allow(libc::SYS_renameat2);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_rename);
    p.allow(libc::SYS_linkat);
    p.allow(libc::SYS_getdents64); // read_dir
    p.allow(libc::SYS_newfstatat); // metadata / symlink_metadata
    p.allow(libc::SYS_statx); // std metadata
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_stat);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_lstat);
    p.allow(libc::SYS_getcwd); // std::env::current_dir in error messages

    // Sockets: test sockets (UDP), IPC socketpairs; connections arrive over SCM_RIGHTS.
    p.allow_if(
        libc::SYS_socket,
        &[
            &[eq(0, c(libc::AF_INET))],
            &[eq(0, c(libc::AF_INET6))],
            &[eq(0, c(libc::AF_UNIX))],
        ],
    )?;
    p.allow_if(libc::SYS_socketpair, &[&[eq(0, c(libc::AF_UNIX))]])?; // ipc::channel
    p.allow(libc::SYS_bind); // test ports
    p.allow(libc::SYS_getsockname);
    p.allow(libc::SYS_getpeername); // peer address of a passed connection
    p.allow(libc::SYS_shutdown);
    p.allow(libc::SYS_sendto);
    p.allow(libc::SYS_sendmsg); // ipc (SCM_RIGHTS)
    p.allow(libc::SYS_recvfrom); // also the peek for a message's length (ipc::channel)
    p.allow(libc::SYS_recvmsg); // ipc (SCM_RIGHTS)
    let mut set: Vec<[Cond; 2]> = TEST_SOCKOPTS
        .iter()
        .chain(CONTROL_SOCKOPTS)
        .map(|&(level, name)| [eq(1, c(level)), eq(2, c(name))])
        .collect();
    let alts: Vec<&[Cond]> = set.iter().map(|a| a.as_slice()).collect();
    p.allow_if(libc::SYS_setsockopt, &alts)?;
    set.extend(
        CONTROL_GETSOCKOPTS
            .iter()
            .map(|&(level, name)| [eq(1, c(level)), eq(2, c(name))]),
    );
    let alts: Vec<&[Cond]> = set.iter().map(|a| a.as_slice()).collect();
    p.allow_if(libc::SYS_getsockopt, &alts)?;

    // tokio's current_thread runtime (mio on epoll).
    p.allow(libc::SYS_epoll_create1);
    p.allow(libc::SYS_epoll_ctl);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_epoll_wait);
    p.allow(libc::SYS_epoll_pwait);
    p.allow(libc::SYS_epoll_pwait2);
    p.allow(libc::SYS_eventfd2); // mio waker
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_poll);
    p.allow(libc::SYS_ppoll);
    p.allow(libc::SYS_restart_syscall);

    // Threads for tokio's blocking pool: clone only with CLONE_THREAD (clone3's flags are
    // in a struct BPF cannot read; without execve a copy of control could run nothing
    // new). No execve, no wait: testers are the spawner's children.
    p.allow_if(libc::SYS_clone, &[&[all_of(0, c(libc::CLONE_THREAD))]])?;
    p.allow(libc::SYS_clone3);
    // Killing a tester that does not stop: SIGKILL through the pidfd the spawner gave.
    p.allow_if(libc::SYS_pidfd_send_signal, &[&[eq(1, c(libc::SIGKILL))]])?;
    // glibc abort() after a panic: SIGABRT to itself.
    p.allow_if(libc::SYS_tgkill, &[&[eq(2, c(libc::SIGABRT))]])?;

    // Time.
    p.allow(libc::SYS_clock_gettime);
    p.allow(libc::SYS_clock_getres);
    p.allow(libc::SYS_gettimeofday);
    p.allow(libc::SYS_clock_nanosleep);
    p.allow(libc::SYS_nanosleep);
    p.allow(libc::SYS_adjtimex); // kernel_clock (modes=0; setting needs CAP_SYS_TIME)
    // glibc implements adjtimex() as clock_adjtime(CLOCK_REALTIME, ...).
    p.allow_if(
        libc::SYS_clock_adjtime,
        &[&[eq(0, c(libc::CLOCK_REALTIME))]],
    )?;
    p.allow(libc::SYS_getrandom); // SIDs, challenges, salts (owamp::crypto)

    // Memory.
    p.allow_if(libc::SYS_mmap, &[std::slice::from_ref(&no_exec)])?;
    p.allow_if(libc::SYS_mprotect, &[&[no_exec]])?;
    p.allow(libc::SYS_munmap);
    p.allow(libc::SYS_mremap);
    p.allow(libc::SYS_brk);
    p.allow(libc::SYS_madvise);

    // Signals.
    p.allow(libc::SYS_rt_sigaction);
    p.allow(libc::SYS_rt_sigprocmask);
    p.allow(libc::SYS_rt_sigreturn);
    p.allow(libc::SYS_sigaltstack);

    // Process and thread bits (std, tokio, glibc thread start).
    p.allow(libc::SYS_exit);
    p.allow(libc::SYS_exit_group);
    p.allow(libc::SYS_getpid);
    p.allow(libc::SYS_getppid);
    p.allow(libc::SYS_gettid);
    p.allow(libc::SYS_futex);
    p.allow(libc::SYS_sched_yield);
    p.allow(libc::SYS_sched_getaffinity); // std::thread::available_parallelism (tokio)
    p.allow(libc::SYS_set_robust_list); // glibc thread start
    p.allow(libc::SYS_rseq); // glibc thread start
    // getrlimit (prlimit64) on itself only: glibc reads the stack limit for new threads.
    p.allow_if(libc::SYS_prlimit64, &[&[eq(0, 0)]])?;
    // Its own seccomp check right after loading this filter; thread names.
    p.allow_if(
        libc::SYS_prctl,
        &[
            &[eq(0, c(libc::PR_SET_NAME))],
            &[eq(0, c(libc::PR_GET_NAME))],
            &[eq(0, c(libc::PR_GET_SECCOMP))],
        ],
    )?;
    p.finish()
}
