//! Core value types shared by every part of OWAMP: 32.32 fixed-point numbers and
//! timestamps, the Error Estimate, session identifiers, modes, Accept codes, schedule
//! slots, skip ranges and the 25-byte packet record.
//!
//! These are plain values with exact, documented conversions; the codecs in `wire`,
//! `packet` and `owp` lay them out on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Seconds between the NTP epoch (1900-01-01) and the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Unsigned 64-bit fixed point, 32.32 (RFC 4656 §4.1.2 "Timestamp", and the reference's
/// `OWPNum64`): the top 32 bits are seconds, the bottom 32 bits units of 2^-32 s.
///
/// Used for absolute timestamps (seconds since the NTP epoch) and for intervals
/// (Timeout, slot parameters). Arithmetic wraps modulo 2^64, as in the reference.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Num64(pub u64);

/// An absolute time: seconds since 1900-01-01 00:00 UTC in 32.32 fixed point.
pub type Timestamp = Num64;

impl Num64 {
    pub const ZERO: Num64 = Num64(0);
    pub const MAX: Num64 = Num64(u64::MAX);

    /// `(u64)(d * 2^32)`, truncated; negative and NaN values become 0 (protocol.md §0).
    pub fn from_secs_f64(d: f64) -> Num64 {
        if d.is_nan() || d <= 0.0 {
            return Num64(0);
        }
        // `as` saturates at u64::MAX for out-of-range values.
        Num64((d * 4_294_967_296.0) as u64)
    }

    /// `v / 2^32`.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 4_294_967_296.0
    }

    /// `(usec << 32) / 1_000_000` with integer division (protocol.md §0).
    pub fn from_micros(usec: u64) -> Num64 {
        Num64((((usec as u128) << 32) / 1_000_000) as u64)
    }

    /// Whole seconds and nanoseconds to 32.32: `(sec<<32) + ((nsec<<32)/1e9)`.
    pub fn from_parts(sec: u64, nsec: u32) -> Num64 {
        let frac = ((nsec as u64) << 32) / 1_000_000_000;
        Num64((sec << 32).wrapping_add(frac))
    }

    /// Whole seconds and nanoseconds: `nsec = (frac * 1e9) >> 32`.
    pub fn to_parts(self) -> (u64, u32) {
        let frac = self.0 & 0xFFFF_FFFF;
        (self.0 >> 32, ((frac * 1_000_000_000) >> 32) as u32)
    }

    /// A Unix time (seconds and nanoseconds since 1970) as an NTP timestamp.
    pub fn from_unix(sec: u64, nsec: u32) -> Timestamp {
        Num64::from_parts(sec.wrapping_add(NTP_UNIX_OFFSET), nsec)
    }

    /// This NTP timestamp as Unix seconds and nanoseconds (saturating at the Unix epoch).
    pub fn to_unix(self) -> (u64, u32) {
        let (sec, nsec) = self.to_parts();
        (sec.saturating_sub(NTP_UNIX_OFFSET), nsec)
    }

    /// The integer seconds field.
    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The fraction field, in units of 2^-32 s.
    pub fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// 32.32 multiply: `(x*y) >> 32` computed exactly in 128 bits, keeping the low
    /// 64 bits (the reference's `OWPNum64Mult`).
    pub fn fixed_mul(self, other: Num64) -> Num64 {
        Num64(((self.0 as u128 * other.0 as u128) >> 32) as u64)
    }

    pub fn wrapping_add(self, other: Num64) -> Num64 {
        Num64(self.0.wrapping_add(other.0))
    }

    pub fn wrapping_sub(self, other: Num64) -> Num64 {
        Num64(self.0.wrapping_sub(other.0))
    }

    pub fn saturating_sub(self, other: Num64) -> Num64 {
        Num64(self.0.saturating_sub(other.0))
    }

    /// `self - other` in seconds as a signed double (delays may be negative when
    /// clocks disagree).
    pub fn diff_secs(self, other: Num64) -> f64 {
        if self >= other {
            (self.0 - other.0) as f64 / 4_294_967_296.0
        } else {
            -((other.0 - self.0) as f64 / 4_294_967_296.0)
        }
    }

    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub fn from_be_bytes(b: [u8; 8]) -> Num64 {
        Num64(u64::from_be_bytes(b))
    }
}

/// The 16-bit Error Estimate of RFC 4656 §4.1.2:
/// `S(1) Z(1) Scale(6) Multiplier(8)`, error = Multiplier × 2^Scale × 2^-32 s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorEstimate {
    /// S: the clock is synchronised to UTC by an external source.
    pub synchronized: bool,
    /// Z: must be zero in OWAMP; kept so that a decode/encode round trip is exact.
    pub z: bool,
    /// 6-bit scale.
    pub scale: u8,
    /// 8-bit multiplier; 0 means the estimate is invalid.
    pub multiplier: u8,
}

impl ErrorEstimate {
    /// What the reference sends for an unsynchronised clock and for lost-packet records:
    /// S=0, scale 64 masked to 0, multiplier 1, i.e. wire bytes `00 01` (protocol.md §4.3).
    pub const UNSYNC: ErrorEstimate = ErrorEstimate {
        synchronized: false,
        z: false,
        scale: 0,
        multiplier: 1,
    };

    pub fn from_bytes(b: [u8; 2]) -> ErrorEstimate {
        ErrorEstimate {
            synchronized: b[0] & 0x80 != 0,
            z: b[0] & 0x40 != 0,
            scale: b[0] & 0x3F,
            multiplier: b[1],
        }
    }

    pub fn to_bytes(self) -> [u8; 2] {
        let mut b0 = self.scale & 0x3F;
        if self.synchronized {
            b0 |= 0x80;
        }
        if self.z {
            b0 |= 0x40;
        }
        [b0, self.multiplier]
    }

    /// A synchronised estimate from an error in microseconds, exactly as the reference
    /// encodes it (protocol.md §4.3): 0 is treated as 1 µs.
    pub fn synchronized_from_micros(esterror_us: u64) -> ErrorEstimate {
        let e = esterror_us.max(1);
        let mut err: u128 = ((e as u128) << 32) / 1_000_000;
        let mut scale: u8 = 0;
        while err >= 0xFF {
            err >>= 1;
            scale = scale.saturating_add(1);
        }
        ErrorEstimate {
            synchronized: true,
            z: false,
            scale: scale & 0x3F,
            multiplier: ((err + 1) & 0xFF) as u8,
        }
    }

    /// A zero multiplier marks an invalid estimate (RFC 4656 §4.1.2).
    pub fn is_valid(self) -> bool {
        self.multiplier != 0
    }

    /// The error in seconds: Multiplier × 2^Scale × 2^-32.
    pub fn as_secs_f64(self) -> f64 {
        self.multiplier as f64 * 2f64.powi(self.scale as i32) / 4_294_967_296.0
    }
}

/// Session Identifier: 16 octets chosen by the receiver (RFC 4656 §3.5).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sid(pub [u8; 16]);

/// Why a SID could not be parsed from hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SID {text:?}: expected 32 hexadecimal digits")]
pub struct SidParseError {
    pub text: String,
}

impl Sid {
    /// A receiver's SID in the reference's layout (protocol.md §2.1.4, RFC 4656 §3.5):
    /// the receiver's IPv4 address (or the last 4 bytes of its IPv6 address), the NTP
    /// time, 4 random bytes. Random bytes come from the caller, which says how a failed
    /// random source is handled.
    pub fn for_receiver(receiver: std::net::IpAddr, now: Timestamp, random: [u8; 4]) -> Sid {
        let mut b = [0u8; 16];
        let addr: [u8; 4] = match receiver {
            std::net::IpAddr::V4(a) => a.octets(),
            std::net::IpAddr::V6(a) => {
                let o = a.octets();
                [o[12], o[13], o[14], o[15]]
            }
        };
        b[..4].copy_from_slice(&addr);
        b[4..12].copy_from_slice(&now.to_be_bytes());
        b[12..].copy_from_slice(&random);
        Sid(b)
    }

    /// 32 lowercase hex digits, as used for `.owp` file names.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn from_hex(text: &str) -> Result<Sid, SidParseError> {
        let err = || SidParseError {
            text: text.to_string(),
        };
        let bytes = text.as_bytes();
        if bytes.len() != 32 {
            return Err(err());
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(err)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(err)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Sid(out))
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.to_hex())
    }
}

/// One OWAMP mode (RFC 4656 §3.1). Exactly one is chosen in Set-Up-Response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Unauthenticated ("open"): no crypto at all.
    Open,
    /// Control encrypted and authenticated; test packets' first block encrypted.
    Authenticated,
    /// Control and test packets encrypted and authenticated.
    Encrypted,
}

impl Mode {
    pub const fn bit(self) -> u32 {
        match self {
            Mode::Open => 1,
            Mode::Authenticated => 2,
            Mode::Encrypted => 4,
        }
    }

    /// The mode for a Set-Up-Response Mode field, which must have exactly one of the
    /// OWAMP bits set.
    pub fn from_bit(v: u32) -> Option<Mode> {
        match v {
            1 => Some(Mode::Open),
            2 => Some(Mode::Authenticated),
            4 => Some(Mode::Encrypted),
            _ => None,
        }
    }

    /// The perfSONAR letter for this mode (`-a` / `-A`, `authmode`).
    pub const fn letter(self) -> char {
        match self {
            Mode::Open => 'O',
            Mode::Authenticated => 'A',
            Mode::Encrypted => 'E',
        }
    }

    /// Whether control and test traffic carry crypto (every mode but open).
    pub const fn is_secure(self) -> bool {
        !matches!(self, Mode::Open)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Open => "open",
            Mode::Authenticated => "authenticated",
            Mode::Encrypted => "encrypted",
        })
    }
}

/// A set of modes: the Modes bit mask of Server-Greeting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModeSet(pub u32);

/// Why a mode-letter string (`-a AEO`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid mode letters {text:?}: use one or more of A (authenticated), E (encrypted), O (open)"
)]
pub struct ModeLettersError {
    pub text: String,
}

impl ModeSet {
    pub const OPEN: ModeSet = ModeSet(1);
    /// The three OWAMP modes, 1|2|4.
    pub const ALL: ModeSet = ModeSet(7);

    pub fn contains(self, m: Mode) -> bool {
        self.0 & m.bit() != 0
    }

    pub fn with(self, m: Mode) -> ModeSet {
        ModeSet(self.0 | m.bit())
    }

    pub fn without(self, m: Mode) -> ModeSet {
        ModeSet(self.0 & !m.bit())
    }

    /// Only the OWAMP bits (1, 2, 4).
    pub fn owamp_only(self) -> ModeSet {
        ModeSet(self.0 & 7)
    }

    pub fn is_empty(self) -> bool {
        self.0 & 7 == 0
    }

    /// The strongest mode in the set: encrypted > authenticated > open (protocol.md §1.8).
    pub fn strongest(self) -> Option<Mode> {
        [Mode::Encrypted, Mode::Authenticated, Mode::Open]
            .into_iter()
            .find(|m| self.contains(*m))
    }

    /// Parses perfSONAR mode letters (`AEO`, any order, case-insensitive).
    pub fn from_letters(text: &str) -> Result<ModeSet, ModeLettersError> {
        let mut set = ModeSet(0);
        for c in text.chars() {
            let m = match c.to_ascii_uppercase() {
                'O' => Mode::Open,
                'A' => Mode::Authenticated,
                'E' => Mode::Encrypted,
                _ => {
                    return Err(ModeLettersError {
                        text: text.to_string(),
                    });
                }
            };
            set = set.with(m);
        }
        if set.is_empty() {
            return Err(ModeLettersError {
                text: text.to_string(),
            });
        }
        Ok(set)
    }
}

/// The Accept field of Server-Start, Accept-Session, Start-Ack, Stop-Sessions and
/// Fetch-Ack (RFC 4656 §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AcceptCode {
    Ok = 0,
    Failure = 1,
    InternalError = 2,
    NotSupported = 3,
    PermanentResourceLimit = 4,
    TemporaryResourceLimit = 5,
}

impl AcceptCode {
    pub fn from_u8(v: u8) -> Option<AcceptCode> {
        Some(match v {
            0 => AcceptCode::Ok,
            1 => AcceptCode::Failure,
            2 => AcceptCode::InternalError,
            3 => AcceptCode::NotSupported,
            4 => AcceptCode::PermanentResourceLimit,
            5 => AcceptCode::TemporaryResourceLimit,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The RFC 4656 §3.3 meaning, for messages a person reads.
    pub fn description(self) -> &'static str {
        match self {
            AcceptCode::Ok => "OK",
            AcceptCode::Failure => "failure, reason unspecified",
            AcceptCode::InternalError => "internal error",
            AcceptCode::NotSupported => "some aspect of the request is not supported",
            AcceptCode::PermanentResourceLimit => {
                "cannot perform request due to permanent resource limitations"
            }
            AcceptCode::TemporaryResourceLimit => {
                "cannot perform request due to temporary resource limitations"
            }
        }
    }
}

impl fmt::Display for AcceptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Accept={} ({})", self.as_u8(), self.description())
    }
}

/// A schedule slot's kind (RFC 4656 §3.5 "Slot Type").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SlotKind {
    /// Type 0: exponentially distributed delay with the given mean.
    Exponential,
    /// Type 1: a fixed delay.
    Fixed,
}

/// One schedule slot: its kind and its parameter (mean or delay) in 32.32 seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slot {
    pub kind: SlotKind,
    pub param: Num64,
}

/// An inclusive range of sequence numbers a sender deliberately did not send
/// (RFC 4656 §3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SkipRange {
    pub first: u32,
    pub last: u32,
}

/// One received (or lost) packet: the 25-byte record of the Fetch-Session stream and
/// of `.owp` version 3 files (RFC 4656 §3.9 and protocol.md §2.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PacketRecord {
    pub seq: u32,
    pub send_err: ErrorEstimate,
    pub recv_err: ErrorEstimate,
    pub send_ts: Timestamp,
    /// Zero means the packet was lost.
    pub recv_ts: Timestamp,
    /// TTL / hop limit as received; 255 if unknown or lost.
    pub ttl: u8,
}

impl PacketRecord {
    pub const WIRE_LEN: usize = 25;

    pub fn is_lost(&self) -> bool {
        self.recv_ts.0 == 0
    }

    pub fn to_bytes(&self) -> [u8; 25] {
        let mut b = [0u8; 25];
        b[0..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..6].copy_from_slice(&self.send_err.to_bytes());
        b[6..8].copy_from_slice(&self.recv_err.to_bytes());
        b[8..16].copy_from_slice(&self.send_ts.to_be_bytes());
        b[16..24].copy_from_slice(&self.recv_ts.to_be_bytes());
        b[24] = self.ttl;
        b
    }

    pub fn from_bytes(b: &[u8; 25]) -> PacketRecord {
        let u32_at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            Num64(u64::from_be_bytes(a))
        };
        PacketRecord {
            seq: u32_at(0),
            send_err: ErrorEstimate::from_bytes([b[4], b[5]]),
            recv_err: ErrorEstimate::from_bytes([b[6], b[7]]),
            send_ts: u64_at(8),
            recv_ts: u64_at(16),
            ttl: b[24],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num64_conversions_follow_the_reference() {
        // owping's default mean: (float)0.1 vs the double 0.1 (protocol.md §8.1).
        assert_eq!(Num64::from_secs_f64(0.1f32 as f64), Num64(0x1999_99A0));
        assert_eq!(Num64::from_secs_f64(0.1), Num64(0x1999_9999));
        assert_eq!(Num64::from_secs_f64(-1.0), Num64(0));
        assert_eq!(Num64::from_micros(1_000_000), Num64(1 << 32));
        assert_eq!(Num64::from_micros(1), Num64(4294));
        assert_eq!(
            Num64::from_parts(3, 500_000_000),
            Num64((3 << 32) | 0x8000_0000)
        );
        assert_eq!(Num64((3 << 32) | 0x8000_0000).to_parts(), (3, 500_000_000));
        assert_eq!(Num64::from_unix(0, 0).seconds() as u64, NTP_UNIX_OFFSET);
        assert_eq!(Num64(2 << 32).fixed_mul(Num64(3 << 31)), Num64(3 << 32));
        assert_eq!(Num64(1 << 32).diff_secs(Num64(3 << 31)), -0.5);
    }

    #[test]
    fn error_estimate_matches_reference_examples() {
        // e = 1 µs → scale 5, mult 135 → bytes 85 87 (protocol.md §4.3).
        assert_eq!(
            ErrorEstimate::synchronized_from_micros(1).to_bytes(),
            [0x85, 0x87]
        );
        assert_eq!(
            ErrorEstimate::synchronized_from_micros(0).to_bytes(),
            [0x85, 0x87]
        );
        let e = ErrorEstimate::from_bytes([0x92, 0xd7]);
        assert!(e.synchronized);
        assert_eq!((e.scale, e.multiplier), (18, 215));
        assert!((e.as_secs_f64() - 0.013122).abs() < 1e-5);
        assert_eq!(ErrorEstimate::UNSYNC.to_bytes(), [0x00, 0x01]);
        for b0 in 0..=255u8 {
            let b = [b0, 0x42];
            assert_eq!(ErrorEstimate::from_bytes(b).to_bytes(), b);
        }
    }

    #[test]
    fn receiver_sid_layout() {
        let sid = Sid::for_receiver(
            "127.0.0.1".parse().unwrap(),
            Num64(0xdd12_e59f_f0d3_41db),
            [0x48, 0xde, 0xe1, 0xc4],
        );
        assert_eq!(sid.to_hex(), "7f000001dd12e59ff0d341db48dee1c4");
        let v6 = Sid::for_receiver("2001:db8::a:b0c:d0e".parse().unwrap(), Num64(1), [0; 4]);
        assert_eq!(&v6.0[..4], &[0x0b, 0x0c, 0x0d, 0x0e]);
        assert_eq!(&v6.0[4..], &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn sid_hex_round_trip_and_refusals() {
        let sid = Sid::from_hex("7f000001dd12e59ff0d341db48dee1c4").unwrap();
        assert_eq!(sid.0[0], 0x7f);
        assert_eq!(sid.to_hex(), "7f000001dd12e59ff0d341db48dee1c4");
        assert!(Sid::from_hex("7F000001DD12E59FF0D341DB48DEE1C4").is_ok());
        assert!(Sid::from_hex("7f00").is_err());
        assert!(Sid::from_hex("zz000001dd12e59ff0d341db48dee1c4").is_err());
        assert!(Sid::from_hex("é0000001dd12e59ff0d341db48dee1c").is_err());
    }

    #[test]
    fn mode_sets() {
        assert_eq!(ModeSet::from_letters("aeo").unwrap(), ModeSet::ALL);
        assert_eq!(ModeSet::from_letters("O").unwrap(), ModeSet::OPEN);
        assert!(ModeSet::from_letters("X").is_err());
        assert!(ModeSet::from_letters("").is_err());
        assert_eq!(ModeSet::ALL.strongest(), Some(Mode::Encrypted));
        assert_eq!(ModeSet(3).strongest(), Some(Mode::Authenticated));
        assert_eq!(ModeSet(8).strongest(), None);
        assert_eq!(Mode::from_bit(3), None);
    }

    #[test]
    fn accept_codes() {
        for v in 0..=5u8 {
            assert_eq!(AcceptCode::from_u8(v).unwrap().as_u8(), v);
        }
        assert_eq!(AcceptCode::from_u8(6), None);
    }

    #[test]
    fn packet_record_round_trip() {
        let r = PacketRecord {
            seq: 7,
            send_err: ErrorEstimate::UNSYNC,
            recv_err: ErrorEstimate::synchronized_from_micros(1),
            send_ts: Num64(0xdd12e5a11128d92c),
            recv_ts: Num64(0xdd12e5a11128d92d),
            ttl: 64,
        };
        let b = r.to_bytes();
        assert_eq!(&b[0..8], &[0, 0, 0, 7, 0x00, 0x01, 0x85, 0x87]);
        assert_eq!(PacketRecord::from_bytes(&b), r);
    }
}
