//! OWAMP (RFC 4656) as a library: everything about the protocol that is not a process.
//!
//! The server's control and tester processes and the clients all build on this crate.
//! It is sans-IO where it can be: codecs and crypto work on byte slices; the session
//! engines run over the small [`engine::TestSocket`] trait.
#![forbid(unsafe_code)]

pub mod addr;
pub mod crypto;
pub mod engine;
pub mod owp;
pub mod packet;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod time;
pub mod types;
pub mod wire;

pub use types::{
    AcceptCode, ErrorEstimate, Mode, ModeSet, NTP_UNIX_OFFSET, Num64, PacketRecord, Sid, SkipRange,
    Slot, SlotKind, Timestamp,
};
