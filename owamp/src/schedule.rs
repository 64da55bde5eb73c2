//! Send schedules (RFC 4656 §5 and Appendix B; protocol.md §5): the AES-counter uniform
//! generator keyed by the SID, the exponential deviate (Knuth's Algorithm S), and slots to
//! send times.

use crate::types::{Num64, Sid, Slot, SlotKind, Timestamp};
use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

/// `Q[k] = Σ_{i=1..k} ln2^i / i!` × 2^32 for k = 1..11 (protocol.md §5.2); `Q[0]` is unused.
const Q: [u64; 12] = [
    0,
    0xB172_17F8,
    0xEEF1_93F7,
    0xFD27_1862,
    0xFF9D_6DD0,
    0xFFF4_CFD0,
    0xFFFE_E819,
    0xFFFF_E7FF,
    0xFFFF_FE2B,
    0xFFFF_FFE0,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
];
const LN2: u64 = Q[1];

/// The uniform generator of protocol.md §5.1: AES-128 in counter mode keyed by the SID, each
/// 16-byte block giving four big-endian 32-bit fractions.
#[derive(Clone)]
pub struct UniformGenerator {
    cipher: Aes128,
    counter: u128,
    out: [u8; 16],
}

impl UniformGenerator {
    /// A generator at counter 0 keyed by `key` (the SID for a session; the Appendix B
    /// seeds for the vectors).
    pub fn new(key: &[u8; 16]) -> UniformGenerator {
        UniformGenerator {
            cipher: Aes128::new(GenericArray::from_slice(key)),
            counter: 0,
            out: [0; 16],
        }
    }

    /// Back to counter 0 (a schedule restarted from scratch).
    pub fn reset(&mut self) {
        self.counter = 0;
    }

    /// How many fractions have been drawn so far.
    pub fn counter(&self) -> u128 {
        self.counter
    }

    /// Continues from `counter` as if that many fractions had been drawn: when it points
    /// inside a block, that block is encrypted again, since its first fraction (which
    /// filled `out`) is not drawn again.
    pub fn seek(&mut self, counter: u128) {
        self.counter = counter;
        if counter & 3 != 0 {
            let mut block = GenericArray::from((counter & !3).to_be_bytes());
            self.cipher.encrypt_block(&mut block);
            self.out = block.into();
        }
    }

    /// The next uniform fraction in [0, 1) as a 32-bit value.
    pub fn next_u32(&mut self) -> u32 {
        let f = (self.counter & 3) as usize;
        if f == 0 {
            let mut block = GenericArray::from(self.counter.to_be_bytes());
            self.cipher.encrypt_block(&mut block);
            self.out = block.into();
        }
        self.counter = self.counter.wrapping_add(1);
        let o = &self.out;
        // f < 4, so 4f+3 < 16: the match keeps this free of panicking indexing.
        match f {
            0 => u32::from_be_bytes([o[0], o[1], o[2], o[3]]),
            1 => u32::from_be_bytes([o[4], o[5], o[6], o[7]]),
            2 => u32::from_be_bytes([o[8], o[9], o[10], o[11]]),
            _ => u32::from_be_bytes([o[12], o[13], o[14], o[15]]),
        }
    }
}

/// One exponential deviate with mean 1, as Num64 (RFC 4656 Appendix B, protocol.md §5.2).
pub fn exp_deviate(generator: &mut UniformGenerator) -> Num64 {
    let mut u = u64::from(generator.next_u32());
    let mut j: u64 = 0;
    // S1: count leading one bits (at most 32); shifted bits stay above bit 31.
    while u & 0x8000_0000 != 0 && j < 32 {
        u <<= 1;
        j += 1;
    }
    // Drop the first zero bit and keep the fraction.
    u = (u << 1) & 0xFFFF_FFFF;
    if u < LN2 {
        // S2
        return Num64(j << 32).fixed_mul(Num64(LN2)).wrapping_add(Num64(u));
    }
    // S3: least k >= 2 with u < Q[k]; k may end at 12.
    let mut k = 2usize;
    while k < 12 && Q.get(k).is_none_or(|&q| u >= q) {
        k += 1;
    }
    // S4: the minimum of k uniforms.
    let mut v = generator.next_u32();
    for _ in 2..=k {
        v = v.min(generator.next_u32());
    }
    Num64((j << 32) + u64::from(v)).fixed_mul(Num64(LN2))
}

/// The mean send rate of a slot list, packets per second: slots / Σ(mean or delay).
/// Infinite when every slot is zero (back-to-back), 0 with no slots. Used for sizing
/// socket buffers and for bandwidth policy.
pub fn packets_per_second(slots: &[Slot]) -> f64 {
    if slots.is_empty() {
        return 0.0;
    }
    let total: f64 = slots.iter().map(|s| s.param.as_secs_f64()).sum();
    if total <= 0.0 {
        return f64::INFINITY;
    }
    slots.len() as f64 / total
}

/// A saved position of a [`Schedule`] (see [`Schedule::cursor`]): 32 octets, so a
/// receiver can keep one every few dozen packets instead of every send time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleCursor {
    next: u32,
    last: Timestamp,
    counter: u128,
}

impl ScheduleCursor {
    /// The index [`Schedule::next_send_time`] returns next from this position.
    pub fn position(&self) -> u32 {
        self.next
    }
}

/// A session's send schedule: `sched(i) = StartTime + Σ_{k≤i} delta(k)` (protocol.md §5.3).
///
/// Computed incrementally; going backwards restarts from packet 0 with a fresh generator.
#[derive(Clone)]
pub struct Schedule {
    generator: UniformGenerator,
    start: Timestamp,
    slots: Vec<Slot>,
    num_packets: u32,
    /// Index of the packet `next_send_time` returns next.
    next: u32,
    /// `sched(next - 1)`, or the start time when `next == 0`.
    last: Timestamp,
}

impl Schedule {
    /// A schedule for `num_packets` packets over `slots` (keyed by the SID).
    ///
    /// With no slots at all (which `wire` validation refuses) every delta is zero.
    pub fn new(sid: Sid, start_time: Timestamp, slots: &[Slot], num_packets: u32) -> Schedule {
        // Only the first min(nslots, npackets) slots are ever used (protocol.md §5.3).
        let used = slots.len().min(num_packets as usize);
        Schedule {
            generator: UniformGenerator::new(&sid.0),
            start: start_time,
            slots: slots.iter().take(used).copied().collect(),
            num_packets,
            next: 0,
            last: start_time,
        }
    }

    pub fn num_packets(&self) -> u32 {
        self.num_packets
    }

    pub fn start_time(&self) -> Timestamp {
        self.start
    }

    /// Back to before packet 0.
    pub fn reset(&mut self) {
        self.generator.reset();
        self.next = 0;
        self.last = self.start;
    }

    /// The index `next_send_time` will return next.
    pub fn position(&self) -> u32 {
        self.next
    }

    /// The current position (packet index, last send time, generator counter), to come
    /// back to with [`Schedule::seek`] in O(1) instead of recomputing from packet 0.
    pub fn cursor(&self) -> ScheduleCursor {
        ScheduleCursor {
            next: self.next,
            last: self.last,
            counter: self.generator.counter(),
        }
    }

    /// Returns to a position saved by [`Schedule::cursor`] of this schedule (or of a
    /// clone of it). Costs at most one AES block.
    pub fn seek(&mut self, c: &ScheduleCursor) {
        self.generator.seek(c.counter);
        self.next = c.next;
        self.last = c.last;
    }

    /// The mean send rate of the slots used, packets per second (see
    /// [`packets_per_second`]).
    pub fn packets_per_second(&self) -> f64 {
        packets_per_second(&self.slots)
    }

    /// The send time of the next packet, `None` after the last one.
    pub fn next_send_time(&mut self) -> Option<Timestamp> {
        if self.next >= self.num_packets {
            return None;
        }
        let delta = match self.slots.get(self.next as usize % self.slots.len().max(1)) {
            Some(Slot {
                kind: SlotKind::Exponential,
                param,
            }) => exp_deviate(&mut self.generator).fixed_mul(*param),
            Some(Slot {
                kind: SlotKind::Fixed,
                param,
            }) => *param,
            None => Num64::ZERO,
        };
        self.last = self.last.wrapping_add(delta);
        self.next += 1;
        Some(self.last)
    }

    /// `sched(i)`, `None` when `i >= num_packets`. Cheap when `i` only grows; an earlier
    /// `i` restarts the schedule.
    pub fn send_time(&mut self, i: u32) -> Option<Timestamp> {
        if i >= self.num_packets {
            return None;
        }
        if self.next == i + 1 {
            return Some(self.last);
        }
        if self.next > i + 1 {
            self.reset();
        }
        let mut t = None;
        while self.next <= i {
            t = self.next_send_time();
        }
        t
    }
}

#[cfg(test)]
mod cursor_tests {
    use super::*;
    use proptest::prelude::*;

    fn slot(exp: bool, param: u64) -> Slot {
        Slot {
            kind: if exp {
                SlotKind::Exponential
            } else {
                SlotKind::Fixed
            },
            param: Num64(param),
        }
    }

    proptest! {
        /// Seeking to a saved cursor and going on gives exactly the send times a fresh
        /// schedule computes from packet 0, whatever the slots (exponential deviates draw
        /// a variable number of fractions, so cursors land anywhere inside a block).
        #[test]
        fn seek_matches_fresh_schedule(
            kinds in proptest::collection::vec((any::<bool>(), 1u64..(1 << 34)), 1..5),
            saves in proptest::collection::vec(0u32..600, 1..8),
            probes in proptest::collection::vec((0usize..8, 0u32..80), 1..20),
        ) {
            let slots: Vec<Slot> = kinds.iter().map(|&(e, p)| slot(e, p)).collect();
            let sid = Sid([7; 16]);
            let start = Num64(1 << 40);
            let mut walker = Schedule::new(sid, start, &slots, 1000);
            let mut fresh = Schedule::new(sid, start, &slots, 1000);
            let mut saved = Vec::new();
            for &i in &saves {
                walker.reset();
                walker.send_time(i);
                saved.push(walker.cursor());
            }
            for &(k, step) in &probes {
                let c = saved[k % saved.len()];
                walker.seek(&c);
                let target = c.position().saturating_sub(1) + step;
                let got = walker.send_time(target);
                fresh.reset();
                prop_assert_eq!(got, fresh.send_time(target));
            }
        }
    }
}
