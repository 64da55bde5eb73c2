//! Waiting without burning CPU: absolute sleeps on `CLOCK_REALTIME`, when to ask the
//! [`SessionControl`] whether to stop, and the sender's hybrid pacing.
//!
//! A control that exposes a descriptor ([`SessionControl::wait_fd`]) is asked only when
//! that descriptor becomes readable, so an idle session wakes only for its packets or its
//! stop message (bench/README.md "Performance bugs found": the old 10 ms poll slice cost
//! ~4,000 threads × 100 wake-ups/s at 1,000 sessions). A control without one is asked at
//! every wake-up of a loop and at least every [`FALLBACK_SLICE`].
//!
//! # Hybrid pacing (the sender, [`pace_until`])
//!
//! Send accuracy (timestamp − scheduled time, spec §3.3 "as close to the schedule as
//! possible"; issue #6: p99 < 20 µs at 1,000 packets/s) cannot come from a timer alone on
//! the development VM (nested, paravirtualised, lapic tsc-deadline, haltpoll idle): an
//! absolute `clock_nanosleep` with 1 ns slack wakes at least 10-16 µs late, 24 µs at the
//! median and ~60 µs at p99, and costs 16-20 µs of CPU per sleep. So the sender sleeps
//! (as the other loops do) until `deadline − margin`, then waits the rest without a timer:
//! it reads the clock (vDSO, ~20 ns) with `spin_loop` and a `sched_yield` per turn, so a
//! thread that wants this CPU gets it first, until the deadline. A wake already past the
//! deadline sends at once.
//!
//! The margin is learnt per sender ([`MarginEstimator`]): the p99 of how late this
//! thread's last 256 timed sleeps woke, plus 2 µs, recomputed every 16 wakes (a burst of
//! late wakes raises it within 16 packets; 2 outliers in 256 do not). Why p99: the
//! accuracy p99 stays under 20 µs only if 99 % of the wakes come at most 20 µs after the
//! deadline; measured with `owamp-bench session` at 1,000 pps on a quiet VM this gives
//! accuracy p50 ~0.1 µs and p99 10-28 µs. A p95 would save ~10 µs of CPU per packet, but
//! the shared machine was too noisy to show it holds the p99. The tail that remains is
//! almost all wakes (or whole stalls) later than the margin, not the spin (instrumented:
//! 5-11 of 5,000 packets ended a spin > 20 µs late). Bounds on the CPU it costs:
//! - at most [`MAX_MARGIN_NS`] (100 µs) per packet, whatever the sleeps do;
//! - none while the p99 lateness is over [`OVERLOAD_NS`] (400 µs): the CPU is overloaded,
//!   a spin cannot hold the tail and would take CPU from everything else running;
//! - at most 1/[`GAP_DIVISOR`] of the time since the previous send time, so the spin is
//!   never most of an interval: at 10,000 pps at most 25 µs of each 100 µs, at 1,000 pps
//!   the spin is margin − lateness (measured: sender CPU per packet ~23-27 → ~50-65 µs,
//!   3-4 % more of a CPU; at 10,000 pps ~21.5 → ~26.5 µs);
//! - when a turn of the spin takes longer than [`SLOW_YIELD_NS`], `sched_yield` gave the
//!   CPU to a busy neighbour for its whole slice; then the next [`NO_YIELD_SPINS`] spins
//!   do not yield (still bounded as above). Measured at 1,000 pps with two `yes` running:
//!   sleeping only, accuracy p50 16 µs, p99 1.5-2.4 ms; yielding at every turn, p50 2 ms;
//!   with this rule p50 0.07 µs, p99 2.0-3.0 ms (the loaded CPU's stalls either way).
//!
//! A clock step (a `CLOCK_REALTIME` change) cannot turn the spin into a busy loop: it
//! reads the same [`Clock`] (with its debugging offset) whose time scale the deadline is
//! on, and gives up as soon as the deadline is more than the margin away, going back to
//! the absolute sleep. Stop-Sessions is asked before every sleep, so it waits at most one
//! margin (≤ 100 µs) longer than before.

use super::SessionControl;
use crate::time::{
    Clock, duration_to_num64, num64_to_duration, realtime_raw, timespec_from_timestamp,
};
use crate::types::{Num64, Timestamp};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{
    ClockId as TimerClock, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags,
};
use nix::time::{ClockId, ClockNanosleepFlags, clock_nanosleep};
use std::os::fd::{AsFd, BorrowedFd};

/// The longest a loop sleeps without asking a control that has no descriptor.
pub(crate) const FALLBACK_SLICE: Num64 = Num64(858_993_459); // 200 ms in 2^-32 s

/// After a readable descriptor that did not mean "stop", the descriptor is left out of
/// the waits this long: a descriptor stuck readable (say, a message the control does not
/// consume) then costs at most 100 wake-ups/s instead of a busy loop.
pub(crate) const BACKOFF_SLICE: Num64 = Num64(42_949_673); // 10 ms

/// A deadline nearer than this is slept with `clock_nanosleep(TIMER_ABSTIME)`: the
/// shortest wake-up path, for send accuracy (spec §3.3: timestamp immediately before
/// sending, as close to the schedule as possible). A farther one is waited on a timerfd
/// beside the control's descriptor, or, without a timerfd, with a poll timeout up to
/// this far before it (poll's slack is 0.1 % of its timeout) and then the same sleep.
pub(crate) const FINAL_APPROACH: Num64 = Num64(8_589_935); // 2 ms

/// Lowers this thread's timer slack to 1 ns, so absolute sleeps end on time rather than
/// up to the default 50 µs late (prctl(2) PR_SET_TIMERSLACK). Best effort.
pub(crate) fn tighten_timer_slack() {
    let _ = nix::sys::prctl::set_timerslack(1);
}

/// Decides when a loop must call [`SessionControl::poll_stop`].
#[derive(Debug)]
pub(crate) struct StopPoller {
    /// Both the control and (for the receiver) the socket can be waited on.
    use_fd: bool,
    /// Ask at the next opportunity (at the start, and after the descriptor was readable).
    due: bool,
    /// `due` was set by the descriptor (not by the start).
    signalled: bool,
    /// Leave the descriptor out of waits until then (see [`BACKOFF_SLICE`]).
    ignore_fd_until: Timestamp,
    /// Ask again at this time even if nothing signalled (fallback and backoff).
    recheck_at: Option<Timestamp>,
    /// An absolute `CLOCK_REALTIME` timerfd, waited on beside the control's descriptor:
    /// one wake-up per deadline, to the nanosecond (a timerfd has no slack), where a poll
    /// timeout then a final `clock_nanosleep` cost two (bench/README.md: a wake-up is
    /// ~20 µs of CPU on the development VM). Made at the first use; `Some(None)` when it
    /// could not be made, and the two-step wait is used.
    timer: Option<Option<TimerFd>>,
}

impl StopPoller {
    /// `use_fd`: the control's descriptor is usable (the receiver also needs its socket's).
    pub(crate) fn new(use_fd: bool) -> StopPoller {
        StopPoller {
            use_fd,
            due: true,
            signalled: false,
            ignore_fd_until: Num64::ZERO,
            recheck_at: None,
            timer: None,
        }
    }

    /// The timerfd, armed to expire at `until` (on `clock`'s time scale); `None` if there
    /// is none. Re-arming also clears a past expiry, so the timer is never read.
    fn timer_at(&mut self, clock: &Clock, until: Timestamp) -> Option<&TimerFd> {
        let timer = self
            .timer
            .get_or_insert_with(|| {
                TimerFd::new(
                    TimerClock::CLOCK_REALTIME,
                    TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
                )
                .ok()
            })
            .as_ref()?;
        let at = timespec_from_timestamp(clock.to_realtime(until));
        timer
            .set(
                Expiration::OneShot(at),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )
            .ok()?;
        Some(timer)
    }

    /// Asks the control if it is time to; true when the session must stop.
    pub(crate) fn should_stop(&mut self, ctl: &mut dyn SessionControl, now: Timestamp) -> bool {
        let ask = !self.use_fd || self.due || self.recheck_at.is_some_and(|t| now >= t);
        if !ask {
            return false;
        }
        let signalled = self.signalled;
        self.due = false;
        self.signalled = false;
        if ctl.poll_stop() {
            return true;
        }
        self.recheck_at = if !self.use_fd {
            Some(now.wrapping_add(FALLBACK_SLICE))
        } else if signalled {
            self.ignore_fd_until = now.wrapping_add(BACKOFF_SLICE);
            Some(self.ignore_fd_until)
        } else {
            None
        };
        false
    }

    /// The control's descriptor, when the next wait should include it.
    pub(crate) fn fd<'a>(
        &self,
        ctl: &'a dyn SessionControl,
        now: Timestamp,
    ) -> Option<BorrowedFd<'a>> {
        if self.use_fd && now >= self.ignore_fd_until {
            ctl.wait_fd()
        } else {
            None
        }
    }

    /// The descriptor was readable: ask at the next opportunity.
    pub(crate) fn signal(&mut self) {
        self.due = true;
        self.signalled = true;
    }

    /// When the loop must wake to ask even if nothing happens.
    pub(crate) fn recheck_at(&self) -> Option<Timestamp> {
        self.recheck_at
    }
}

/// True when `poll` reported something on the descriptor (data, hang-up, error: every
/// one of them is news the control must look at).
pub(crate) fn is_ready(fd: &PollFd<'_>) -> bool {
    fd.revents().is_some_and(|r| !r.is_empty())
}

/// Sleeps until `deadline` on `clock`'s time scale. Returns `true` if the control asked to
/// stop (then possibly before the deadline).
///
/// With a control descriptor: a deadline more than [`FINAL_APPROACH`] away is one `ppoll`
/// on it and on an absolute timerfd (or, if no timerfd could be made, `ppoll` until
/// [`FINAL_APPROACH`] before the deadline); a nearer one is `clock_nanosleep(
/// TIMER_ABSTIME)`. Without: `clock_nanosleep` in slices of at most [`FALLBACK_SLICE`],
/// asking the control between them.
pub(crate) fn sleep_until(
    clock: &Clock,
    deadline: Timestamp,
    ctl: &mut dyn SessionControl,
    poller: &mut StopPoller,
) -> bool {
    matches!(sleep_phase(clock, deadline, ctl, poller), Slept::Stop)
}

/// How [`sleep_phase`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slept {
    /// The control asked to stop.
    Stop,
    /// `now` (first reading at or after the deadline). `timed`: the last thing done was a
    /// timed wait to the deadline itself (the timerfd, or `clock_nanosleep`) that ended by
    /// the timer, so `now − deadline` is its wake-up lateness (a sample for
    /// [`MarginEstimator`]).
    Reached { now: Timestamp, timed: bool },
}

/// [`sleep_until`], also telling when it woke and whether that measures the timer.
fn sleep_phase(
    clock: &Clock,
    deadline: Timestamp,
    ctl: &mut dyn SessionControl,
    poller: &mut StopPoller,
) -> Slept {
    let mut timed = false;
    loop {
        let (now, _) = clock.now();
        if poller.should_stop(ctl, now) {
            return Slept::Stop;
        }
        if now >= deadline {
            return Slept::Reached { now, timed };
        }
        timed = false;
        let mut until = deadline;
        if let Some(t) = poller.recheck_at() {
            until = until.min(t.max(now));
        }
        let coarse_end = deadline.saturating_sub(FINAL_APPROACH).min(until);
        if coarse_end > now
            && let Some(fd) = poller.fd(&*ctl, now)
        {
            // One wait for the control's news and the time: on the timerfd, to `until`
            // itself (one wake-up where a poll timeout and a final sleep took two);
            // without one, a poll timeout to FINAL_APPROACH before the deadline. Nearer
            // deadlines (every wait at 500 pps and up) keep the plain clock_nanosleep
            // below, whose wake-up path is the shortest.
            let ctl_fd = PollFd::new(fd, PollFlags::POLLIN);
            let (mut both, mut one);
            let (fds, timeout): (&mut [PollFd<'_>], _) = match poller.timer_at(clock, until) {
                Some(timer) => {
                    both = [ctl_fd, PollFd::new(timer.as_fd(), PollFlags::POLLIN)];
                    (&mut both, None)
                }
                None => {
                    one = [ctl_fd];
                    let left = num64_to_duration(coarse_end.saturating_sub(now));
                    (&mut one, Some(TimeSpec::from_duration(left)))
                }
            };
            match ppoll(fds, timeout, None) {
                Ok(_) if is_ready(&fds[0]) => poller.signal(),
                // The timerfd fired: a lateness sample if `until` was the deadline.
                Ok(_) => timed = fds.get(1).is_some_and(is_ready) && until == deadline,
                Err(Errno::EINTR) => {}
                // Cannot happen with valid descriptors; ask the control instead of
                // spinning on a broken one.
                Err(_) => poller.signal(),
            }
            continue;
        }
        timed = sleep_abs(clock, now, until) && until == deadline;
    }
}

/// One `clock_nanosleep(TIMER_ABSTIME)` until `until` (or an interruption). True when it
/// slept to the end (not interrupted, no fallback).
fn sleep_abs(clock: &Clock, now: Timestamp, until: Timestamp) -> bool {
    let ts = timespec_from_timestamp(clock.to_realtime(until));
    match clock_nanosleep(
        ClockId::CLOCK_REALTIME,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    ) {
        Ok(_) => true,
        Err(Errno::EINTR) => false,
        // Cannot happen with a valid timespec; fall back to a relative sleep so a
        // broken clock never turns into a busy loop.
        Err(_) => {
            std::thread::sleep(num64_to_duration(until.saturating_sub(now)));
            false
        }
    }
}

/// Waits until `deadline` as precisely as the bounded spin allows (module comment,
/// "Hybrid pacing"): sleeps until `deadline − margin`, then polls the clock, yielding the
/// CPU at every turn, until the deadline. `gap` is the time since the previous send time
/// (it bounds the margin). Returns `true` if the control asked to stop.
pub(crate) fn pace_until(
    clock: &Clock,
    deadline: Timestamp,
    gap: Num64,
    ctl: &mut dyn SessionControl,
    poller: &mut StopPoller,
    est: &mut MarginEstimator,
) -> bool {
    let margin = ns_to_num64(est.margin_ns(num64_to_ns(gap)));
    loop {
        let target = deadline.saturating_sub(margin);
        match sleep_phase(clock, target, ctl, poller) {
            Slept::Stop => return true,
            Slept::Reached { now, timed } => {
                if timed {
                    est.record(num64_to_ns(now.saturating_sub(target)));
                }
                // Woke at or past the deadline: send at once, no spin.
                if now >= deadline {
                    return false;
                }
                let reached = spin_until(clock, deadline, margin, est);
                est.spin_done();
                if reached {
                    return false;
                }
                // The clock went back while spinning: sleep again.
            }
        }
    }
}

/// The last stretch: reads the clock until `deadline`, with a `sched_yield` per turn so
/// any other runnable thread on this CPU runs first. True at the deadline; false as soon
/// as the deadline is more than `margin` away (the clock stepped back, say a change of
/// `CLOCK_REALTIME`): the caller then sleeps again instead of spinning, so a clock jump
/// never turns this into a long busy loop. The same [`Clock`] as the sender's timestamps,
/// so a debugging offset moves the deadline and the readings alike.
fn spin_until(
    clock: &Clock,
    deadline: Timestamp,
    margin: Num64,
    est: &mut MarginEstimator,
) -> bool {
    let mut before = clock.from_realtime(realtime_raw());
    loop {
        if before >= deadline {
            return true;
        }
        if deadline.saturating_sub(before) > margin {
            return false;
        }
        std::hint::spin_loop();
        if est.may_yield() {
            std::thread::yield_now();
        }
        let now = clock.from_realtime(realtime_raw());
        if num64_to_ns(now.saturating_sub(before)) > SLOW_YIELD_NS {
            est.slow_yield();
        }
        before = now;
    }
}

fn num64_to_ns(v: Num64) -> u64 {
    u64::try_from(num64_to_duration(v).as_nanos()).unwrap_or(u64::MAX)
}

fn ns_to_num64(ns: u64) -> Num64 {
    duration_to_num64(std::time::Duration::from_nanos(ns))
}

/// Wake-up lateness samples kept (the last this many timed sleeps).
const WINDOW: usize = 256;
/// The quantile is recomputed after this many new samples (amortises the selection).
const UPDATE_EVERY: u32 = 16;
/// Below this many samples the margin is [`DEFAULT_MARGIN_NS`].
const MIN_SAMPLES: usize = 16;
/// The tail left out of the quantile, per mille: 10 = p99 (the 3rd-latest of 256).
const TAIL_PER_MILLE: usize = 10;
/// Added to the quantile: covers the clock read after the wake and the sampling error of
/// a p99 taken from 256 samples.
const HEADROOM_NS: u64 = 2_000;
/// Margin before the first samples: above this VM's typical p95 lateness (~50 µs).
pub(crate) const DEFAULT_MARGIN_NS: u64 = 50_000;
/// A turn of the spin loop longer than this means `sched_yield` handed the CPU to another
/// runnable thread for its whole slice (ms with a CPU-bound neighbour, measured).
const SLOW_YIELD_NS: u64 = 20_000;
/// After a slow yield, this many spins (packets) do not yield.
const NO_YIELD_SPINS: u32 = 1024;
/// Never spin longer than this per packet, whatever the sleeps do.
pub(crate) const MAX_MARGIN_NS: u64 = 100_000;
/// When the p99 wake-up lateness passes this, the CPU is overloaded (the idle VM's p99 is
/// 45-190 µs): no spin of at most [`MAX_MARGIN_NS`] can hold the schedule's tail, and the
/// spin would take CPU the machine's other sessions need, so the margin is 0 until the
/// lateness comes back down. At 1,000 sessions started at once on 2 vCPUs the spin was
/// half of every owping sender's CPU (perf).
const OVERLOAD_NS: u64 = 400_000;
/// Never spin more than 1/GAP_DIVISOR of the time since the previous send.
pub(crate) const GAP_DIVISOR: u64 = 4;

/// Learns how long before a send time the sender must stop sleeping: a high quantile of
/// how late this thread's recent absolute sleeps woke (module comment, "Hybrid pacing").
#[derive(Clone, Debug)]
pub(crate) struct MarginEstimator {
    /// Lateness in ns (saturated to `u32`: 4.29 s is as good as forever), a ring.
    samples: [u32; WINDOW],
    len: usize,
    next: usize,
    since_update: u32,
    /// The quantile plus headroom, clamped to [`MAX_MARGIN_NS`].
    margin_ns: u64,
    /// Spins left without `sched_yield` (after a slow one, see [`SLOW_YIELD_NS`]).
    no_yield_spins: u32,
}

impl Default for MarginEstimator {
    fn default() -> MarginEstimator {
        MarginEstimator::new()
    }
}

impl MarginEstimator {
    pub(crate) fn new() -> MarginEstimator {
        MarginEstimator {
            samples: [0; WINDOW],
            len: 0,
            next: 0,
            since_update: 0,
            margin_ns: DEFAULT_MARGIN_NS,
            no_yield_spins: 0,
        }
    }

    /// Whether the spin may `sched_yield` (no slow yield in the last [`NO_YIELD_SPINS`]).
    pub(crate) fn may_yield(&self) -> bool {
        self.no_yield_spins == 0
    }

    /// A turn of the spin took longer than [`SLOW_YIELD_NS`]: another thread took the CPU.
    pub(crate) fn slow_yield(&mut self) {
        self.no_yield_spins = NO_YIELD_SPINS;
    }

    /// One spin (one packet) is over.
    pub(crate) fn spin_done(&mut self) {
        self.no_yield_spins = self.no_yield_spins.saturating_sub(1);
    }

    /// One timed sleep woke `late_ns` after its deadline.
    pub(crate) fn record(&mut self, late_ns: u64) {
        let v = u32::try_from(late_ns).unwrap_or(u32::MAX);
        if let Some(slot) = self.samples.get_mut(self.next) {
            *slot = v;
        }
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        self.since_update += 1;
        if self.len >= MIN_SAMPLES && (self.since_update >= UPDATE_EVERY || self.len == MIN_SAMPLES)
        {
            self.since_update = 0;
            let q = self.quantile_ns();
            self.margin_ns = if q > OVERLOAD_NS {
                0
            } else {
                q.saturating_add(HEADROOM_NS).min(MAX_MARGIN_NS)
            };
        }
    }

    /// The `1 − TAIL_PER_MILLE/1000` quantile of the samples (nearest rank).
    fn quantile_ns(&self) -> u64 {
        let mut v = self.samples;
        match v.get_mut(..self.len) {
            Some(window) if !window.is_empty() => {
                let tail = (window.len() * TAIL_PER_MILLE).div_ceil(1000).max(1);
                let idx = window.len().saturating_sub(tail);
                let (_, q, _) = window.select_nth_unstable(idx);
                u64::from(*q)
            }
            _ => DEFAULT_MARGIN_NS,
        }
    }

    /// The margin for a send `gap_ns` after the previous one: the learnt margin, at most
    /// `gap_ns / GAP_DIVISOR`.
    pub(crate) fn margin_ns(&self, gap_ns: u64) -> u64 {
        self.margin_ns.min(gap_ns / GAP_DIVISOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its asks; stops at the `stop_at`-th. Has a descriptor (a pipe's read end).
    struct Counting {
        asks: u32,
        stop_at: u32,
        fd: std::io::PipeReader,
    }

    impl SessionControl for Counting {
        fn poll_stop(&mut self) -> bool {
            self.asks += 1;
            self.asks >= self.stop_at
        }
        fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
            use std::os::fd::AsFd;
            Some(self.fd.as_fd())
        }
    }

    fn counting(stop_at: u32) -> Counting {
        let (fd, _) = std::io::pipe().unwrap();
        Counting {
            asks: 0,
            stop_at,
            fd,
        }
    }

    #[test]
    fn with_a_descriptor_only_the_start_and_signals_ask() {
        let mut ctl = counting(3);
        let mut p = StopPoller::new(true);
        let t = Num64(1 << 40);
        assert!(p.fd(&ctl, t).is_some());
        assert!(!p.should_stop(&mut ctl, t));
        for i in 0..100 {
            assert!(!p.should_stop(&mut ctl, t.wrapping_add(Num64(i << 32))));
        }
        assert_eq!(ctl.asks, 1);
        // A readable descriptor that was not a stop: asked once, then backed off.
        p.signal();
        assert!(!p.should_stop(&mut ctl, t));
        assert_eq!(ctl.asks, 2);
        assert!(
            p.fd(&ctl, t).is_none(),
            "descriptor left out while backing off"
        );
        assert_eq!(p.recheck_at(), Some(t.wrapping_add(BACKOFF_SLICE)));
        assert!(!p.should_stop(&mut ctl, t.wrapping_add(Num64(1))));
        assert_eq!(ctl.asks, 2);
        assert!(p.fd(&ctl, t.wrapping_add(BACKOFF_SLICE)).is_some());
        assert!(p.should_stop(&mut ctl, t.wrapping_add(BACKOFF_SLICE)));
        assert_eq!(ctl.asks, 3);
    }

    #[test]
    fn without_a_descriptor_every_wakeup_asks() {
        let mut ctl = counting(u32::MAX);
        let mut p = StopPoller::new(false);
        let t = Num64(1 << 40);
        assert!(p.fd(&ctl, t).is_none(), "not usable: the fallback");
        for _ in 0..5 {
            assert!(!p.should_stop(&mut ctl, t));
        }
        assert_eq!(ctl.asks, 5);
        assert_eq!(p.recheck_at(), Some(t.wrapping_add(FALLBACK_SLICE)));
    }

    const US: u64 = 1_000;

    fn fed(values: impl IntoIterator<Item = u64>) -> MarginEstimator {
        let mut e = MarginEstimator::new();
        for v in values {
            e.record(v);
        }
        e
    }

    #[test]
    fn default_margin_until_enough_samples() {
        let e = fed(std::iter::repeat_n(10 * US, MIN_SAMPLES - 1));
        assert_eq!(e.margin_ns(u64::MAX), DEFAULT_MARGIN_NS);
        let e = fed(std::iter::repeat_n(10 * US, MIN_SAMPLES));
        assert_eq!(e.margin_ns(u64::MAX), 10 * US + HEADROOM_NS);
    }

    #[test]
    fn margin_is_the_p99_plus_headroom() {
        // 100 ns .. 25.6 µs in a scrambled order: nearest-rank p99 of 256 is the 254th
        // smallest (3 values are above it).
        let e = fed((0..256u64).map(|i| ((i * 97) % 256 + 1) * 100));
        assert_eq!(e.margin_ns(u64::MAX), 25_400 + HEADROOM_NS);
        // Constant wakes: that value.
        let e = fed(std::iter::repeat_n(20 * US, 256));
        assert_eq!(e.margin_ns(u64::MAX), 22 * US);
    }

    #[test]
    fn clamped_to_the_cap_and_to_a_quarter_of_the_gap() {
        let e = fed(std::iter::repeat_n(300 * US, 64));
        assert_eq!(e.margin_ns(u64::MAX), MAX_MARGIN_NS);
        // Absurd lateness (a suspended machine) saturates instead of overflowing, and
        // reads as an overloaded CPU (no spin).
        let e = fed(std::iter::repeat_n(u64::MAX, 64));
        assert_eq!(e.margin_ns(u64::MAX), 0);
        let e = fed(std::iter::repeat_n(60 * US, 256));
        assert_eq!(
            e.margin_ns(1_000 * US),
            62 * US,
            "1 kpps: the learnt margin"
        );
        assert_eq!(
            e.margin_ns(100 * US),
            25 * US,
            "10 kpps: a quarter of 100 µs"
        );
        assert_eq!(e.margin_ns(0), 0, "back-to-back: no spin");
    }

    #[test]
    fn adapts_to_a_burst_of_late_wakes_and_back() {
        let mut e = fed(std::iter::repeat_n(20 * US, 256));
        // Two outliers in 256 are the tail p99 leaves out.
        for _ in 0..2 {
            e.record(5_000 * US);
        }
        for _ in 0..14 {
            e.record(20 * US);
        }
        assert_eq!(e.margin_ns(u64::MAX), 22 * US);
        // A burst: within UPDATE_EVERY samples the margin follows it.
        for _ in 0..UPDATE_EVERY {
            e.record(80 * US);
        }
        assert_eq!(e.margin_ns(u64::MAX), 82 * US);
        // Once the burst has left the window, back down.
        for _ in 0..WINDOW {
            e.record(20 * US);
        }
        assert_eq!(e.margin_ns(u64::MAX), 22 * US);
    }

    #[test]
    fn an_overloaded_cpu_turns_the_spin_off_until_it_recovers() {
        let gap = 100_000_000; // 10 pps: the gap never binds
        let mut e = MarginEstimator::new();
        for _ in 0..WINDOW {
            e.record(2_000_000);
        }
        assert_eq!(e.margin_ns(gap), 0, "wakes 2 ms late: sleep only");
        for _ in 0..WINDOW {
            e.record(10_000);
        }
        assert_eq!(e.margin_ns(gap), 10_000 + HEADROOM_NS);
        // Just under the threshold the cap applies, as before.
        for _ in 0..WINDOW {
            e.record(OVERLOAD_NS);
        }
        assert_eq!(e.margin_ns(gap), MAX_MARGIN_NS);
    }

    #[test]
    fn a_slow_yield_stops_yielding_for_a_while() {
        let mut e = MarginEstimator::new();
        assert!(e.may_yield());
        e.slow_yield();
        for _ in 0..NO_YIELD_SPINS {
            assert!(!e.may_yield());
            e.spin_done();
        }
        assert!(e.may_yield());
        e.spin_done();
        assert!(e.may_yield(), "does not wrap below zero");
    }

    #[test]
    fn spin_gives_up_when_the_deadline_is_beyond_the_margin() {
        // As after a backwards clock step: the caller must sleep, not spin.
        let clock = Clock::new(None, 0.0);
        let mut e = MarginEstimator::new();
        let far = clock.now().0.wrapping_add(Num64::from_secs_f64(1.0));
        assert!(!spin_until(&clock, far, Num64::from_micros(50), &mut e));
        let past = clock.now().0.saturating_sub(Num64::from_secs_f64(1.0));
        assert!(spin_until(&clock, past, Num64::from_micros(50), &mut e));
    }

    #[test]
    fn pace_reaches_the_deadline_on_an_offset_clock() {
        // The debugging offset moves the deadline and the readings alike; the wrong time
        // scale would either return early or loop without end.
        let clock = Clock::new(None, -12_345.5);
        let mut ctl = super::super::Never;
        let mut p = StopPoller::new(false);
        let mut e = MarginEstimator::new();
        let mut deadline = clock.now().0;
        for _ in 0..20 {
            deadline = deadline.wrapping_add(Num64::from_micros(300));
            let gap = Num64::from_micros(300);
            assert!(!pace_until(&clock, deadline, gap, &mut ctl, &mut p, &mut e));
            assert!(clock.now().0 >= deadline);
        }
        // Past deadlines return at once (no sleep, no spin).
        let past = clock.now().0.saturating_sub(Num64::from_secs_f64(1.0));
        assert!(!pace_until(
            &clock,
            past,
            Num64::ZERO,
            &mut ctl,
            &mut p,
            &mut e
        ));
    }

    #[test]
    fn pace_honours_a_stop() {
        let clock = Clock::new(None, 0.0);
        let mut ctl = counting(1);
        let mut p = StopPoller::new(true);
        let mut e = MarginEstimator::new();
        let far = clock.now().0.wrapping_add(Num64::from_secs_f64(3600.0));
        assert!(pace_until(
            &clock,
            far,
            Num64::MAX,
            &mut ctl,
            &mut p,
            &mut e
        ));
        assert_eq!(ctl.asks, 1);
    }

    #[test]
    fn with_a_descriptor_a_far_deadline_is_one_wait_on_the_timerfd() {
        let clock = Clock::new(None, 0.0);
        let mut ctl = counting(u32::MAX);
        let mut p = StopPoller::new(true);
        let deadline = clock.now().0.wrapping_add(Num64::from_secs_f64(0.010));
        match sleep_phase(&clock, deadline, &mut ctl, &mut p) {
            Slept::Reached { now, timed } => {
                assert!(now >= deadline);
                assert!(timed, "woken by the timer: a lateness sample");
            }
            Slept::Stop => panic!("nobody asked to stop"),
        }
        assert!(matches!(p.timer, Some(Some(_))), "the timerfd was used");
    }

    #[test]
    fn with_a_descriptor_the_control_ends_the_wait_at_once() {
        let clock = Clock::new(None, 0.0);
        let (fd, mut w) = std::io::pipe().unwrap();
        let mut ctl = Counting {
            asks: 0,
            stop_at: 2,
            fd,
        };
        let mut p = StopPoller::new(true);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::io::Write::write_all(&mut w, b"x").unwrap();
        });
        // An hour away: only the descriptor can end this wait (else the test hangs).
        let far = clock.now().0.wrapping_add(Num64::from_secs_f64(3600.0));
        assert_eq!(sleep_phase(&clock, far, &mut ctl, &mut p), Slept::Stop);
        assert_eq!(
            ctl.asks, 2,
            "asked at the start, then when the descriptor spoke"
        );
        writer.join().unwrap();
    }
}
