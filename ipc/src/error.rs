//! The one error type of the IPC layer.

use std::os::fd::RawFd;

/// Everything that can go wrong moving a message between owampd processes.
///
/// A peer that sends something wrong gets one of these, never a panic: the receiving
/// side decides whether that ends the peer (docs/processes.md "IPC").
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The peer closed its end (zero-length read on the SOCK_SEQPACKET socket).
    #[error("peer closed the channel")]
    Closed,
    /// An inherited fd from the fixed layout ([`crate::fds`]) is not open.
    #[error("fd {fd} missing")]
    MissingFd { fd: RawFd },
    /// A message (encoded) is over the bound.
    #[error("message of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// The kernel truncated a received message or its control data (MSG_TRUNC/MSG_CTRUNC).
    #[error("received message truncated ({what})")]
    Truncated { what: &'static str },
    /// More fds than a message may carry were offered for sending.
    #[error("{count} fds in one message, at most {max} allowed")]
    TooManyFds { count: usize, max: usize },
    /// The bytes did not decode as the expected message type.
    #[error("malformed message ({len} bytes): {reason}")]
    Decode { len: usize, reason: String },
    /// Encoding failed (a type the codec cannot represent).
    #[error("cannot encode message: {reason}")]
    Encode { reason: String },
    /// The peer speaks another protocol version (first message `Hello`).
    #[error("IPC protocol version mismatch: ours {ours}, peer {theirs}")]
    VersionMismatch { ours: u32, theirs: u32 },
    /// A system call on the channel failed.
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::Error,
    },
}
