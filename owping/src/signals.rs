//! SIGINT/SIGTERM/SIGHUP without `unsafe`: the signals are blocked in the main thread
//! before any other thread starts (so every thread inherits the mask) and one thread
//! waits for them with `sigwait`. For owping, owfetch and owup ([`Interrupt`]) it counts
//! them in an atomic: a first signal asks the sessions to stop cleanly (Stop-Sessions,
//! then the partial results as owping.c prints them); a second exits 2 at once. For
//! powstream ([`forward`]) each signal becomes a message on its event channel, and
//! SIGHUP means "reopen", not "stop".

use nix::sys::signal::{SigSet, Signal};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Sender;

/// How many termination signals arrived.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicU32>);

impl Interrupt {
    /// Blocks the signals and starts the waiting thread. Call before starting threads.
    pub fn install() -> Interrupt {
        let it = Interrupt::default();
        let set = blocked_set();
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

/// What a signal asks of a client that runs until it is told to stop (powstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGINT or SIGTERM: finish the running sessions cleanly and exit.
    Finish,
    /// SIGHUP: finish the running sessions cleanly and start again.
    Reopen,
}

fn blocked_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// A SIGINT/SIGTERM this soon after the first is the same request again, not an
/// impatient user: `timeout(1)` and a kill of the process group deliver one signal twice.
const REPEAT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Blocks SIGINT, SIGTERM and SIGHUP and starts a thread that sends each one to `tx` as
/// `wrap(request)`. A SIGINT/SIGTERM more than [`REPEAT_GRACE`] after the first exits
/// the process with status 2 at once (the user no longer wants the clean finish). Call
/// before starting other threads.
pub fn forward<T: Send + 'static>(tx: Sender<T>, wrap: fn(Request) -> T) -> std::io::Result<()> {
    let set = blocked_set();
    set.thread_block().map_err(std::io::Error::from)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut finishing: Option<std::time::Instant> = None;
            while let Ok(sig) = set.wait() {
                let req = if sig == Signal::SIGHUP {
                    Request::Reopen
                } else if let Some(first) = finishing {
                    if first.elapsed() >= REPEAT_GRACE {
                        std::process::exit(2);
                    }
                    continue;
                } else {
                    finishing = Some(std::time::Instant::now());
                    Request::Finish
                };
                if tx.send(wrap(req)).is_err() {
                    // Nobody listens any more: the process is on its way out.
                    std::process::exit(2);
                }
            }
        })?;
    Ok(())
}
