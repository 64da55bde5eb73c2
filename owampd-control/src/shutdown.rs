//! The daemon's orderly stop as every connection sees it.
//!
//! The master gives control `dieby` seconds before it kills it. Within them, every
//! connection whose test sessions are running ends them with the Stop-Sessions exchange
//! (RFC 4656 §3.8: either side may go first), so the client keeps what was measured:
//! its own receive data from our senders' records, and ours, finalised and kept, which
//! it may still fetch. Connections doing anything else are closed.
//!
//! Two moments bound that work: [`Deadlines::exchange`], by which the client must have
//! answered our Stop-Sessions (and fetched, if it wants to); and [`Deadlines::exit`],
//! by which control has finalised whatever is left and exits, before the master's kill.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Kept between control's exit and the master's SIGKILL (a quarter of `dieby` at most).
const EXIT_MARGIN: Duration = Duration::from_millis(250);
/// Kept after the exchange deadline to finalise receivers whose client never answered
/// (half of `dieby` at most).
const FINALISE_RESERVE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// The client's Stop-Sessions reply (and any Fetch-Session after it) by then.
    pub exchange: Instant,
    /// Control exits by then, whatever is left.
    pub exit: Instant,
}

impl Deadlines {
    /// The deadlines of a stop that began at `begun`, with `dieby` seconds before the
    /// master's kill.
    pub fn from_dieby(begun: Instant, dieby: Duration) -> Deadlines {
        let exit = dieby.saturating_sub(EXIT_MARGIN.min(dieby / 4));
        let exchange = exit.saturating_sub(FINALISE_RESERVE.min(dieby / 2));
        Deadlines {
            exchange: begun + exchange,
            exit: begun + exit,
        }
    }
}

/// Begins the stop, once; held by the process's main loop.
pub struct ShutdownTrigger {
    tx: watch::Sender<Option<Deadlines>>,
}

/// A connection's view of the stop.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<Option<Deadlines>>,
}

impl ShutdownTrigger {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(None);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    pub fn begin(&self, deadlines: Deadlines) {
        self.tx.send_if_modified(|d| {
            if d.is_some() {
                return false;
            }
            *d = Some(deadlines);
            true
        });
    }
}

impl Shutdown {
    /// A stop that never comes (tests, fuzzing).
    pub fn never() -> Shutdown {
        ShutdownTrigger::new().1
    }

    /// The deadlines once the stop has begun.
    pub fn deadlines(&self) -> Option<Deadlines> {
        *self.rx.borrow()
    }

    /// Resolves when the stop begins; never, if it never does (cancel-safe).
    pub async fn begun(&self) -> Deadlines {
        let mut rx = self.rx.clone();
        loop {
            if let Some(d) = *rx.borrow_and_update() {
                return d;
            }
            if rx.changed().await.is_err() {
                // The trigger is gone without a stop: there will be none.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_leave_time_to_finalise_and_to_exit() {
        let t0 = Instant::now();
        let d = Deadlines::from_dieby(t0, Duration::from_secs(5));
        assert_eq!(d.exit - t0, Duration::from_millis(4750));
        assert_eq!(d.exchange - t0, Duration::from_millis(3750));
        let d = Deadlines::from_dieby(t0, Duration::from_secs(1));
        assert_eq!(d.exit - t0, Duration::from_millis(750));
        assert_eq!(d.exchange - t0, Duration::from_millis(250));
        let d = Deadlines::from_dieby(t0, Duration::ZERO);
        assert_eq!((d.exchange, d.exit), (t0, t0));
    }

    #[tokio::test]
    async fn every_view_sees_the_first_stop_only() {
        let (trigger, view) = ShutdownTrigger::new();
        let other = view.clone();
        assert_eq!(view.deadlines(), None);
        let t0 = Instant::now();
        let first = Deadlines::from_dieby(t0, Duration::from_secs(5));
        trigger.begin(first);
        trigger.begin(Deadlines::from_dieby(t0, Duration::from_secs(9)));
        assert_eq!(view.begun().await, first);
        assert_eq!(other.deadlines(), Some(first));
    }

    #[tokio::test]
    async fn a_stop_that_never_comes_never_resolves() {
        let never = Shutdown::never();
        let waited = tokio::time::timeout(Duration::from_millis(20), never.begun()).await;
        assert!(waited.is_err());
    }
}
