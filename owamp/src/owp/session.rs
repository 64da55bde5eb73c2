//! The Request-Session copy stored in every `.owp` v2/v3 header (protocol.md §7.7, §2.1).
//!
//! The file keeps the 112-octet preamble (HMAC field zero), the slot blocks and one zero
//! block where the slot HMAC would be. [`SessionHeader`] keeps those bytes verbatim, so a
//! file copied through us is byte-identical, and decodes only the fields the readers and
//! the statistics need. Decoding and encoding are `wire`'s (`RequestSession::decode_stored` /
//! `encode_stored`), so the layout is written down once.

use super::OwpError;
use crate::types::{Num64, Sid, Slot, Timestamp};
use crate::wire::RequestSession;
use std::net::IpAddr;

/// Octets of the Request-Session preamble, HMAC block included (protocol.md §2.1).
pub const PREAMBLE_LEN: usize = 112;
/// Octets of one slot block (protocol.md §2.1.1).
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

impl SessionHeader {
    /// Number of slots announced by a preamble (octets 4..8); used by readers to know
    /// how many more bytes to read before calling [`SessionHeader::parse`].
    pub fn nslots_in_preamble(preamble: &[u8]) -> Option<u32> {
        let b = preamble.get(4..8)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Total length of the stored Request-Session for `nslots` slots, or None on overflow.
    pub fn stored_len(nslots: u32) -> Option<u64> {
        (nslots as u64)
            .checked_add(1)?
            .checked_mul(SLOT_LEN as u64)?
            .checked_add(PREAMBLE_LEN as u64)
    }

    /// Decode a stored Request-Session (protocol.md §2.1): `bytes` must be exactly
    /// `112 + 16·nslots + 16` octets. The one place that knows the layout.
    pub fn parse(bytes: &[u8]) -> Result<SessionHeader, OwpError> {
        let bad = |field: &'static str, detail: String| OwpError::BadSession { field, detail };
        let stored =
            RequestSession::decode_stored(bytes).map_err(|e| bad("request", e.to_string()))?;
        if stored.len != bytes.len() {
            return Err(bad(
                "nslots",
                format!(
                    "{} slots need {} octets, have {}",
                    stored.preamble.num_slots,
                    stored.len,
                    bytes.len()
                ),
            ));
        }
        let p = stored.preamble;
        let (Some(sender_addr), Some(receiver_addr)) = (p.sender_addr(), p.receiver_addr()) else {
            return Err(bad("ipvn", p.ipvn.to_string()));
        };
        let slots = stored
            .slots
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                raw.to_slot()
                    .ok_or_else(|| bad("slot type", format!("slot {i}: {}", raw.slot_type)))
            })
            .collect::<Result<Vec<Slot>, OwpError>>()?;
        let fields = SessionFields {
            ipvn: p.ipvn,
            conf_sender: p.conf_sender,
            conf_receiver: p.conf_receiver,
            npackets: p.num_packets,
            sender_port: p.sender_port,
            receiver_port: p.receiver_port,
            sender_addr,
            receiver_addr,
            sid: p.sid,
            padding: p.padding,
            start_time: p.start_time,
            timeout: p.timeout,
            type_p: p.type_p,
            slots,
        };
        Ok(SessionHeader {
            raw: bytes.to_vec(),
            fields,
        })
    }

    /// Encode fields as the reference stores them: command byte 1, HMAC fields zero.
    pub fn from_fields(f: &SessionFields) -> Result<SessionHeader, OwpError> {
        let req = RequestSession {
            conf_sender: f.conf_sender,
            conf_receiver: f.conf_receiver,
            num_packets: f.npackets,
            sender_port: f.sender_port,
            receiver_port: f.receiver_port,
            sender_addr: f.sender_addr,
            receiver_addr: f.receiver_addr,
            sid: f.sid,
            padding: f.padding,
            start_time: f.start_time,
            timeout: f.timeout,
            type_p: f.type_p,
            slots: f.slots.clone(),
        };
        SessionHeader::parse(&req.encode_stored())
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
        let rate = crate::schedule::packets_per_second(&self.fields.slots);
        if rate.is_finite() { rate } else { 0.0 }
    }
}
