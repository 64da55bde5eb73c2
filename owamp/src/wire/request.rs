//! Request-Session (command 1, RFC 4656 §3.5, protocol.md §2.1) and the stored copy of it in
//! `.owp` headers and the Fetch-Session response (protocol.md §2.8, §7.7).
//!
//! Segments: the 96-byte preamble (+ HMAC block), then `num_slots` slot blocks
//! (+ one HMAC block covering only the slots).
//!
//! Decoding is in two steps because the slot count is in the preamble:
//! [`RequestSession::decode_preamble`] then [`RequestSession::decode_slots`]. Neither
//! step rejects anything the server must answer with Accept=3 rather than by closing
//! (protocol.md §9): those are found by [`RequestPreamble::validate`] /
//! [`RequestPreamble::into_request`], after the whole message has been read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::{BLOCK, WireError, array16, be_num64, be_u16, be_u32};
use crate::types::{AcceptCode, Mode, Num64, Sid, Slot, SlotKind};

/// Largest UDP payload in an IPv4 datagram: 65535 − 20 (IP) − 8 (UDP).
pub const IPV4_UDP_MAX_PAYLOAD: u32 = 65_507;
/// Largest UDP payload over IPv6 without jumbograms: 65535 − 8 (UDP).
pub const IPV6_UDP_MAX_PAYLOAD: u32 = 65_527;
/// Length of the stored preamble: 96 bytes + a zero 16-byte HMAC field (protocol.md §7.7).
pub const STORED_PREAMBLE_LEN: usize = 112;

const PREAMBLE_LEN: usize = 96;
/// Test packet header before the padding (protocol.md §3.2): open 14, authenticated/encrypted 48.
const OPEN_HEADER: u32 = 14;
const SECURE_HEADER: u32 = 48;
/// The only bits of Type-P the reference accepts: a DSCP (protocol.md §2.1.2).
const DSCP_MASK: u32 = 0x3F00_0000;

/// The largest Padding Length whose test packet still fits in one UDP datagram.
/// `mode = None` assumes the larger authenticated/encrypted header.
pub fn max_padding(ipv6: bool, mode: Option<Mode>) -> u32 {
    let payload = if ipv6 {
        IPV6_UDP_MAX_PAYLOAD
    } else {
        IPV4_UDP_MAX_PAYLOAD
    };
    let header = match mode {
        Some(Mode::Open) => OPEN_HEADER,
        _ => SECURE_HEADER,
    };
    payload - header
}

/// A parseable but unsupported Request-Session: the server reads the whole message and
/// replies Accept-Session with [`RequestProblem::accept_code`] (protocol.md §9, "Ours").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestProblem {
    #[error("Request-Session: IP version {0} is neither 4 nor 6")]
    UnknownIpVersion(u8),
    #[error("Request-Session: sender and receiver addresses are of different families")]
    MixedAddressFamilies,
    #[error("Request-Session: neither Conf-Sender nor Conf-Receiver is set")]
    NoLocalEndpoint,
    #[error("Request-Session: both Conf-Sender and Conf-Receiver are set")]
    BothEndpoints,
    #[error("Request-Session: the schedule has no slots")]
    NoSlots,
    #[error("Request-Session: Number of Packets is 0")]
    NoPackets,
    #[error("Request-Session: Type-P {0:#010x} is not a DSCP")]
    TypePNotDscp(u32),
    #[error("Request-Session: Padding Length {padding} exceeds {max} (UDP datagram size)")]
    PaddingTooLarge { padding: u32, max: u32 },
    #[error("Request-Session: slot {index} has unknown type {slot_type}")]
    UnknownSlotType { index: usize, slot_type: u8 },
    #[error("Request-Session: {declared} slots declared but {found} given")]
    SlotCountMismatch { declared: u32, found: usize },
}

impl RequestProblem {
    /// Every problem here is "some aspect of the request is not supported" (protocol.md §9).
    pub fn accept_code(&self) -> AcceptCode {
        AcceptCode::NotSupported
    }
}

/// One slot block as read, before its type is checked (protocol.md §2.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawSlot {
    pub slot_type: u8,
    pub param: Num64,
}

impl RawSlot {
    /// The typed slot, or `None` for a type other than 0 (exponential) or 1 (fixed).
    pub fn to_slot(self) -> Option<Slot> {
        let kind = match self.slot_type {
            0 => SlotKind::Exponential,
            1 => SlotKind::Fixed,
            _ => return None,
        };
        Some(Slot {
            kind,
            param: self.param,
        })
    }
}

/// The decoded 96-byte preamble: every field, raw where it may be unsupported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestPreamble {
    /// Low nibble of byte 1; the high (MBZ) nibble is ignored as by the reference.
    pub ipvn: u8,
    /// Any non-zero byte counts as set (protocol.md §2.1).
    pub conf_sender: bool,
    pub conf_receiver: bool,
    pub num_slots: u32,
    pub num_packets: u32,
    pub sender_port: u16,
    pub receiver_port: u16,
    /// The 16 address bytes as sent; for IPv4 only the first 4 matter.
    pub sender_addr_raw: [u8; 16],
    pub receiver_addr_raw: [u8; 16],
    pub sid: Sid,
    pub padding: u32,
    pub start_time: Num64,
    pub timeout: Num64,
    pub type_p: u32,
}

fn addr_from_raw(ipvn: u8, raw: &[u8; 16]) -> Option<IpAddr> {
    match ipvn {
        4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

/// The checks shared by a decoded preamble and a request about to be sent.
struct Common {
    ipv6: bool,
    conf_sender: bool,
    conf_receiver: bool,
    num_slots: u64,
    num_packets: u32,
    type_p: u32,
    padding: u32,
}

impl Common {
    fn check(&self, mode: Option<Mode>) -> Result<(), RequestProblem> {
        match (self.conf_sender, self.conf_receiver) {
            (false, false) => return Err(RequestProblem::NoLocalEndpoint),
            (true, true) => return Err(RequestProblem::BothEndpoints),
            _ => {}
        }
        if self.num_slots == 0 {
            return Err(RequestProblem::NoSlots);
        }
        if self.num_packets == 0 {
            return Err(RequestProblem::NoPackets);
        }
        if self.type_p & !DSCP_MASK != 0 {
            return Err(RequestProblem::TypePNotDscp(self.type_p));
        }
        let max = max_padding(self.ipv6, mode);
        if self.padding > max {
            return Err(RequestProblem::PaddingTooLarge {
                padding: self.padding,
                max,
            });
        }
        Ok(())
    }
}

fn dscp_of(type_p: u32) -> Option<u8> {
    if type_p & !DSCP_MASK == 0 {
        Some(((type_p >> 24) & 0x3F) as u8)
    } else {
        None
    }
}

impl RequestPreamble {
    pub fn sender_addr(&self) -> Option<IpAddr> {
        addr_from_raw(self.ipvn, &self.sender_addr_raw)
    }

    pub fn receiver_addr(&self) -> Option<IpAddr> {
        addr_from_raw(self.ipvn, &self.receiver_addr_raw)
    }

    /// Byte length of the slot blocks that follow the preamble (without their HMAC).
    /// The caller should bound `num_slots` by policy before reading that much.
    pub fn slots_len(&self) -> u64 {
        self.num_slots as u64 * BLOCK as u64
    }

    /// The DSCP of the Type-P descriptor, `None` if it is not a DSCP.
    pub fn dscp(&self) -> Option<u8> {
        dscp_of(self.type_p)
    }

    /// The preamble-level checks of protocol.md §9, assuming the larger (secure) test header
    /// for the padding limit.
    pub fn validate(&self) -> Result<(), RequestProblem> {
        self.validate_in_mode(None)
    }

    /// As [`validate`](Self::validate), with the padding limit for `mode`'s header.
    pub fn validate_in_mode(&self, mode: Option<Mode>) -> Result<(), RequestProblem> {
        if self.ipvn != 4 && self.ipvn != 6 {
            return Err(RequestProblem::UnknownIpVersion(self.ipvn));
        }
        Common {
            ipv6: self.ipvn == 6,
            conf_sender: self.conf_sender,
            conf_receiver: self.conf_receiver,
            num_slots: self.num_slots as u64,
            num_packets: self.num_packets,
            type_p: self.type_p,
            padding: self.padding,
        }
        .check(mode)
    }

    /// Validates the preamble (conservative padding limit) and the slots, and builds
    /// the typed request.
    pub fn into_request(self, slots: &[RawSlot]) -> Result<RequestSession, RequestProblem> {
        self.into_request_in_mode(slots, None)
    }

    /// As [`into_request`](Self::into_request) with the padding limit for `mode`.
    pub fn into_request_in_mode(
        self,
        slots: &[RawSlot],
        mode: Option<Mode>,
    ) -> Result<RequestSession, RequestProblem> {
        self.validate_in_mode(mode)?;
        if slots.len() as u64 != self.num_slots as u64 {
            return Err(RequestProblem::SlotCountMismatch {
                declared: self.num_slots,
                found: slots.len(),
            });
        }
        let typed = slots
            .iter()
            .enumerate()
            .map(|(index, s)| {
                s.to_slot().ok_or(RequestProblem::UnknownSlotType {
                    index,
                    slot_type: s.slot_type,
                })
            })
            .collect::<Result<Vec<Slot>, RequestProblem>>()?;
        let (Some(sender_addr), Some(receiver_addr)) = (self.sender_addr(), self.receiver_addr())
        else {
            return Err(RequestProblem::UnknownIpVersion(self.ipvn));
        };
        Ok(RequestSession {
            conf_sender: self.conf_sender,
            conf_receiver: self.conf_receiver,
            num_packets: self.num_packets,
            sender_port: self.sender_port,
            receiver_port: self.receiver_port,
            sender_addr,
            receiver_addr,
            sid: self.sid,
            padding: self.padding,
            start_time: self.start_time,
            timeout: self.timeout,
            type_p: self.type_p,
            slots: typed,
        })
    }
}

/// A Request-Session as the client builds it and the server accepts it.
/// Serde derives let control hand it to a tester over IPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSession {
    pub conf_sender: bool,
    pub conf_receiver: bool,
    pub num_packets: u32,
    pub sender_port: u16,
    pub receiver_port: u16,
    pub sender_addr: IpAddr,
    pub receiver_addr: IpAddr,
    pub sid: Sid,
    pub padding: u32,
    pub start_time: Num64,
    pub timeout: Num64,
    pub type_p: u32,
    pub slots: Vec<Slot>,
}

/// The 16-byte address field: IPv4 in the first 4 bytes then 12 MBZ; IPv6 as is.
/// In a mixed-family request (a `validate` problem) IPv4 is written v4-mapped.
fn addr_field(a: IpAddr, ipv6: bool) -> [u8; 16] {
    let mut f = [0u8; 16];
    match (a, ipv6) {
        (IpAddr::V4(v4), false) => f[..4].copy_from_slice(&v4.octets()),
        (IpAddr::V4(v4), true) => f = v4.to_ipv6_mapped().octets(),
        (IpAddr::V6(v6), _) => f = v6.octets(),
    }
    f
}

/// A stored Request-Session parsed from an `.owp` header (protocol.md §7.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRequest {
    pub preamble: RequestPreamble,
    pub slots: Vec<RawSlot>,
    /// Bytes consumed: 112 + 16 × nslots + 16.
    pub len: usize,
}

impl RequestSession {
    /// IPVN 6 if either address is IPv6, else 4.
    pub fn ipvn(&self) -> u8 {
        if self.sender_addr.is_ipv6() || self.receiver_addr.is_ipv6() {
            6
        } else {
            4
        }
    }

    /// The DSCP of the Type-P descriptor, `None` if it is not a DSCP (protocol.md §2.1.2).
    pub fn dscp(&self) -> Option<u8> {
        dscp_of(self.type_p)
    }

    /// The protocol.md §9 checks a server would make, plus mixed address families; a client
    /// should call this before sending. Padding limit for the secure header.
    pub fn validate(&self) -> Result<(), RequestProblem> {
        self.validate_in_mode(None)
    }

    pub fn validate_in_mode(&self, mode: Option<Mode>) -> Result<(), RequestProblem> {
        if self.sender_addr.is_ipv6() != self.receiver_addr.is_ipv6() {
            return Err(RequestProblem::MixedAddressFamilies);
        }
        Common {
            ipv6: self.ipvn() == 6,
            conf_sender: self.conf_sender,
            conf_receiver: self.conf_receiver,
            num_slots: self.slots.len() as u64,
            num_packets: self.num_packets,
            type_p: self.type_p,
            padding: self.padding,
        }
        .check(mode)
    }

    /// The 96-byte preamble (blocks 0..5; the HMAC block is added by crypto).
    pub fn encode_preamble(&self) -> [u8; 96] {
        let ipv6 = self.ipvn() == 6;
        let mut b = [0u8; PREAMBLE_LEN];
        b[0] = 1;
        b[1] = self.ipvn();
        b[2] = u8::from(self.conf_sender);
        b[3] = u8::from(self.conf_receiver);
        // More than u32::MAX slots cannot be sent; saturate (validate() is the guard
        // a caller uses, and such a Vec is not constructible in practice).
        let nslots = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        b[4..8].copy_from_slice(&nslots.to_be_bytes());
        b[8..12].copy_from_slice(&self.num_packets.to_be_bytes());
        b[12..14].copy_from_slice(&self.sender_port.to_be_bytes());
        b[14..16].copy_from_slice(&self.receiver_port.to_be_bytes());
        b[16..32].copy_from_slice(&addr_field(self.sender_addr, ipv6));
        b[32..48].copy_from_slice(&addr_field(self.receiver_addr, ipv6));
        b[48..64].copy_from_slice(&self.sid.0);
        b[64..68].copy_from_slice(&self.padding.to_be_bytes());
        b[68..76].copy_from_slice(&self.start_time.to_be_bytes());
        b[76..84].copy_from_slice(&self.timeout.to_be_bytes());
        b[84..88].copy_from_slice(&self.type_p.to_be_bytes());
        b
    }

    /// The slot blocks, 16 bytes each (the trailing HMAC block is added by crypto).
    pub fn encode_slots(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.slots.len() * BLOCK);
        for s in &self.slots {
            let mut blk = [0u8; BLOCK];
            blk[0] = match s.kind {
                SlotKind::Exponential => 0,
                SlotKind::Fixed => 1,
            };
            blk[8..16].copy_from_slice(&s.param.to_be_bytes());
            out.extend_from_slice(&blk);
        }
        out
    }

    /// Step 1: the preamble. Only a wrong command byte is an error; everything else is
    /// left to `validate` (protocol.md §9).
    pub fn decode_preamble(b: &[u8; 96]) -> Result<RequestPreamble, WireError> {
        if b[0] != 1 {
            return Err(WireError::WrongCommand {
                message: "Request-Session",
                found: b[0],
                expected: 1,
            });
        }
        Ok(RequestPreamble {
            ipvn: b[1] & 0x0F,
            conf_sender: b[2] != 0,
            conf_receiver: b[3] != 0,
            num_slots: be_u32(b, 4),
            num_packets: be_u32(b, 8),
            sender_port: be_u16(b, 12),
            receiver_port: be_u16(b, 14),
            sender_addr_raw: array16(b, 16),
            receiver_addr_raw: array16(b, 32),
            sid: Sid(array16(b, 48)),
            padding: be_u32(b, 64),
            start_time: be_num64(b, 68),
            timeout: be_num64(b, 76),
            type_p: be_u32(b, 84),
        })
    }

    /// Step 2: the slot blocks (a whole number of blocks). Slot MBZ bytes are ignored
    /// and unknown types kept, as the reference does not check the former and the
    /// latter is a `validate` problem.
    pub fn decode_slots(bytes: &[u8]) -> Result<Vec<RawSlot>, WireError> {
        if !bytes.len().is_multiple_of(BLOCK) {
            return Err(WireError::NotBlocks {
                message: "Request-Session slots",
                found: bytes.len(),
            });
        }
        Ok(bytes
            .chunks_exact(BLOCK)
            .map(|c| RawSlot {
                slot_type: c[0],
                param: be_num64(c, 8),
            })
            .collect())
    }

    /// The 112-byte stored preamble: the 96 bytes and a zero HMAC field.
    pub fn encode_stored_preamble(&self) -> [u8; STORED_PREAMBLE_LEN] {
        let mut b = [0u8; STORED_PREAMBLE_LEN];
        b[..PREAMBLE_LEN].copy_from_slice(&self.encode_preamble());
        b
    }

    /// The whole stored form of `.owp` v2/v3 headers: stored preamble, slot blocks and
    /// a zero block where the slots' HMAC would be (protocol.md §7.7).
    pub fn encode_stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STORED_PREAMBLE_LEN + (self.slots.len() + 1) * BLOCK);
        out.extend_from_slice(&self.encode_stored_preamble());
        out.extend_from_slice(&self.encode_slots());
        out.extend_from_slice(&[0u8; BLOCK]);
        out
    }

    /// Parses the stored form from the start of `bytes` (which may continue with other
    /// data). The zero HMAC fields are not checked. No allocation larger than `bytes`.
    pub fn decode_stored(bytes: &[u8]) -> Result<StoredRequest, WireError> {
        let mut pre = [0u8; PREAMBLE_LEN];
        match bytes.get(..PREAMBLE_LEN) {
            Some(s) if bytes.len() >= STORED_PREAMBLE_LEN => pre.copy_from_slice(s),
            _ => {
                return Err(WireError::BadLength {
                    message: "stored Request-Session",
                    field: "preamble",
                    found: bytes.len(),
                    expected: STORED_PREAMBLE_LEN,
                });
            }
        }
        let preamble = RequestSession::decode_preamble(&pre)?;
        let total = usize::try_from(preamble.slots_len())
            .ok()
            .and_then(|s| s.checked_add(STORED_PREAMBLE_LEN + BLOCK))
            .unwrap_or(usize::MAX);
        let slot_bytes = bytes
            .get(STORED_PREAMBLE_LEN..total.saturating_sub(BLOCK))
            .filter(|_| bytes.len() >= total)
            .ok_or(WireError::BadLength {
                message: "stored Request-Session",
                field: "preamble, slots and zero block",
                found: bytes.len(),
                expected: total,
            })?;
        let slots = RequestSession::decode_slots(slot_bytes)?;
        Ok(StoredRequest {
            preamble,
            slots,
            len: total,
        })
    }
}
