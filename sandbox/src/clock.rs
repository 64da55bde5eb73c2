//! The kernel clock discipline status (adjtimex(2) with `modes = 0`, read only), used for
//! the S bit and the error estimate (protocol.md §4.3, RFC 4656 §4.1.2).

/// What the kernel says about the system clock's synchronisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelClock {
    /// `STA_UNSYNC` is clear: an NTP daemon (ntpd or chrony) disciplines the clock.
    pub synchronized: bool,
    /// Estimated error in microseconds (`esterror`).
    pub esterror_us: u64,
    /// Current offset in nanoseconds (`offset`, which is in µs unless `STA_NANO` is set).
    pub offset_ns: i64,
}

/// Reads the clock status; `None` when adjtimex fails (e.g. forbidden in a container).
pub fn kernel_clock() -> Option<KernelClock> {
    // SAFETY: timex is plain old data; all-zero is a valid value and `modes = 0` asks
    // adjtimex to only read.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the duration of the call;
    // with modes = 0 the kernel only writes into it.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(from_timex(tx.status, tx.esterror, tx.offset))
}

/// The one warning a program gives at start when the clock is not known to be
/// synchronised (the reference warns likewise): `None` when the kernel says an NTP
/// daemon disciplines it. An unsynchronised clock is never a refusal: timestamps carry
/// S=0 (RFC 4656 §4.1.2), and the delays are only as good as the two clocks' offset.
pub fn clock_warning() -> Option<&'static str> {
    clock_warning_for(kernel_clock())
}

fn clock_warning_for(clock: Option<KernelClock>) -> Option<&'static str> {
    match clock {
        Some(c) if c.synchronized => None,
        Some(_) => Some(
            "NTP: clock not synchronized (kernel STA_UNSYNC): one-way delays are likely off by the clocks' offset",
        ),
        None => Some(
            "NTP: clock synchronization unknown (adjtimex failed): timestamps are marked unsynchronized",
        ),
    }
}

/// The pure part of [`kernel_clock`]: interprets the fields.
fn from_timex(status: libc::c_int, esterror: libc::c_long, offset: libc::c_long) -> KernelClock {
    // c_long is i64 on the 64-bit targets owampd runs on, i32 on 32-bit ones.
    #[allow(clippy::useless_conversion)]
    let offset = i64::from(offset);
    let offset_ns = if status & libc::STA_NANO != 0 {
        offset
    } else {
        offset.saturating_mul(1000)
    };
    KernelClock {
        synchronized: status & libc::STA_UNSYNC == 0,
        esterror_us: u64::try_from(esterror).unwrap_or(0),
        offset_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsync_bit_decides_synchronized() {
        assert!(!from_timex(libc::STA_UNSYNC, 5, 0).synchronized);
        assert!(from_timex(libc::STA_PLL, 5, 0).synchronized);
    }

    #[test]
    fn warning_unless_synchronized() {
        let sync = from_timex(libc::STA_PLL, 5, 0);
        assert_eq!(clock_warning_for(Some(sync)), None);
        let unsync = from_timex(libc::STA_UNSYNC, 5, 0);
        assert!(clock_warning_for(Some(unsync)).is_some_and(|w| w.contains("STA_UNSYNC")));
        assert!(clock_warning_for(None).is_some_and(|w| w.contains("unknown")));
        assert_eq!(
            clock_warning().is_none(),
            kernel_clock().is_some_and(|c| c.synchronized)
        );
    }

    #[test]
    fn offset_units_follow_sta_nano() {
        assert_eq!(from_timex(0, 0, -7).offset_ns, -7000);
        assert_eq!(from_timex(libc::STA_NANO, 0, -7).offset_ns, -7);
    }

    #[test]
    fn negative_esterror_is_zero() {
        assert_eq!(from_timex(0, -1, 0).esterror_us, 0);
        assert_eq!(from_timex(0, 16000, 0).esterror_us, 16000);
    }

    #[test]
    fn reads_the_running_kernel() {
        // adjtimex with modes=0 needs no privilege; a container may still forbid it.
        if let Some(k) = kernel_clock() {
            assert!(k.esterror_us < 1 << 40, "{k:?}");
        } else {
            eprintln!("adjtimex unavailable here");
        }
    }
}
