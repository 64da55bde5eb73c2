//! The clock: offsets, error estimates, conversions.

use nix::sys::time::TimeSpec;
use owamp::time::{
    Clock, KernelClockStatus, duration_to_num64, now_with_offset, num64_to_duration,
    timespec_from_timestamp, timestamp_from_system_time, timestamp_from_timespec,
    timestamp_to_system_time,
};
use owamp::{ErrorEstimate, NTP_UNIX_OFFSET, Num64};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

fn synced() -> Option<KernelClockStatus> {
    Some(KernelClockStatus {
        synchronized: true,
        esterror_us: 1,
        offset_ns: 0,
    })
}

fn unsynced() -> Option<KernelClockStatus> {
    Some(KernelClockStatus {
        synchronized: false,
        esterror_us: 1,
        offset_ns: 0,
    })
}

static CALLS: AtomicUsize = AtomicUsize::new(0);
fn counting() -> Option<KernelClockStatus> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    synced()
}

#[test]
fn estimates_follow_the_kernel_status() {
    assert_eq!(
        Clock::new(Some(synced), 0.0).now().1.to_bytes(),
        [0x85, 0x87]
    );
    assert_eq!(
        Clock::new(Some(unsynced), 0.0).now().1,
        ErrorEstimate::UNSYNC
    );
    assert_eq!(Clock::new(None, 0.0).now().1, ErrorEstimate::UNSYNC);
    assert_eq!(
        Clock::new(Some(|| None), 0.0).now().1,
        ErrorEstimate::UNSYNC
    );
}

#[test]
fn status_is_cached_not_read_per_call() {
    let c = Clock::new(Some(counting), 0.0);
    for _ in 0..10_000 {
        let _ = c.now();
    }
    // 10,000 calls take far less than a few seconds; at most a handful of reads.
    assert!(
        CALLS.load(Ordering::SeqCst) <= 5,
        "{}",
        CALLS.load(Ordering::SeqCst)
    );
    assert!(CALLS.load(Ordering::SeqCst) >= 1);
}

#[test]
fn debug_offset_shifts_now_and_kernel_stamps() {
    let plain = Clock::new(None, 0.0);
    let ahead = Clock::new(None, 1000.0);
    let behind = Clock::new(None, -1000.0);
    let p = plain.now().0;
    let a = ahead.now().0;
    let b = behind.now().0;
    let d = a.diff_secs(p);
    assert!((999.0..1001.0).contains(&d), "{d}");
    let d = p.diff_secs(b);
    assert!((999.0..1001.0).contains(&d), "{d}");
    let ts = TimeSpec::new(100, 0);
    assert_eq!(ahead.adjust_kernel(&ts), Num64::from_unix(1100, 0));
    assert_eq!(behind.adjust_kernel(&ts).to_unix().0, 0); // before 1970: to_unix clamps
    assert_eq!(
        ahead.to_realtime(ahead.adjust_kernel(&ts)),
        Num64::from_unix(100, 0)
    );
}

#[test]
fn now_with_offset_agrees_with_the_clock() {
    let clock = Clock::new(None, -2.5);
    let before = clock.now().0;
    let t = now_with_offset(-2.5);
    let after = clock.now().0;
    assert!(before <= t && t <= after, "{before:?} {t:?} {after:?}");
    let d = now_with_offset(0.0).diff_secs(t);
    assert!((2.4..2.6).contains(&d), "{d}");
}

#[test]
fn conversions() {
    let ts = TimeSpec::new(1, 500_000_000);
    let n = timestamp_from_timespec(&ts);
    assert_eq!(n, Num64(((NTP_UNIX_OFFSET + 1) << 32) | 0x8000_0000));
    assert_eq!(timespec_from_timestamp(n), ts);
    let st = UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000);
    let n = timestamp_from_system_time(st);
    assert_eq!(n.to_unix(), (1_700_000_000, 250_000_000));
    assert_eq!(timestamp_to_system_time(n), st);
    assert_eq!(
        timestamp_from_system_time(UNIX_EPOCH - Duration::from_secs(5)),
        Num64::from_unix(0, 0)
    );
    assert_eq!(
        timestamp_from_timespec(&TimeSpec::new(-5, 0)),
        Num64::from_unix(0, 0)
    );
    assert_eq!(
        num64_to_duration(Num64(3 << 31)),
        Duration::from_millis(1500)
    );
    assert_eq!(
        duration_to_num64(Duration::from_millis(1500)),
        Num64(3 << 31)
    );
    // now() is in this century.
    let (now, _) = Clock::new(None, 0.0).now();
    assert!(now.to_unix().0 > 1_700_000_000);
}
