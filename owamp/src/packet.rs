//! OWAMP-Test packets (RFC 4656 §4.1.2; protocol.md §3.1–3.2): per-session test keys and the
//! open, authenticated and encrypted packet formats.
//!
//! The sender splits building a packet in two so the timestamp is taken as late as
//! possible: [`PacketFormat::prepare`] does everything that does not depend on the send
//! time (sequence number, padding, and in authenticated mode the whole of the crypto,
//! since there the timestamp block is neither encrypted nor authenticated), then
//! [`PacketFormat::stamp`] writes the timestamp and does what remains (encrypted mode:
//! HMAC over blocks 1‖2 and CBC over them). Neither allocates.

use crate::types::{ErrorEstimate, Mode, Num64, Sid, Timestamp};
use aes::Aes128;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray};
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Payload length of an open-mode packet without padding.
pub const OPEN_BASE_LEN: usize = 14;
/// Payload length of an authenticated or encrypted packet without padding.
pub const SECURE_BASE_LEN: usize = 48;
/// The largest UDP payload over IPv4; larger packets could never be sent.
pub const MAX_PAYLOAD_LEN: usize = 65_507;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{mode} test packets need session keys, none were given")]
    MissingKeys { mode: Mode },
    #[error("test packet of {len} octets ({padding} of padding) exceeds the UDP maximum of {max}")]
    TooLarge {
        len: usize,
        padding: u32,
        max: usize,
    },
    #[error("test packet buffer of {len} octets is shorter than the packet length {need}")]
    BufferTooShort { len: usize, need: usize },
    #[error("test datagram of {len} octets is shorter than the expected {need}")]
    Short { len: usize, need: usize },
    #[error("test packet HMAC does not verify (claimed sequence number {seq})")]
    BadHmac { seq: u32 },
}

/// The per-session test keys of protocol.md §3.1, derived from the client's control session keys.
#[derive(Clone, PartialEq, Eq)]
pub struct TestKeys {
    pub aes: [u8; 16],
    pub hmac: [u8; 32],
}

impl std::fmt::Debug for TestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never go to logs.
        f.write_str("TestKeys(..)")
    }
}

impl TestKeys {
    /// Test AES key = AES-ECB(key=SID, session AES key); test HMAC key = AES-CBC(key=SID,
    /// IV=0, session HMAC key) (RFC 4656 §4.1.2, protocol.md §3.1).
    pub fn derive(sid: Sid, session_aes: &[u8; 16], session_hmac: &[u8; 32]) -> TestKeys {
        let k = Aes128::new(GenericArray::from_slice(&sid.0));
        let mut aes = GenericArray::from(*session_aes);
        k.encrypt_block(&mut aes);
        let mut hmac = [0u8; 32];
        let (h1, h2) = hmac.split_at_mut(16);
        let mut b1 = [0u8; 16];
        let mut b2 = [0u8; 16];
        b1.copy_from_slice(&session_hmac[..16]);
        b2.copy_from_slice(&session_hmac[16..]);
        let mut c1 = GenericArray::from(b1);
        k.encrypt_block(&mut c1);
        xor16(&mut b2, &c1.into());
        let mut c2 = GenericArray::from(b2);
        k.encrypt_block(&mut c2);
        h1.copy_from_slice(&c1);
        h2.copy_from_slice(&c2);
        TestKeys {
            aes: aes.into(),
            hmac,
        }
    }
}

/// A decoded, verified test packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedPacket {
    pub seq: u32,
    pub send_ts: Timestamp,
    pub send_err: ErrorEstimate,
}

/// Padding contents: random (the reference's default and the RFC's wish, so that
/// compression along the path cannot shrink the packets) or zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Random,
    Zero,
}

/// One session's test packet format and its cached crypto state.
#[derive(Clone)]
pub struct PacketFormat {
    mode: Mode,
    padding: u32,
    len: usize,
    fill: Padding,
    /// The test AES key schedule (secure modes).
    aes: Option<Aes128>,
    /// HMAC-SHA1 already keyed with the test HMAC key; cloned per packet.
    hmac: Option<HmacSha1>,
    rng: PadRng,
}

impl std::fmt::Debug for PacketFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketFormat")
            .field("mode", &self.mode)
            .field("padding", &self.padding)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl PacketFormat {
    /// The format for `mode` with `padding` octets of (random) padding. Secure modes need
    /// the test keys.
    pub fn new(
        mode: Mode,
        keys: Option<&TestKeys>,
        padding: u32,
    ) -> Result<PacketFormat, PacketError> {
        let base = if mode.is_secure() {
            SECURE_BASE_LEN
        } else {
            OPEN_BASE_LEN
        };
        let len = base.saturating_add(padding as usize);
        if len > MAX_PAYLOAD_LEN {
            return Err(PacketError::TooLarge {
                len,
                padding,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let (aes, hmac) = if mode.is_secure() {
            let k = keys.ok_or(PacketError::MissingKeys { mode })?;
            let aes = Aes128::new(GenericArray::from_slice(&k.aes));
            // HMAC accepts keys of any length: this cannot fail for 32 bytes.
            let hmac = <HmacSha1 as Mac>::new_from_slice(&k.hmac).ok();
            (Some(aes), hmac)
        } else {
            (None, None)
        };
        Ok(PacketFormat {
            mode,
            padding,
            len,
            fill: Padding::Random,
            aes,
            hmac,
            rng: PadRng::from_os(),
        })
    }

    /// Chooses the padding contents (random by default).
    pub fn with_padding_fill(mut self, fill: Padding) -> PacketFormat {
        self.fill = fill;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn padding(&self) -> u32 {
        self.padding
    }

    /// The payload length: 14 or 48 plus padding.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: even open packets have 14 octets. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }

    fn check_buf(&self, buf: &[u8]) -> Result<(), PacketError> {
        if buf.len() < self.len {
            return Err(PacketError::BufferTooShort {
                len: buf.len(),
                need: self.len,
            });
        }
        Ok(())
    }

    /// First half of building packet `seq` in `buf[..len()]`: everything that does not
    /// depend on the send time. In authenticated mode this includes encrypting block 1
    /// and its HMAC (the reference's HMAC covers block 1 only, protocol.md §3.2).
    pub fn prepare(&mut self, seq: u32, buf: &mut [u8]) -> Result<(), PacketError> {
        self.check_buf(buf)?;
        let (head, rest) = buf.split_at_mut(if self.mode.is_secure() {
            SECURE_BASE_LEN
        } else {
            OPEN_BASE_LEN
        });
        let pad_len = self.len - head.len();
        let pad = rest.get_mut(..pad_len).unwrap_or_default();
        match self.fill {
            Padding::Random => self.rng.fill(pad),
            Padding::Zero => pad.fill(0),
        }
        head.fill(0);
        head[..4].copy_from_slice(&seq.to_be_bytes());
        if self.mode == Mode::Authenticated {
            let mut block1 = [0u8; 16];
            block1.copy_from_slice(&head[..16]);
            let tag = self.tag(&[&block1]);
            if let Some(aes) = &self.aes {
                let mut b = GenericArray::from(block1);
                aes.encrypt_block(&mut b);
                head[..16].copy_from_slice(&b);
            }
            head[32..48].copy_from_slice(&tag);
        }
        Ok(())
    }

    /// Second half: writes the send timestamp and error estimate, then the crypto that
    /// covers them (encrypted mode: HMAC over plaintext blocks 1‖2, then AES-CBC with IV 0
    /// over both blocks, protocol.md §3.2).
    pub fn stamp(
        &mut self,
        buf: &mut [u8],
        ts: Timestamp,
        err: ErrorEstimate,
    ) -> Result<(), PacketError> {
        self.check_buf(buf)?;
        match self.mode {
            Mode::Open => {
                buf[4..12].copy_from_slice(&ts.to_be_bytes());
                buf[12..14].copy_from_slice(&err.to_bytes());
            }
            Mode::Authenticated => {
                buf[16..24].copy_from_slice(&ts.to_be_bytes());
                buf[24..26].copy_from_slice(&err.to_bytes());
            }
            Mode::Encrypted => {
                buf[16..24].copy_from_slice(&ts.to_be_bytes());
                buf[24..26].copy_from_slice(&err.to_bytes());
                let mut b1 = [0u8; 16];
                let mut b2 = [0u8; 16];
                b1.copy_from_slice(&buf[..16]);
                b2.copy_from_slice(&buf[16..32]);
                let tag = self.tag(&[&b1, &b2]);
                if let Some(aes) = &self.aes {
                    let mut c1 = GenericArray::from(b1);
                    aes.encrypt_block(&mut c1);
                    xor16(&mut b2, &c1.into());
                    let mut c2 = GenericArray::from(b2);
                    aes.encrypt_block(&mut c2);
                    buf[..16].copy_from_slice(&c1);
                    buf[16..32].copy_from_slice(&c2);
                }
                buf[32..48].copy_from_slice(&tag);
            }
        }
        Ok(())
    }

    /// Builds a whole packet in one go (tests, tools): `prepare` then `stamp`.
    pub fn build(
        &mut self,
        seq: u32,
        ts: Timestamp,
        err: ErrorEstimate,
        buf: &mut [u8],
    ) -> Result<(), PacketError> {
        self.prepare(seq, buf)?;
        self.stamp(buf, ts, err)
    }

    fn tag(&self, blocks: &[&[u8; 16]]) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Some(h) = &self.hmac {
            let mut h = h.clone();
            for b in blocks {
                h.update(&b[..]);
            }
            let full = h.finalize().into_bytes();
            out.copy_from_slice(&full[..16]);
        }
        out
    }

    /// Decodes and verifies a received datagram. Shorter than `len()` is an error; longer
    /// is truncated to `len()` and accepted (protocol.md §3.4). Padding is not checked.
    pub fn decode(&self, buf: &[u8]) -> Result<DecodedPacket, PacketError> {
        if buf.len() < self.len {
            return Err(PacketError::Short {
                len: buf.len(),
                need: self.len,
            });
        }
        let u32_at = |b: &[u8], o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |b: &[u8], o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            Num64::from_be_bytes(a)
        };
        match self.mode {
            Mode::Open => Ok(DecodedPacket {
                seq: u32_at(buf, 0),
                send_ts: u64_at(buf, 4),
                send_err: ErrorEstimate::from_bytes([buf[12], buf[13]]),
            }),
            Mode::Authenticated | Mode::Encrypted => {
                let mut p = [0u8; 32];
                p.copy_from_slice(&buf[..32]);
                let mut c1 = [0u8; 16];
                c1.copy_from_slice(&buf[..16]);
                if let Some(aes) = &self.aes {
                    let mut b = GenericArray::from(c1);
                    aes.decrypt_block(&mut b);
                    p[..16].copy_from_slice(&b);
                    if self.mode == Mode::Encrypted {
                        let mut c2 = [0u8; 16];
                        c2.copy_from_slice(&buf[16..32]);
                        let mut b = GenericArray::from(c2);
                        aes.decrypt_block(&mut b);
                        let mut p2: [u8; 16] = b.into();
                        xor16(&mut p2, &c1);
                        p[16..].copy_from_slice(&p2);
                    }
                }
                let seq = u32_at(&p, 0);
                let covered = if self.mode == Mode::Encrypted {
                    &p[..32]
                } else {
                    &p[..16]
                };
                let ok = match &self.hmac {
                    Some(h) => {
                        let mut h = h.clone();
                        h.update(covered);
                        // Constant-time comparison of the truncated tag.
                        h.verify_truncated_left(&buf[32..48]).is_ok()
                    }
                    None => false,
                };
                if !ok {
                    return Err(PacketError::BadHmac { seq });
                }
                Ok(DecodedPacket {
                    seq,
                    send_ts: u64_at(&p, 16),
                    send_err: ErrorEstimate::from_bytes([p[24], p[25]]),
                })
            }
        }
    }
}

fn xor16(a: &mut [u8; 16], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// The padding filler: xoshiro256** seeded once from `getrandom`.
///
/// Padding only has to be incompressible and unrelated to the packet, not secret (it is
/// neither encrypted nor authenticated, protocol.md §3.2), so a fast non-cryptographic PRNG is
/// enough and keeps the per-packet cost to a few nanoseconds per 8 octets.
#[derive(Clone, Debug)]
struct PadRng {
    s: [u64; 4],
}

impl PadRng {
    fn from_os() -> PadRng {
        let mut seed = [0u8; 32];
        // If the OS has no randomness, a fixed seed still gives incompressible padding.
        if getrandom::fill(&mut seed).is_err() {
            seed = *b"owamp padding fallback seed 0001";
        }
        let mut s = [0u64; 4];
        for (w, c) in s.iter_mut().zip(seed.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            *w = u64::from_le_bytes(a);
        }
        if s == [0; 4] {
            s[0] = 1; // the all-zero state is a fixed point
        }
        PadRng { s }
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rem = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        for (o, b) in rem.iter_mut().zip(last) {
            *o = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_rng_fills_every_length() {
        let mut r = PadRng::from_os();
        for n in 0..20 {
            let mut v = vec![0u8; n];
            r.fill(&mut v);
        }
        let mut a = [0u8; 64];
        r.fill(&mut a);
        assert!(a.iter().any(|&b| b != 0));
    }
}
