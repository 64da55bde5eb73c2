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
//! So the greeting of a new connection waits while the testers starting (between their
//! spawn and their `Ready`) and the connections greeted but not yet past their first
//! request reach a bound. Each greeted connection holds a [`Greeted`] token until its
//! first request has been answered (its testers are then counted themselves), it ends,
//! or [`GREETED_HOLD`] (100 ms) has passed, whichever comes first. Without the token, every
//! waiting connection went ahead the moment the count fell below the bound (none of
//! them had spawned anything yet), and a burst of 2,000 clients put its 4,000 testers
//! on the CPUs at once after all.
//!
//! Waiters are woken one per freed place (`notify_one`, first come first served), so a
//! freed place costs one wake-up, not one per waiting connection. The count is the
//! server's own work and a peer can hold a place for at most [`GREETED_HOLD`]; in normal
//! operation it is a handful, so nobody waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Testers allowed to be starting at once, per CPU, before new greetings wait. A
/// tester's start costs about a millisecond of CPU, so this is a few tens of
/// milliseconds of work queued per CPU: enough to keep every CPU busy in a burst.
pub const STARTING_PER_CPU: usize = 16;

/// The longest a greeted connection counts as about to start testers. A client that
/// is greeted and then says nothing holds a place this long, so K such connections
/// delay the greetings of others by about K × this / the bound (300 idle connections:
/// about 1 s on two CPUs). A prompt client's Set-Up-Response, Server-Start and first
/// Request-Session take a few ms; in a burst that leaves a client slower than this,
/// its place is given back early and the next waiter greeted: the pace is then still at
/// most the bound per this interval (320 greetings/s on two CPUs), not the whole burst
/// at once.
pub const GREETED_HOLD: Duration = Duration::from_millis(100);

/// The count of testers between spawn and `Ready` (or failure) and of greeted
/// connections holding a [`Greeted`] token, and the wait for it to fall below its bound.
#[derive(Debug)]
pub struct StartingTesters {
    count: AtomicUsize,
    greeted: AtomicUsize,
    freed: Notify,
    limit: usize,
}

/// One tester counted as starting until this is dropped.
#[derive(Debug)]
pub struct Starting(Arc<StartingTesters>);

/// A greeted connection's place, given back when this is dropped or [`GREETED_HOLD`]
/// after the greeting, whichever comes first.
#[derive(Debug)]
pub struct Greeted(Arc<Place>);

#[derive(Debug)]
struct Place {
    owner: Arc<StartingTesters>,
    given_back: AtomicBool,
}

impl Place {
    fn give_back(&self) {
        if !self.given_back.swap(true, Ordering::AcqRel) {
            self.owner.greeted.fetch_sub(1, Ordering::AcqRel);
            self.owner.freed.notify_one();
        }
    }
}

impl StartingTesters {
    /// A count with bound `limit` (at least 1).
    pub fn new(limit: usize) -> Arc<StartingTesters> {
        Arc::new(StartingTesters {
            count: AtomicUsize::new(0),
            greeted: AtomicUsize::new(0),
            freed: Notify::new(),
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

    /// Greeted connections holding their place now.
    pub fn greeted(&self) -> usize {
        self.greeted.load(Ordering::Acquire)
    }

    fn has_room(&self) -> bool {
        self.count().saturating_add(self.greeted()) < self.limit
    }

    /// Waits for a place, then takes it: the token, and whether it had to wait. Call it
    /// from within a tokio runtime (the place is given back by a timer at the latest).
    pub async fn admit(self: &Arc<Self>) -> (Greeted, bool) {
        let mut waited = false;
        loop {
            // Registered before the check, so a place freed between the check and the
            // wait still wakes us.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.has_room() {
                break;
            }
            waited = true;
            freed.await;
        }
        self.greeted.fetch_add(1, Ordering::AcqRel);
        let place = Arc::new(Place {
            owner: Arc::clone(self),
            given_back: AtomicBool::new(false),
        });
        let timer = Arc::clone(&place);
        tokio::spawn(async move {
            tokio::time::sleep(GREETED_HOLD).await;
            timer.give_back();
        });
        // More room than this one place (several freed at once): the next waiter looks
        // too, so no place stays unused while someone waits.
        if self.has_room() {
            self.freed.notify_one();
        }
        (Greeted(place), waited)
    }
}

impl Drop for Greeted {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough that a waiter that should have been woken has been; far longer than
    /// anything here takes.
    const SURELY: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn below_the_limit_nobody_waits_and_the_place_is_given_back() {
        let s = StartingTesters::new(2);
        let _a = s.begin();
        let (place, waited) = s.admit().await;
        assert!(!waited);
        assert_eq!((s.count(), s.greeted()), (1, 1));
        drop(place);
        assert_eq!(s.greeted(), 0);
    }

    #[tokio::test]
    async fn at_the_limit_a_greeting_waits_until_a_place_is_freed() {
        let s = StartingTesters::new(2);
        let a = s.begin();
        let _first = s.admit().await;
        let waiter = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.admit().await.1 }
        });
        // One tester and one greeted connection: full. Only a freed place wakes it.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        let waited = tokio::time::timeout(SURELY, waiter)
            .await
            .expect("woken by the freed place")
            .expect("task");
        assert!(waited);
        assert_eq!(
            (s.count(), s.greeted()),
            (0, 1),
            "the waiter's place was dropped"
        );
    }

    /// The fault this replaced: every waiter went ahead at once when the count fell
    /// below the bound. One freed place now lets exactly one through.
    #[tokio::test]
    async fn one_freed_place_lets_one_waiter_through() {
        let s = StartingTesters::new(1);
        let tester = s.begin();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3 {
            let s = Arc::clone(&s);
            let done = done_tx.clone();
            tokio::spawn(async move {
                let (place, _) = s.admit().await;
                let _ = done.send((i, place));
            });
        }
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        assert!(
            done_rx.try_recv().is_err(),
            "nobody gets through while full"
        );
        drop(tester);
        let (_, first) = tokio::time::timeout(SURELY, done_rx.recv())
            .await
            .expect("one woken")
            .expect("sender alive");
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        assert!(done_rx.try_recv().is_err(), "only one place was freed");
        assert_eq!(s.greeted(), 1);
        drop(first);
        let (_, _second) = tokio::time::timeout(SURELY, done_rx.recv())
            .await
            .expect("the next one woken when that place came back")
            .expect("sender alive");
    }

    /// A client that is greeted and then sends nothing holds its place for
    /// GREETED_HOLD at most.
    #[tokio::test]
    async fn a_silent_greeted_connection_gives_its_place_back_after_the_hold() {
        let s = StartingTesters::new(1);
        let (_held, _) = s.admit().await;
        let waiter = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.admit().await.1 }
        });
        let waited = tokio::time::timeout(GREETED_HOLD + SURELY, waiter)
            .await
            .expect("the hold ran out")
            .expect("task");
        assert!(waited);
    }

    #[test]
    fn the_bound_is_never_zero() {
        let s = StartingTesters::new(0);
        assert_eq!(s.limit, 1);
        assert!(StartingTesters::for_this_host().limit >= STARTING_PER_CPU);
    }
}
