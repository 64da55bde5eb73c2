//! The schedule slots of a Request-Session (RFC 4656 §3.5), read within a memory budget.
//!
//! A Request-Session announces its slot count in the first block, and the slots only
//! count once the HMAC after them is checked, so they are held until then, from a
//! client that may not have authenticated anything yet. What control holds for them is
//! bounded twice: one request is accepted with at most [`MAX_ACCEPTED_SLOTS`] slots
//! (1 MiB on the wire), and the requests of more than [`FREE_SLOTS`] slots (one read's
//! worth, which any connection may hold) draw on a process-wide budget of
//! [`SLOT_BUDGET`] slots while they are read. Past either bound the slots are
//! still read, to keep the connection in step, but checked and dropped as they come,
//! and the request is refused with Accept=4 or Accept=5 (RFC 4656 §3.5).

use super::*;
use owamp::wire::RawSlot;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most slots one accepted request may have. perfSONAR's owping uses one, and
/// schedules with thousands (up to 8,000 are used in practice) fit well within.
pub const MAX_ACCEPTED_SLOTS: u32 = 1 << 16;

/// Slots a request may have without drawing on the budget: what one read of a
/// connection holds anyway (64 KiB), so that clients holding the budget cannot make
/// ordinary requests wait.
pub const FREE_SLOTS: u32 = (crate::conn::MAX_READ / 16) as u32;

/// Most slots all connections of this process may hold while reading requests: 16 such
/// largest requests at once, 16 MiB as decoded.
pub const SLOT_BUDGET: usize = 1 << 20;

/// Slots held by requests being read, over all connections.
static SLOTS_HELD: AtomicUsize = AtomicUsize::new(0);

/// A share of [`SLOT_BUDGET`], returned when dropped.
#[derive(Debug)]
pub struct SlotShare(usize);

impl SlotShare {
    /// `n` slots of the process-wide budget, if that many are left.
    pub fn take(n: usize) -> Option<SlotShare> {
        SLOTS_HELD
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&t| t <= SLOT_BUDGET)
            })
            .ok()
            .map(|_| SlotShare(n))
    }
}

impl Drop for SlotShare {
    fn drop(&mut self) {
        SLOTS_HELD.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// The slots as read, or why they were not kept.
pub enum ReadSlots {
    Kept(Vec<RawSlot>, SlotShare),
    /// More than [`MAX_ACCEPTED_SLOTS`]: Accept=4.
    TooMany,
    /// The process-wide budget is spent by other requests being read: Accept=5.
    Busy,
}

impl ReadSlots {
    /// Reads `count` slots and their HMAC block.
    pub async fn read<S: AsyncRead + AsyncWrite + Unpin>(
        conn: &mut ControlConn<S>,
        count: u32,
    ) -> Result<ReadSlots, SessionError> {
        let count = count as usize;
        let mut outcome = if count > MAX_ACCEPTED_SLOTS as usize {
            ReadSlots::TooMany
        } else {
            let share = if count <= FREE_SLOTS as usize {
                Some(SlotShare(0))
            } else {
                SlotShare::take(count)
            };
            match share {
                Some(share) => ReadSlots::Kept(Vec::with_capacity(count), share),
                None => ReadSlots::Busy,
            }
        };
        let mut left = count;
        while left > 0 {
            let n = left.min(crate::conn::MAX_READ / 16);
            let bytes = conn.read_blocks(n, "Request-Session slots").await?;
            let slots =
                RequestSession::decode_slots(&bytes).map_err(wire_err("Request-Session"))?;
            if let ReadSlots::Kept(all, _) = &mut outcome {
                all.extend(slots);
            }
            left -= n;
        }
        conn.read_hmac("Request-Session slots").await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_budget_and_come_back() {
        // Other tests in this process may hold shares: work on what is left.
        let a = SlotShare::take(SLOT_BUDGET / 2);
        let b = SlotShare::take(SLOT_BUDGET / 2 + 1);
        assert!(
            a.is_none() || b.is_none(),
            "more than the budget was handed out"
        );
        assert!(SlotShare::take(SLOT_BUDGET + 1).is_none());
        drop((a, b));
    }
}
