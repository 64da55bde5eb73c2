//! Command dispatch on the first plaintext block of a client command (protocol.md §2.0).

/// The command number in byte 0 of the first block (RFC 4656 §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandKind {
    RequestSession,
    StartSessions,
    StopSessions,
    FetchSession,
    /// Anything else, including 5 (TWAMP's Request-TW-Session): an OWAMP server closes.
    Unknown(u8),
}

impl CommandKind {
    pub fn from_byte(b: u8) -> CommandKind {
        match b {
            1 => CommandKind::RequestSession,
            2 => CommandKind::StartSessions,
            3 => CommandKind::StopSessions,
            4 => CommandKind::FetchSession,
            other => CommandKind::Unknown(other),
        }
    }

    /// The command of a decrypted first block.
    pub fn from_block(block: &[u8; 16]) -> CommandKind {
        CommandKind::from_byte(block[0])
    }

    pub fn as_byte(self) -> u8 {
        match self {
            CommandKind::RequestSession => 1,
            CommandKind::StartSessions => 2,
            CommandKind::StopSessions => 3,
            CommandKind::FetchSession => 4,
            CommandKind::Unknown(b) => b,
        }
    }
}
