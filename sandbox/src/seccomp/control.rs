//! Control's allow-list. Control is one tokio current_thread process (epoll) that receives
//! client connections over SCM_RIGHTS (so no accept/listen/connect), owns the data store
//! (Landlock confines the paths) and starts testers with posix_spawn(3)
//! (`ipc::spawn::spawn_child_vfork`).
//!
//! Filters are inherited, so this list must also cover the tester from its execve to
//! its own filter: dynamic loading, Rust start-up, and `sandbox::enter(Tester)`.

use super::rules::{Cond, Policy, PolicyError, c, eq, none_of};
use super::tester::{TEST_SOCKOPTS, allow_send_timer};

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
    // No anonymous executable memory (no JIT, no shellcode staging). File-backed
    // executable mappings stay allowed: the exec'd tester's loader maps libc that way,
    // and Landlock limits executable files to the tester and the libraries.
    let no_exec = none_of(2, c(libc::PROT_EXEC));
    let file_backed = none_of(3, c(libc::MAP_ANONYMOUS));

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
    p.allow(libc::SYS_close_range); // Command spawn; the tester's first sandbox step
    p.allow(libc::SYS_flock); // owp file lock
    p.allow(libc::SYS_fcntl); // tokio/std fd flags, F_DUPFD_CLOEXEC for Command
    p.allow(libc::SYS_dup); // Command stdio setup
    p.allow(libc::SYS_dup3); // child: move fds 3/4/5 into place
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_dup2);
    p.allow(libc::SYS_pipe2); // Command's exec-error pipe
    // ioctl: FIONBIO (std set_nonblocking), FIOCLEX/FIONCLEX (fd flags), nothing else.
    p.allow_if(
        libc::SYS_ioctl,
        &[
            &[eq(1, u64::from(libc::FIONBIO as u32))],
            &[eq(1, u64::from(libc::FIOCLEX as u32))],
            &[eq(1, u64::from(libc::FIONCLEX as u32))],
        ],
    )?;

    // Files: the data store (hierarchy/catalog), paths confined by Landlock.
    p.allow(libc::SYS_openat);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_open);
    p.allow(libc::SYS_mkdirat); // std::fs::create_dir_all
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_mkdir);
    p.allow(libc::SYS_unlinkat); // remove_file/remove_dir (catalog rebuild)
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_unlink);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_rmdir);
    p.allow(libc::SYS_renameat); // atomic finalisation of .owp files
    p.allow(libc::SYS_renameat2);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_rename);
    p.allow(libc::SYS_symlinkat); // catalog links
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_symlink);
    p.allow(libc::SYS_linkat);
    p.allow(libc::SYS_readlinkat); // catalog rebuild
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_readlink);
    p.allow(libc::SYS_getdents64); // read_dir
    p.allow(libc::SYS_newfstatat); // metadata / symlink_metadata
    p.allow(libc::SYS_statx); // std metadata
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_stat);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_lstat);
    p.allow(libc::SYS_faccessat); // ld.so, Command's PATH checks
    p.allow(libc::SYS_faccessat2);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_access); // ld.so: /etc/ld.so.preload
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
    p.allow(libc::SYS_recvfrom);
    p.allow(libc::SYS_recvmsg); // ipc (SCM_RIGHTS)
    // Not control's own: the filter is inherited by the tester, whose receiver reads its
    // batches with it (owamp::engine::UdpTestSocket::recv_queued).
    p.allow(libc::SYS_recvmmsg);
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
    p.allow(libc::SYS_poll); // std start-up of the tester; tester engine
    p.allow(libc::SYS_ppoll);
    p.allow(libc::SYS_restart_syscall);

    // Spawning testers: glibc's posix_spawn (clone3/clone with CLONE_VM|CLONE_VFORK),
    // execve limited by Landlock to the tester, and reaping (wait4 from waitpid).
    p.allow(libc::SYS_clone);
    p.allow(libc::SYS_clone3);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_vfork);
    p.allow(libc::SYS_execve);
    p.allow(libc::SYS_execveat);
    p.allow(libc::SYS_wait4);
    p.allow(libc::SYS_waitid);
    // Stopping a tester: TERM, then KILL; 0 probes whether it is alive.
    p.allow_if(
        libc::SYS_kill,
        &[
            &[eq(1, c(libc::SIGTERM))],
            &[eq(1, c(libc::SIGKILL))],
            &[eq(1, 0)],
        ],
    )?;
    // glibc abort() after a panic: SIGABRT to itself.
    p.allow_if(libc::SYS_tgkill, &[&[eq(2, c(libc::SIGABRT))]])?;

    // Time.
    p.allow(libc::SYS_clock_gettime);
    p.allow(libc::SYS_clock_getres);
    p.allow(libc::SYS_gettimeofday);
    p.allow(libc::SYS_clock_nanosleep);
    p.allow(libc::SYS_nanosleep);
    // Not control's own: the tester runs under this filter too (filters stack).
    allow_send_timer(&mut p)?;
    p.allow(libc::SYS_adjtimex); // kernel_clock (modes=0; setting needs CAP_SYS_TIME)
    // glibc implements adjtimex() as clock_adjtime(CLOCK_REALTIME, ...).
    p.allow_if(
        libc::SYS_clock_adjtime,
        &[&[eq(0, c(libc::CLOCK_REALTIME))]],
    )?;
    p.allow(libc::SYS_getrandom); // SIDs, challenges, salts (owamp::crypto)

    // Memory.
    p.allow_if(
        libc::SYS_mmap,
        &[std::slice::from_ref(&no_exec), &[file_backed]],
    )?;
    p.allow_if(libc::SYS_mprotect, &[&[no_exec]])?;
    p.allow(libc::SYS_munmap);
    p.allow(libc::SYS_mremap);
    p.allow(libc::SYS_brk);
    p.allow(libc::SYS_madvise);

    // Signals.
    p.allow(libc::SYS_rt_sigaction);
    p.allow(libc::SYS_rt_sigprocmask); // also Command's child before exec
    p.allow(libc::SYS_rt_sigreturn);
    p.allow(libc::SYS_sigaltstack);

    // Process and thread bits (std, tokio, glibc start-up of the exec'd tester).
    p.allow(libc::SYS_exit);
    p.allow(libc::SYS_exit_group);
    p.allow(libc::SYS_getpid);
    p.allow(libc::SYS_getppid);
    p.allow(libc::SYS_gettid);
    p.allow(libc::SYS_getuid);
    p.allow(libc::SYS_geteuid);
    p.allow(libc::SYS_getgid);
    p.allow(libc::SYS_getegid);
    p.allow(libc::SYS_getresuid); // sandbox::enter checks (tester)
    p.allow(libc::SYS_getresgid);
    p.allow(libc::SYS_getgroups);
    p.allow(libc::SYS_futex);
    p.allow(libc::SYS_sched_yield);
    p.allow(libc::SYS_sched_getaffinity); // std::thread::available_parallelism (tokio)
    p.allow(libc::SYS_set_robust_list); // glibc thread/process start
    p.allow(libc::SYS_set_tid_address); // glibc start-up
    p.allow(libc::SYS_rseq); // glibc start-up
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_arch_prctl); // glibc TLS set-up
    p.allow(libc::SYS_uname); // glibc start-up checks
    // getrlimit/setrlimit (glibc: prlimit64) on itself only: std start-up reads the stack
    // limit, the tester lowers its own limits.
    p.allow_if(libc::SYS_prlimit64, &[&[eq(0, 0)]])?;
    // The tester's own sandbox steps: capabilities, Landlock, seccomp.
    p.allow(libc::SYS_capget);
    p.allow(libc::SYS_capset);
    p.allow(libc::SYS_landlock_create_ruleset);
    p.allow(libc::SYS_landlock_add_rule);
    p.allow(libc::SYS_landlock_restrict_self);
    p.allow_if(
        libc::SYS_seccomp,
        &[&[eq(0, u64::from(libc::SECCOMP_SET_MODE_FILTER))]],
    )?;
    p.allow_if(
        libc::SYS_prctl,
        &[
            &[eq(0, c(libc::PR_SET_NAME))],
            &[eq(0, c(libc::PR_GET_NAME))],
            &[eq(0, c(libc::PR_SET_TIMERSLACK))],
            &[eq(0, c(libc::PR_SET_NO_NEW_PRIVS))],
            &[eq(0, c(libc::PR_GET_NO_NEW_PRIVS))],
            &[eq(0, c(libc::PR_GET_SECCOMP))],
            &[eq(0, c(libc::PR_CAPBSET_READ))],
            &[eq(0, c(libc::PR_CAP_AMBIENT))],
            &[eq(0, c(libc::PR_SET_PDEATHSIG))], // a tester dies with control
        ],
    )?;
    p.finish()
}
