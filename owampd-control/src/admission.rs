//! Pacing new connections while many testers are starting.
//!
//! A client picks its sessions' Start Time right after the handshake (now plus a few
//! round trips and a second, protocol.md §8.2), and every tester of its sessions must be
//! exec'd and ready before Start-Sessions is answered. When a thousand clients connect at
//! once, thousands of testers queue at the spawner and on the CPUs; the later clients
//! then get their Start-Ack after their Start Time plus Timeout, and both senders skip
//! their first packets (a session "late", not lossy). A client that waits for the
//! greeting instead has not chosen its Start Time yet, so it loses nothing.
//!
//! So the greeting of a new connection waits while more than a bound of testers are
//! between their spawn and their `Ready`. The count is the server's own work: a peer
//! cannot hold it up (a tester that never gets ready is given up after the tester reply
//! timeout), and in normal operation it is a handful, so nobody waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Testers allowed to be starting at once, per CPU, before new greetings wait. A
/// tester's start costs about a millisecond of CPU, so this is a few tens of
/// milliseconds of work queued per CPU: enough to keep every CPU busy in a burst.
pub const STARTING_PER_CPU: usize = 16;

/// The count of testers between spawn and `Ready` (or failure), and the wait for it
/// to fall below its bound.
#[derive(Debug)]
pub struct StartingTesters {
    count: AtomicUsize,
    fell: Notify,
    limit: usize,
}

/// One tester counted as starting until this is dropped.
#[derive(Debug)]
pub struct Starting(Arc<StartingTesters>);

impl StartingTesters {
    /// A count with bound `limit` (at least 1).
    pub fn new(limit: usize) -> Arc<StartingTesters> {
        Arc::new(StartingTesters {
            count: AtomicUsize::new(0),
            fell: Notify::new(),
            limit: limit.max(1),
        })
    }

    /// The bound for this host: [`STARTING_PER_CPU`] per available CPU.
    pub fn for_this_host() -> Arc<StartingTesters> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        StartingTesters::new(STARTING_PER_CPU.saturating_mul(cpus))
    }

    /// Counts one more tester as starting.
    pub fn begin(self: &Arc<Self>) -> Starting {
        self.count.fetch_add(1, Ordering::AcqRel);
        Starting(Arc::clone(self))
    }

    /// Testers starting now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Returns once fewer than the bound are starting; `true` if it had to wait.
    pub async fn below_limit(&self) -> bool {
        let mut waited = false;
        loop {
            // Registered before the check, so a drop between the check and the wait
            // still wakes us.
            let fell = self.fell.notified();
            tokio::pin!(fell);
            fell.as_mut().enable();
            if self.count() < self.limit {
                return waited;
            }
            waited = true;
            fell.await;
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.fell.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn below_the_limit_nobody_waits() {
        let s = StartingTesters::new(2);
        let _a = s.begin();
        assert!(!s.below_limit().await);
        assert_eq!(s.count(), 1);
    }

    #[tokio::test]
    async fn at_the_limit_a_greeting_waits_until_one_is_ready() {
        let s = StartingTesters::new(2);
        let a = s.begin();
        let _b = s.begin();
        let waiter = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.below_limit().await }
        });
        // Still at the limit: the waiter has not finished (it is woken only by a drop).
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the drop")
            .expect("task");
        assert!(waited);
        assert_eq!(s.count(), 1);
    }

    #[test]
    fn the_bound_is_never_zero() {
        let s = StartingTesters::new(0);
        assert_eq!(s.limit, 1);
        assert!(StartingTesters::for_this_host().limit >= STARTING_PER_CPU);
    }
}
