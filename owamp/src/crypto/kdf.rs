//! Key derivation from the shared passphrase (protocol.md §1.4, RFC 4656 §3.1).

use super::{CryptoError, random_bytes};

/// `PBKDF2(PRF = HMAC-SHA1, P = passphrase, S = salt, c = count, dkLen = 16)`.
///
/// Standard RFC 2898 PBKDF2 (the reference's I2util `pbkdf2.c`, block index from 1).
/// A `count` of 0 behaves like 1 (one PRF application); the minimum a client accepts
/// from a greeting is a policy decision left to the caller (protocol.md §1.1 recommends
/// rejecting Count < 1024).
pub fn pbkdf2_hmac_sha1_16(passphrase: &[u8], salt: &[u8], count: u32) -> [u8; 16] {
    let mut dk = [0u8; 16];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passphrase, salt, count, &mut dk);
    dk
}

/// `dk` from the passphrase and the greeting's Salt and Count (protocol.md §1.4).
pub fn derive_key(passphrase: &[u8], salt: &[u8; 16], count: u32) -> [u8; 16] {
    pbkdf2_hmac_sha1_16(passphrase, salt, count)
}

/// A key derived exactly like [`derive_key`] but from a fresh random passphrase.
///
/// For the server when the KeyID is unknown (protocol.md §1.2 step 3): it must spend the same
/// PBKDF2 work and then decrypt the Token and compare the challenge as for a known user,
/// and only then reject with Accept=1, so that response time does not reveal which
/// usernames exist. The random passphrase has the length of a typical `.pfs` entry.
pub fn derive_decoy_key(salt: &[u8; 16], count: u32) -> Result<[u8; 16], CryptoError> {
    let decoy: [u8; 16] = random_bytes("decoy passphrase")?;
    Ok(derive_key(&decoy, salt, count))
}
