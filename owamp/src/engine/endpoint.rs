//! What one end of a test session sets up before its loop runs, the same in
//! `owampd-tester` and owping: the packet format (protocol.md §3.2), the schedule
//! (§3.6), the clock with its kernel status (§4.3) and the test socket sized for the
//! session's rate.

use super::{SocketOptions, UdpTestSocket};
use crate::packet::{PacketError, PacketFormat, TestKeys};
use crate::schedule::{Schedule, packets_per_second};
use crate::time::{Clock, StatusProvider};
use crate::types::{Mode, Sid, Slot, Timestamp};
use std::net::{SocketAddr, UdpSocket};

/// Why an endpoint could not be set up; each says what it wraps, unchanged.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Format(#[from] PacketError),
    #[error(transparent)]
    Socket(std::io::Error),
}

/// The session as one end sees it: the accepted request's fields, the keys of a secure
/// mode, and where the clock's status comes from.
#[derive(Clone, Copy, Debug)]
pub struct EndpointSetup<'a> {
    pub mode: Mode,
    pub keys: Option<&'a TestKeys>,
    pub padding: u32,
    pub sid: Sid,
    pub start: Timestamp,
    pub slots: &'a [Slot],
    pub num_packets: u32,
    /// The Type-P DSCP, when the request named one.
    pub dscp: Option<u8>,
    /// The kernel's clock status (`sandbox::kernel_clock` in the binaries).
    pub clock_status: Option<StatusProvider>,
    /// `OWAMP_DEBUG_TIMEOFFSET`, seconds.
    pub debug_offset: f64,
}

/// Everything the sender or receiver loop runs with.
pub struct Endpoint {
    pub socket: UdpTestSocket,
    pub format: PacketFormat,
    pub schedule: Schedule,
    pub clock: Clock,
}

impl EndpointSetup<'_> {
    /// The mean send rate of the schedule (infinite for back-to-back packets).
    pub fn packets_per_second(&self) -> f64 {
        packets_per_second(self.slots)
    }

    /// Builds the format, schedule and clock, and prepares `udp` (bound already) for
    /// the session with `peer` ([`UdpTestSocket::new`], whose system calls the `engine`
    /// module's documentation lists for the tester's seccomp policy).
    pub fn open(&self, udp: UdpSocket, peer: SocketAddr) -> Result<Endpoint, EndpointError> {
        let format = PacketFormat::new(self.mode, self.keys, self.padding)?;
        let schedule = Schedule::new(self.sid, self.start, self.slots, self.num_packets);
        let clock = Clock::new(self.clock_status, self.debug_offset);
        let opts = SocketOptions {
            dscp: self.dscp,
            packet_len: format.len(),
            packets_per_second: self.packets_per_second(),
        };
        let socket = UdpTestSocket::new(udp, peer, opts).map_err(EndpointError::Socket)?;
        Ok(Endpoint {
            socket,
            format,
            schedule,
            clock,
        })
    }
}
