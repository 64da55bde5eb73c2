//! The wire codec of internal messages, kept in one place so it can be swapped
//! (docs/processes.md "IPC"): serde + bincode 2.0.1, standard config (little-endian, varints).

use serde::{Serialize, de::DeserializeOwned};

use crate::channel::MAX_MESSAGE;
use crate::error::IpcError;

/// bincode's own allocation limit matches the message bound, so a length prefix inside a
/// message cannot make the decoder allocate more than a message could hold.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE>()
}

pub(crate) fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, IpcError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| IpcError::Encode {
        reason: e.to_string(),
    })
}

/// Decode exactly one message: trailing bytes are an error, so one datagram is one message.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, IpcError> {
    let (msg, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| IpcError::Decode {
            len: bytes.len(),
            reason: e.to_string(),
        })?;
    if used != bytes.len() {
        return Err(IpcError::Decode {
            len: bytes.len(),
            reason: format!("{} trailing bytes", bytes.len() - used),
        });
    }
    Ok(msg)
}
