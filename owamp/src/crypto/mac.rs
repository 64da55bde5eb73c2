//! The running HMAC of one control direction (protocol.md §1.5): HMAC-SHA1 keyed with the
//! 32-byte HMAC session key, digest truncated to 16 bytes, context reset after every
//! HMAC field.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

/// SHA-1 input block size: HMAC keys are padded (or first hashed) to this length.
const SHA1_BLOCK: usize = 64;

/// Length of an HMAC field on the wire (the 20-byte SHA-1 digest truncated, protocol.md §1.5).
pub const HMAC_LEN: usize = 16;

/// A running HMAC-SHA1 context that is reset every time its digest is taken.
#[derive(Clone)]
pub struct RunningHmac {
    /// The context accumulating data since the last reset.
    mac: Hmac<Sha1>,
    /// A keyed context with no data: cloned to reset (hmac's `reset` feature, which
    /// would give `finalize_reset`, is not enabled in the workspace).
    fresh: Hmac<Sha1>,
}

impl RunningHmac {
    /// A fresh context keyed with `key` (any length).
    ///
    /// RFC 2104 §2: a key longer than the 64-byte SHA-1 block is first hashed, and the
    /// key is then zero-padded to 64 bytes. Doing that here lets us use the infallible
    /// fixed-size constructor instead of `new_from_slice`'s `Result`.
    pub fn new(key: &[u8]) -> Self {
        let mut block = [0u8; SHA1_BLOCK];
        if key.len() > SHA1_BLOCK {
            let hashed = Sha1::digest(key);
            block[..hashed.len()].copy_from_slice(&hashed);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mac = <Hmac<Sha1> as KeyInit>::new(&block.into());
        block.fill(0);
        std::hint::black_box(&block);
        RunningHmac {
            fresh: mac.clone(),
            mac,
        }
    }

    /// Appends plaintext to the running digest.
    pub fn update(&mut self, data: &[u8]) {
        self.mac.update(data);
    }

    /// The full 20-byte digest of everything appended since the last reset; resets.
    pub fn finish_full(&mut self) -> [u8; 20] {
        let done = std::mem::replace(&mut self.mac, self.fresh.clone());
        done.finalize().into_bytes().into()
    }

    /// The 16-byte HMAC field (protocol.md §1.5); resets the context.
    pub fn finish(&mut self) -> [u8; HMAC_LEN] {
        let full = self.finish_full();
        let mut out = [0u8; HMAC_LEN];
        out.copy_from_slice(&full[..HMAC_LEN]);
        out
    }
}

impl std::fmt::Debug for RunningHmac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The inner state is derived from the key: never print it.
        f.write_str("RunningHmac(..)")
    }
}
