//! The Request-Session copy stored in every `.owp` v2/v3 header (spec §7.7, §2.1).
//!
//! The file keeps the 112-octet preamble (HMAC field zero), the slot blocks and one zero
//! block where the slot HMAC would be. [`SessionHeader`] keeps those bytes verbatim, so a
//! file copied through us is byte-identical, and decodes only the fields the readers and
//! the statistics need. All decoding is in [`SessionHeader::parse`], one function, so it
//! can later be replaced by `wire`'s Request-Session decoder.

use super::OwpError;
use crate::types::{Num64, Sid, Slot, SlotKind, Timestamp};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Octets of the Request-Session preamble, HMAC block included (spec §2.1).
pub const PREAMBLE_LEN: usize = 112;
/// Octets of one slot block (spec §2.1.1).
pub const SLOT_LEN: usize = 16;

/// The decoded fields of a stored Request-Session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFields {
    /// 4 or 6 (low nibble of octet 1).
    pub ipvn: u8,
    /// Conf-Sender as stored (the receiver's point of view; any non-zero value is 1).
    pub conf_sender: bool,
    /// Conf-Receiver as stored.
    pub conf_receiver: bool,
    pub npackets: u32,
    pub sender_port: u16,
    pub receiver_port: u16,
    pub sender_addr: IpAddr,
    pub receiver_addr: IpAddr,
    pub sid: Sid,
    pub padding: u32,
    pub start_time: Timestamp,
    /// Loss threshold (Timeout), an interval.
    pub timeout: Num64,
    pub type_p: u32,
    pub slots: Vec<Slot>,
}

/// A stored Request-Session: the raw bytes (`112 + 16·nslots + 16`) and their decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionHeader {
    raw: Vec<u8>,
    fields: SessionFields,
}

fn be32(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(o..o + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(o..o + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn addr_at(b: &[u8], o: usize, ipvn: u8) -> IpAddr {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(o..o + 16) {
        a.copy_from_slice(s);
    }
    if ipvn == 6 {
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

impl SessionHeader {
    /// Number of slots announced by a preamble (octets 4..8); used by readers to know
    /// how many more bytes to read before calling [`SessionHeader::parse`].
    pub fn nslots_in_preamble(preamble: &[u8]) -> Option<u32> {
        if preamble.len() < 8 {
            return None;
        }
        Some(be32(preamble, 4))
    }

    /// Total length of the stored Request-Session for `nslots` slots, or None on overflow.
    pub fn stored_len(nslots: u32) -> Option<u64> {
        (nslots as u64)
            .checked_add(1)?
            .checked_mul(SLOT_LEN as u64)?
            .checked_add(PREAMBLE_LEN as u64)
    }

    /// Decode a stored Request-Session (spec §2.1): `bytes` must be exactly
    /// `112 + 16·nslots + 16` octets. The one place that knows the layout.
    pub fn parse(bytes: &[u8]) -> Result<SessionHeader, OwpError> {
        let bad = |field: &'static str, detail: String| OwpError::BadSession { field, detail };
        if bytes.len() < PREAMBLE_LEN + SLOT_LEN {
            return Err(bad("length", format!("{} octets", bytes.len())));
        }
        let nslots = be32(bytes, 4);
        let want =
            SessionHeader::stored_len(nslots).ok_or_else(|| bad("nslots", nslots.to_string()))?;
        if want != bytes.len() as u64 {
            return Err(bad(
                "nslots",
                format!("{nslots} slots need {want} octets, have {}", bytes.len()),
            ));
        }
        let ipvn = bytes.get(1).copied().unwrap_or(0) & 0x0F;
        if ipvn != 4 && ipvn != 6 {
            return Err(bad("ipvn", ipvn.to_string()));
        }
        let mut sid = [0u8; 16];
        if let Some(s) = bytes.get(48..64) {
            sid.copy_from_slice(s);
        }
        let mut slots = Vec::with_capacity(nslots as usize);
        for i in 0..nslots as usize {
            let o = PREAMBLE_LEN + i * SLOT_LEN;
            let kind = match bytes.get(o).copied() {
                Some(0) => SlotKind::Exponential,
                Some(1) => SlotKind::Fixed,
                other => return Err(bad("slot type", format!("slot {i}: {other:?}"))),
            };
            slots.push(Slot {
                kind,
                param: Num64(be64(bytes, o + 8)),
            });
        }
        let fields = SessionFields {
            ipvn,
            conf_sender: bytes.get(2).copied().unwrap_or(0) != 0,
            conf_receiver: bytes.get(3).copied().unwrap_or(0) != 0,
            npackets: be32(bytes, 8),
            sender_port: be32(bytes, 12).wrapping_shr(16) as u16,
            receiver_port: be32(bytes, 12) as u16,
            sender_addr: addr_at(bytes, 16, ipvn),
            receiver_addr: addr_at(bytes, 32, ipvn),
            sid: Sid(sid),
            padding: be32(bytes, 64),
            start_time: Num64(be64(bytes, 68)),
            timeout: Num64(be64(bytes, 76)),
            type_p: be32(bytes, 84),
            slots,
        };
        Ok(SessionHeader {
            raw: bytes.to_vec(),
            fields,
        })
    }

    /// Encode fields as the reference stores them: command byte 1, HMAC fields zero.
    pub fn from_fields(f: &SessionFields) -> Result<SessionHeader, OwpError> {
        let nslots = u32::try_from(f.slots.len()).map_err(|_| OwpError::BadSession {
            field: "nslots",
            detail: f.slots.len().to_string(),
        })?;
        let mut b = vec![0u8; PREAMBLE_LEN + SLOT_LEN * (f.slots.len() + 1)];
        b[0] = 1;
        b[1] = f.ipvn & 0x0F;
        b[2] = f.conf_sender as u8;
        b[3] = f.conf_receiver as u8;
        b[4..8].copy_from_slice(&nslots.to_be_bytes());
        b[8..12].copy_from_slice(&f.npackets.to_be_bytes());
        b[12..14].copy_from_slice(&f.sender_port.to_be_bytes());
        b[14..16].copy_from_slice(&f.receiver_port.to_be_bytes());
        put_addr(&mut b[16..32], f.sender_addr);
        put_addr(&mut b[32..48], f.receiver_addr);
        b[48..64].copy_from_slice(&f.sid.0);
        b[64..68].copy_from_slice(&f.padding.to_be_bytes());
        b[68..76].copy_from_slice(&f.start_time.to_be_bytes());
        b[76..84].copy_from_slice(&f.timeout.to_be_bytes());
        b[84..88].copy_from_slice(&f.type_p.to_be_bytes());
        for (i, s) in f.slots.iter().enumerate() {
            let o = PREAMBLE_LEN + i * SLOT_LEN;
            b[o] = match s.kind {
                SlotKind::Exponential => 0,
                SlotKind::Fixed => 1,
            };
            b[o + 8..o + 16].copy_from_slice(&s.param.to_be_bytes());
        }
        SessionHeader::parse(&b)
    }

    /// The stored bytes, exactly as read or encoded.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub fn fields(&self) -> &SessionFields {
        &self.fields
    }

    pub fn sid(&self) -> Sid {
        self.fields.sid
    }

    pub fn npackets(&self) -> u32 {
        self.fields.npackets
    }

    pub fn timeout(&self) -> Num64 {
        self.fields.timeout
    }

    /// Mean packets per second of the schedule: `nslots / Σ slot parameters`, as the
    /// reference's `OWPTestPacketRate`; 0 when the slots sum to zero.
    pub fn packet_rate(&self) -> f64 {
        let total: f64 = self
            .fields
            .slots
            .iter()
            .map(|s| s.param.as_secs_f64())
            .sum();
        if total <= 0.0 {
            0.0
        } else {
            self.fields.slots.len() as f64 / total
        }
    }
}

fn put_addr(dst: &mut [u8], a: IpAddr) {
    match a {
        IpAddr::V4(v4) => dst[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => dst.copy_from_slice(&v6.octets()),
    }
}
