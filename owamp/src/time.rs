//! The clock every timestamp comes from (protocol.md §4.3).
//!
//! Time is `CLOCK_REALTIME` (nanosecond resolution, better than the reference's
//! `gettimeofday`), shifted by the `OWAMP_DEBUG_TIMEOFFSET` debugging offset (which
//! `config::debug_time_offset` reads for every program). Whether the
//! clock is synchronised, and how well, comes from the kernel's NTP state (`adjtimex`).
//! Reading that needs `unsafe`, which lives in crate `sandbox`; the binary injects it here
//! as a plain function pointer so this crate stays `forbid(unsafe_code)`.
//!
//! ## The kernel's NTP `offset` is *not* added
//!
//! The reference adds `adjtimex().offset` to every timestamp (protocol.md §4.3). We deliberately
//! do not: on Linux the NTP PLL (ntpd) and chrony's `ADJ_SETOFFSET`/frequency steering
//! already slew `CLOCK_REALTIME` itself, and `offset` is only the part of the correction
//! the kernel has not yet applied. Adding it would (a) jump whenever the daemon updates
//! the offset, (b) make user-space timestamps disagree with the kernel's `SO_TIMESTAMPNS`
//! receive timestamps, which are plain `CLOCK_REALTIME`, and (c) change nothing that
//! matters: the remaining offset is within `esterror`, which we do report. The status
//! still carries `offset_ns` so that a caller can log it.

use crate::types::{ErrorEstimate, Num64, Timestamp};
use nix::sys::time::TimeSpec;
use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The kernel's NTP state, as `adjtimex(2)` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelClockStatus {
    /// `STA_UNSYNC` is clear: something (ntpd, chrony) disciplines the clock.
    pub synchronized: bool,
    /// `esterror`, microseconds.
    pub esterror_us: u64,
    /// The remaining `offset`, nanoseconds (informational, see the module comment).
    pub offset_ns: i64,
}

/// Where the kernel status comes from: `sandbox::kernel_clock` in the binaries, a fake in
/// tests, `None` where nothing is available (then every estimate is unsynchronised).
pub type StatusProvider = fn() -> Option<KernelClockStatus>;

/// How often the kernel status is re-read: it changes slowly, and `now()` is on the
/// per-packet hot path.
const STATUS_REFRESH: Num64 = Num64(1 << 32);

/// The clock: `now()` gives a timestamp and its error estimate.
///
/// Not `Sync` (it caches the kernel status in a `Cell`); each thread clones its own.
#[derive(Clone, Debug)]
pub struct Clock {
    status: Option<StatusProvider>,
    /// The debugging offset in 2^-32 s units, signed; added with wrap-around.
    offset: i64,
    debug_offset_secs: f64,
    cached: Cell<ErrorEstimate>,
    /// Raw (un-offset) time at which the cache is stale; 0 = never read.
    refresh_at: Cell<u64>,
}

impl Clock {
    /// A clock with an explicit debugging offset in seconds.
    pub fn new(status: Option<StatusProvider>, debug_offset: f64) -> Clock {
        Clock {
            status,
            offset: offset_units(debug_offset),
            debug_offset_secs: debug_offset,
            cached: Cell::new(ErrorEstimate::UNSYNC),
            refresh_at: Cell::new(0),
        }
    }

    /// The debugging offset, seconds.
    pub fn debug_offset(&self) -> f64 {
        self.debug_offset_secs
    }

    /// Now, with the current error estimate (protocol.md §4.3): S=1 and the kernel's `esterror`
    /// when synchronised, else [`ErrorEstimate::UNSYNC`] (`00 01`).
    pub fn now(&self) -> (Timestamp, ErrorEstimate) {
        let raw = realtime_raw();
        let err = self.estimate_at(raw);
        (self.apply_offset(raw), err)
    }

    /// The current error estimate alone (for lost-packet records' receive estimate).
    pub fn error_estimate(&self) -> ErrorEstimate {
        self.estimate_at(realtime_raw())
    }

    /// A kernel timestamp (`SO_TIMESTAMPNS`, plain `CLOCK_REALTIME`) on this clock's time
    /// scale: the debugging offset applied.
    pub fn adjust_kernel(&self, ts: &TimeSpec) -> Timestamp {
        self.apply_offset(timestamp_from_timespec(ts))
    }

    /// A raw `CLOCK_REALTIME` timestamp on this clock's time scale (the debugging offset
    /// applied): the inverse of [`Clock::to_realtime`].
    pub fn from_realtime(&self, raw: Timestamp) -> Timestamp {
        self.apply_offset(raw)
    }

    /// Converts an instant of this clock back to the raw `CLOCK_REALTIME` time scale (for
    /// absolute sleeps).
    pub fn to_realtime(&self, ts: Timestamp) -> Timestamp {
        Num64(ts.0.wrapping_sub(self.offset as u64))
    }

    fn apply_offset(&self, raw: Timestamp) -> Timestamp {
        apply_offset(raw, self.offset)
    }

    fn estimate_at(&self, raw: Timestamp) -> ErrorEstimate {
        let Some(provider) = self.status else {
            return ErrorEstimate::UNSYNC;
        };
        let due = self.refresh_at.get();
        // Refresh once a second, and also if the clock stepped back a lot (otherwise a
        // backwards step would freeze the cache).
        if due == 0 || raw.0 >= due || due - raw.0 > 2 * STATUS_REFRESH.0 {
            let est = match provider() {
                Some(s) if s.synchronized => ErrorEstimate::synchronized_from_micros(s.esterror_us),
                _ => ErrorEstimate::UNSYNC,
            };
            self.cached.set(est);
            self.refresh_at
                .set(raw.0.wrapping_add(STATUS_REFRESH.0).max(1));
        }
        self.cached.get()
    }
}

/// Now, shifted by a debugging offset of `debug_offset` seconds, without an error
/// estimate: for what needs only the time (a SID, a Stop-Sessions time).
pub fn now_with_offset(debug_offset: f64) -> Timestamp {
    apply_offset(realtime_raw(), offset_units(debug_offset))
}

/// A debugging offset in seconds as signed 2^-32 s units (non-finite means none).
fn offset_units(debug_offset: f64) -> i64 {
    if debug_offset.is_finite() {
        // `as` saturates; offsets beyond ±2^31 s are nonsense anyway.
        (debug_offset * 4_294_967_296.0) as i64
    } else {
        0
    }
}

/// `raw` moved by `offset` units, with wrap-around (NTP era arithmetic).
fn apply_offset(raw: Timestamp, offset: i64) -> Timestamp {
    Num64(raw.0.wrapping_add(offset as u64))
}

/// `CLOCK_REALTIME` as an NTP timestamp, without any offset.
pub fn realtime_raw() -> Timestamp {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME) {
        Ok(ts) => timestamp_from_timespec(&ts),
        // CLOCK_REALTIME cannot fail on Linux; keep a total fallback rather than a panic.
        Err(_) => timestamp_from_system_time(SystemTime::now()),
    }
}

/// A Unix `timespec` as an NTP timestamp (protocol.md §0: `(sec<<32) + ((nsec<<32)/1e9)`).
/// Times before 1970 clamp to the Unix epoch.
pub fn timestamp_from_timespec(ts: &TimeSpec) -> Timestamp {
    let sec = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let nsec = u32::try_from(ts.tv_nsec()).unwrap_or(0).min(999_999_999);
    Num64::from_unix(sec, nsec)
}

/// An NTP timestamp as a Unix `timespec` (`nsec = (frac*1e9)>>32`).
pub fn timespec_from_timestamp(ts: Timestamp) -> TimeSpec {
    let (sec, nsec) = ts.to_unix();
    TimeSpec::new(i64::try_from(sec).unwrap_or(i64::MAX), i64::from(nsec))
}

/// An NTP timestamp as a `SystemTime` (before 1970 clamps to the Unix epoch).
pub fn timestamp_to_system_time(ts: Timestamp) -> SystemTime {
    let (sec, nsec) = ts.to_unix();
    UNIX_EPOCH + Duration::new(sec, nsec)
}

/// A `SystemTime` as an NTP timestamp (before 1970 clamps to the Unix epoch).
pub fn timestamp_from_system_time(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Num64::from_unix(d.as_secs(), d.subsec_nanos())
}

/// A 32.32 interval as a `Duration` (exact to the nanosecond, truncated).
pub fn num64_to_duration(v: Num64) -> Duration {
    let (sec, nsec) = v.to_parts();
    Duration::new(sec, nsec)
}

/// A `Duration` as a 32.32 interval (seconds beyond 2^32 wrap, as Num64 does).
pub fn duration_to_num64(d: Duration) -> Num64 {
    Num64::from_parts(d.as_secs(), d.subsec_nanos())
}
