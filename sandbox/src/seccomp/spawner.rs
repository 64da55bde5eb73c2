//! The spawner's allow-list. The spawner is the small process control forks at start to
//! start its testers (`ipc::spawner`): it reads requests on its channel, starts
//! `owampd-tester` with posix_spawn(3) and answers with a pidfd.
//!
//! Filters are inherited across exec, so this list also covers a tester from its execve
//! to its own (stricter) filter: the dynamic loader, Rust start-up and
//! `sandbox::enter(Tester)`, and then everything the tester's own list allows (a test
//! checks that). Landlock confines what may be opened or executed to the tester binary
//! and its libraries.

use super::rules::{Policy, PolicyError, c, eq, none_of};
use super::tester::{TEST_SOCKET_FD, TEST_SOCKOPTS};

/// The spawner policy.
pub fn policy() -> Result<Policy, PolicyError> {
    let mut p = Policy::default();
    // No anonymous executable memory. File-backed executable mappings stay allowed: the
    // exec'd tester's loader maps libc that way, and Landlock limits executable files to
    // the tester and its libraries.
    let no_exec = none_of(2, c(libc::PROT_EXEC));
    let file_backed = none_of(3, c(libc::MAP_ANONYMOUS));

    // The spawner itself: requests and replies with descriptors (ipc::channel), then
    // posix_spawn: clone(CLONE_VM | CLONE_VFORK) (glibc tries clone3 first), the child's
    // signal reset and fd placement (dup2 to the fixed numbers), execve, and a pidfd.
    p.allow(libc::SYS_recvmsg);
    p.allow(libc::SYS_recvfrom); // the peek for a message's length (ipc::channel)
    p.allow(libc::SYS_sendmsg);
    p.allow(libc::SYS_clone);
    p.allow(libc::SYS_clone3);
    p.allow(libc::SYS_execve);
    p.allow(libc::SYS_dup3);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_dup2);
    p.allow(libc::SYS_pidfd_open);
    // Killing a tester control gave up on, through its pidfd.
    p.allow_if(libc::SYS_pidfd_send_signal, &[&[eq(1, c(libc::SIGKILL))]])?;
    p.allow(libc::SYS_rt_sigaction);
    p.allow(libc::SYS_rt_sigprocmask);
    p.allow(libc::SYS_rt_sigreturn);

    // Plain I/O on inherited descriptors (the tester's IPC, records, the loader).
    p.allow(libc::SYS_read);
    p.allow(libc::SYS_write);
    p.allow(libc::SYS_readv);
    p.allow(libc::SYS_writev);
    p.allow(libc::SYS_pread64);
    p.allow(libc::SYS_pwrite64);
    p.allow(libc::SYS_lseek);
    p.allow(libc::SYS_fsync);
    p.allow(libc::SYS_fdatasync);
    p.allow(libc::SYS_ftruncate);
    p.allow(libc::SYS_fstat);
    p.allow(libc::SYS_newfstatat); // ld.so, std metadata
    p.allow(libc::SYS_statx);
    p.allow(libc::SYS_close);
    p.allow(libc::SYS_close_range); // the tester's first sandbox step
    p.allow(libc::SYS_flock);
    p.allow(libc::SYS_fcntl);
    p.allow_if(
        libc::SYS_ioctl,
        &[
            &[eq(1, u64::from(libc::FIONBIO as u32))],
            &[eq(1, u64::from(libc::FIOCLEX as u32))],
            &[eq(1, u64::from(libc::FIONCLEX as u32))],
        ],
    )?;

    // The loader opening the tester's libraries (Landlock: those and ld.so.cache only).
    p.allow(libc::SYS_openat);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_open);
    p.allow(libc::SYS_faccessat);
    p.allow(libc::SYS_faccessat2);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_access); // ld.so: /etc/ld.so.preload
    p.allow(libc::SYS_getcwd); // std's panic message

    // The tester's sockets (fd 3 IPC, fd 4 UDP): no socket is created here.
    p.allow(libc::SYS_sendto);
    p.allow(libc::SYS_recvmmsg);
    p.allow(libc::SYS_getsockname);
    // The tester connecting its test socket (fd 4) to the peer.
    p.allow_if(libc::SYS_connect, &[&[eq(0, TEST_SOCKET_FD)]])?;
    let opts: Vec<[super::rules::Cond; 2]> = TEST_SOCKOPTS
        .iter()
        .chain(&[(libc::SOL_SOCKET, libc::SO_ERROR)])
        .map(|&(level, name)| [eq(1, c(level)), eq(2, c(name))])
        .collect();
    let alts: Vec<&[super::rules::Cond]> = opts.iter().map(|a| a.as_slice()).collect();
    p.allow_if(libc::SYS_setsockopt, &alts)?;
    p.allow_if(libc::SYS_getsockopt, &alts)?;
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_poll);
    p.allow(libc::SYS_ppoll);
    p.allow(libc::SYS_restart_syscall);

    // Time.
    p.allow(libc::SYS_clock_gettime);
    p.allow(libc::SYS_clock_getres);
    p.allow(libc::SYS_gettimeofday);
    p.allow(libc::SYS_clock_nanosleep);
    p.allow(libc::SYS_nanosleep);
    p.allow(libc::SYS_adjtimex); // kernel_clock (modes=0; setting needs CAP_SYS_TIME)
    p.allow_if(
        libc::SYS_clock_adjtime,
        &[&[eq(0, c(libc::CLOCK_REALTIME))]],
    )?;
    p.allow(libc::SYS_getrandom);

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
    p.allow(libc::SYS_sigaltstack);

    // Process bits: glibc and Rust start-up of the tester, abort() after a panic.
    p.allow(libc::SYS_exit);
    p.allow(libc::SYS_exit_group);
    p.allow(libc::SYS_getpid);
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
    p.allow(libc::SYS_set_robust_list);
    p.allow(libc::SYS_set_tid_address);
    p.allow(libc::SYS_rseq);
    #[cfg(target_arch = "x86_64")]
    p.allow(libc::SYS_arch_prctl); // glibc TLS set-up
    p.allow(libc::SYS_uname);
    // A static-pie tester's libc start-up (`_dl_non_dynamic_init`) reads the
    // /proc/self/exe link before main, under this filter: the tester's own comes later.
    p.allow(libc::SYS_readlink);
    p.allow_if(libc::SYS_tgkill, &[&[eq(2, c(libc::SIGABRT))]])?;
    // getrlimit/setrlimit (prlimit64) on itself only: the tester lowers its own limits.
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
            &[eq(0, c(libc::PR_SET_NO_NEW_PRIVS))],
            &[eq(0, c(libc::PR_GET_NO_NEW_PRIVS))],
            &[eq(0, c(libc::PR_GET_SECCOMP))],
            &[eq(0, c(libc::PR_CAPBSET_READ))],
            &[eq(0, c(libc::PR_CAP_AMBIENT))],
            &[eq(0, c(libc::PR_SET_TIMERSLACK))], // the tester's (a superset of its policy)
        ],
    )?;
    p.finish()
}
