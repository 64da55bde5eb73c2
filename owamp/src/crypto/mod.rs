//! OWAMP-Control cryptography (RFC 4656 §3.1, protocol.md §1.2–1.6): PBKDF2 key derivation,
//! the Token carried in Set-Up-Response, and the per-connection state of the two
//! control directions (AES-128-CBC chained across messages + running truncated
//! HMAC-SHA1).
//!
//! Layout:
//! - [`kdf`]: `dk = PBKDF2-HMAC-SHA1(passphrase, salt, count, 16)` (protocol.md §1.4).
//! - [`mac`]: the running, truncated HMAC-SHA1 context of one direction (protocol.md §1.5).
//! - [`token`]: [`SessionKeys`] and the 64-byte [`Token`] (protocol.md §1.4).
//! - [`cipher`]: [`ControlCipher`], sans-IO, used by the async control process.
//! - [`stream`]: [`ControlStream`], a blocking wrapper used by the clients.
//!
//! Test-session keys (protocol.md §3.1) live in `owamp::packet`; [`aes_ecb_encrypt_block`] is
//! exported for it.

pub mod cipher;
pub mod kdf;
pub mod mac;
pub mod stream;
pub mod token;

pub use cipher::{ControlCipher, Role, aes_ecb_encrypt_block};
pub use kdf::{derive_decoy_key, derive_key, pbkdf2_hmac_sha1_16};
pub use mac::RunningHmac;
pub use stream::{ControlStream, StreamError};
pub use token::{SessionKeys, Token};

/// AES block size; every control message after Server-Start is a whole number of blocks
/// (protocol.md §0).
pub const BLOCK: usize = 16;

/// Errors of the sans-IO crypto layer.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A buffer handed to the cipher is not a whole number of 16-byte blocks. This is a
    /// caller bug (the wire codecs produce whole blocks), reported instead of panicking.
    #[error("{what}: length {len} is not a multiple of 16 bytes")]
    NotBlockAligned { what: &'static str, len: usize },
    /// The HMAC field received from the peer does not match the running digest of the
    /// receive direction (protocol.md §1.5). The reference closes the connection with no reply.
    #[error("control HMAC mismatch on data received by the {role:?}")]
    HmacMismatch { role: Role },
    /// The operating system's random source failed.
    /// (`getrandom::Error` implements `std::error::Error` only with its `std` feature,
    /// so it is carried as a plain field rather than a `source`.)
    #[error("random source failed while generating {what}: {cause}")]
    Random {
        what: &'static str,
        cause: getrandom::Error,
    },
}

/// Compares two byte strings in time that depends only on their lengths (which are
/// public: every compared field has a fixed size), never on where they differ.
///
/// Used for the Token challenge (protocol.md §1.2 step 4) and HMAC fields (protocol.md §1.5), so a
/// peer cannot learn a correct prefix by timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

/// `N` bytes from the operating system's random source (challenges, salts, IVs, keys).
pub fn random_bytes<const N: usize>(what: &'static str) -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|cause| CryptoError::Random { what, cause })?;
    Ok(out)
}
