//! SIGINT/SIGTERM/SIGHUP without `unsafe`: the signals are blocked in the main thread
//! before any other thread starts (so every thread inherits the mask) and one thread
//! waits for them with `sigwait`, counting them in an atomic. A first signal asks the
//! sessions to stop cleanly (Stop-Sessions, then exit 2); a second exits at once.

use nix::sys::signal::{SigSet, Signal};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// How many termination signals arrived.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicU32>);

impl Interrupt {
    /// Blocks the signals and starts the waiting thread. Call before starting threads.
    pub fn install() -> Interrupt {
        let it = Interrupt::default();
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        if set.thread_block().is_err() {
            // Without the mask the default action (termination) stays: still safe.
            return it;
        }
        let count = it.0.clone();
        let _ = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                while set.wait().is_ok() {
                    if count.fetch_add(1, Ordering::SeqCst) >= 1 {
                        std::process::exit(2);
                    }
                }
            });
        it
    }

    pub fn count(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn is_set(&self) -> bool {
        self.count() > 0
    }

    /// For tests: as if a signal had arrived.
    pub fn raise(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
