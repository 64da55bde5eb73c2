//! The master's policy: a lenient DENY-list (docs/processes.md,
//! "Sandbox"). The master is small, runs as root, and forks/execs control, so an
//! allow-list would have to cover control's and the tester's start-up too (filters are
//! inherited). Instead it forbids what owampd never needs and what an attacker who got
//! code execution in a root process would reach for first. Every entry here is therefore
//! also forbidden in control and the tester, which inherit this filter.

use super::rules::{Policy, PolicyError};

/// Syscalls that kill the master (and everything it starts).
pub fn policy() -> Result<Policy, PolicyError> {
    let mut p = Policy::default();
    // Debugging / reading other processes' memory.
    p.deny(libc::SYS_ptrace);
    p.deny(libc::SYS_process_vm_readv);
    p.deny(libc::SYS_process_vm_writev);
    // Mounts and filesystem namespaces.
    p.deny(libc::SYS_mount);
    p.deny(libc::SYS_umount2);
    p.deny(libc::SYS_pivot_root);
    p.deny(libc::SYS_chroot);
    p.deny(libc::SYS_fsopen);
    p.deny(libc::SYS_fsconfig);
    p.deny(libc::SYS_fsmount);
    p.deny(libc::SYS_fspick);
    p.deny(libc::SYS_move_mount);
    p.deny(libc::SYS_open_tree);
    p.deny(libc::SYS_mount_setattr);
    p.deny(libc::SYS_open_by_handle_at);
    p.deny(libc::SYS_name_to_handle_at);
    p.deny(libc::SYS_quotactl);
    // New namespaces (the e2e tests create them from the test process, not from owampd).
    p.deny(libc::SYS_unshare);
    p.deny(libc::SYS_setns);
    // Kernel code and machine state.
    p.deny(libc::SYS_init_module);
    p.deny(libc::SYS_finit_module);
    p.deny(libc::SYS_delete_module);
    p.deny(libc::SYS_kexec_load);
    p.deny(libc::SYS_kexec_file_load);
    p.deny(libc::SYS_reboot);
    p.deny(libc::SYS_swapon);
    p.deny(libc::SYS_swapoff);
    p.deny(libc::SYS_acct);
    p.deny(libc::SYS_sethostname);
    p.deny(libc::SYS_setdomainname);
    p.deny(libc::SYS_syslog);
    p.deny(libc::SYS_vhangup);
    // Setting the clock: owampd only reads it (adjtimex with modes=0 stays allowed).
    p.deny(libc::SYS_settimeofday);
    p.deny(libc::SYS_clock_settime);
    // Large kernel attack surface nobody here uses.
    p.deny(libc::SYS_bpf);
    p.deny(libc::SYS_perf_event_open);
    p.deny(libc::SYS_userfaultfd);
    p.deny(libc::SYS_keyctl);
    p.deny(libc::SYS_add_key);
    p.deny(libc::SYS_request_key);
    p.deny(libc::SYS_fanotify_init);
    p.deny(libc::SYS_personality);
    #[cfg(target_arch = "x86_64")]
    {
        p.deny(libc::SYS_iopl);
        p.deny(libc::SYS_ioperm);
        p.deny(libc::SYS_uselib);
    }
    p.finish()
}
