//! The sender loop (protocol.md §3.3).

use super::wait::{StopPoller, sleep_until};
use super::{SessionControl, TestSocket};
use crate::packet::PacketFormat;
use crate::schedule::Schedule;
use crate::time::{Clock, duration_to_num64};
use crate::types::{Num64, SkipRange};
use std::io;
use std::time::Duration;

/// What the sender needs besides its socket, clock, format and schedule.
#[derive(Clone, Copy, Debug)]
pub struct SenderParams {
    pub num_packets: u32,
    /// Request-Session Timeout: packets later than this are skipped, not sent.
    pub timeout: Num64,
    /// Extra wait after the last packet's `sched + Timeout` (the reference's enddelay,
    /// 1 s by default) before the session counts as done.
    pub end_delay: Duration,
}

/// The sender's half of Stop-Sessions (RFC 4656 §3.8) and a few counters for logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderReport {
    /// The seqno that would have been sent next: `num_packets` when complete.
    pub next_seqno: u32,
    /// Seqnos deliberately not sent because they were more than Timeout late (merged).
    pub skips: Vec<SkipRange>,
    pub sent: u64,
    /// Send errors that were ignored, as the reference does (protocol.md §3.3).
    pub send_errors: u64,
    pub stopped: bool,
}

/// Immediate retries of one packet on ENOBUFS before it counts as a send error.
const MAX_ENOBUFS_RETRIES: u32 = 10_000;

/// Adds `seq` to the skip ranges, merging with the last range when consecutive.
fn add_skip(skips: &mut Vec<SkipRange>, seq: u32) {
    match skips.last_mut() {
        Some(r) if r.last.checked_add(1) == Some(seq) => r.last = seq,
        _ => skips.push(SkipRange {
            first: seq,
            last: seq,
        }),
    }
}

/// Errors after which sending cannot go on (protocol.md §3.3: EBADF, EACCES, ENOTSOCK, EFAULT;
/// EAGAIN too for the reference's blocking sockets, here handled by the socket itself).
fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno) if [nix::libc::EBADF, nix::libc::EACCES, nix::libc::ENOTSOCK, nix::libc::EFAULT]
            .contains(&libc_errno)
    )
}

/// Runs a sending session to its end (or until stopped): waits for each packet's
/// scheduled time, skips packets more than Timeout late, timestamps immediately before
/// sending, then waits `sched(last) + Timeout + end_delay`.
pub fn run_sender(
    sock: &mut dyn TestSocket,
    clock: &Clock,
    fmt: &mut PacketFormat,
    sched: &mut Schedule,
    params: SenderParams,
    ctl: &mut dyn SessionControl,
) -> io::Result<SenderReport> {
    sched.reset();
    let mut poller = StopPoller::new(ctl.wait_fd().is_some());
    let mut report = SenderReport::default();
    let mut buf = vec![0u8; fmt.len()];
    let mut last_sched = None;
    let n = params.num_packets.min(sched.num_packets());
    for seq in 0..n {
        let Some(t) = sched.next_send_time() else {
            break;
        };
        last_sched = Some(t);
        // Everything but the timestamp is done before the wait.
        fmt.prepare(seq, &mut buf).map_err(io::Error::other)?;
        if sleep_until(clock, t, ctl, &mut poller) {
            report.stopped = true;
            report.next_seqno = seq;
            return Ok(report);
        }
        let (now, err) = clock.now();
        if now.0.saturating_sub(t.0) > params.timeout.0 {
            add_skip(&mut report.skips, seq);
            continue;
        }
        fmt.stamp(&mut buf, now, err).map_err(io::Error::other)?;
        let mut retries = 0u32;
        loop {
            match sock.send(&buf) {
                Ok(()) => {
                    report.sent += 1;
                    break;
                }
                // The interface queue is full: retry at once, as the reference does.
                // Bounded, so a wedged interface cannot hold the loop forever.
                Err(e)
                    if e.raw_os_error() == Some(nix::libc::ENOBUFS)
                        && retries < MAX_ENOBUFS_RETRIES =>
                {
                    retries += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fatal(&e) => return Err(e),
                Err(_) => {
                    report.send_errors += 1;
                    break;
                }
            }
        }
    }
    report.next_seqno = n;
    if let Some(t) = last_sched {
        let end = t
            .wrapping_add(params.timeout)
            .wrapping_add(duration_to_num64(params.end_delay));
        report.stopped = sleep_until(clock, end, ctl, &mut poller);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_merge_when_consecutive() {
        let mut s = Vec::new();
        for q in [1, 2, 3, 5, 7, 8] {
            add_skip(&mut s, q);
        }
        let r = |first, last| SkipRange { first, last };
        assert_eq!(s, [r(1, 3), r(5, 5), r(7, 8)]);
    }
}
