//! The signals that stop the daemon, and who acts on them.
//!
//! Only the master does: it reads them from a signalfd and tells control to stop
//! (`master::MasterToControl::Shutdown`), which ends running test sessions with
//! Stop-Sessions before the master's `dieby` runs out. A stop signal also reaches every
//! other process when it is sent to them all at once: systemd's default
//! `KillMode=control-group` does that, and so does ^C at a terminal (the foreground
//! process group). Control, its spawner and every tester therefore hold these signals
//! blocked, so that such a signal cannot end a session before its Stop-Sessions; SIGKILL
//! still ends them.

use nix::sys::signal::{SigSet, Signal};

/// SIGTERM, SIGINT and SIGHUP stop the daemon (owampd(8)); SIGUSR1 and SIGUSR2 too, as
/// they stop the reference's.
pub const STOP_SIGNALS: [Signal; 5] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks [`STOP_SIGNALS`] in the calling thread: threads it starts and processes it
/// forks inherit the mask (a posix_spawned child starts with none blocked, see
/// [`crate::spawn`], and blocks them itself).
pub fn hold_stop_signals() -> nix::Result<()> {
    let mut mask = SigSet::empty();
    for s in STOP_SIGNALS {
        mask.add(s);
    }
    mask.thread_block()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_signals_stay_pending_instead_of_killing() {
        // On a thread of its own: the mask is per thread.
        std::thread::spawn(|| {
            hold_stop_signals().expect("block");
            let mask = SigSet::thread_get_mask().expect("mask");
            for s in STOP_SIGNALS {
                assert!(mask.contains(s), "{s} not blocked");
            }
        })
        .join()
        .expect("thread");
    }
}
