//! Control session keys and the Token of Set-Up-Response (protocol.md §1.2, §1.4; RFC 4656
//! §3.1): `Token = AES-128-CBC(key = dk, IV = 0, Challenge ‖ AES key ‖ HMAC key)`,
//! four blocks, no padding.

use super::cipher::{cbc_decrypt_in_place, cbc_encrypt_in_place};
use super::{CryptoError, constant_time_eq, random_bytes};
use aes::Aes128;
use aes::cipher::KeyIvInit;

/// Length of the Token field of Set-Up-Response.
pub const TOKEN_LEN: usize = 64;

/// The two control session keys the client picks at random and sends in the Token.
///
/// The same AES key serves both control directions; the HMAC key is shared too, with a
/// separate running context per direction (protocol.md §1.4). The test-session keys of spec
/// §3.1 are derived from these by `owamp::packet`.
///
/// Debug never prints the bytes. On drop the fields are overwritten with zeros; this is
/// best effort (no volatile writes in safe Rust, and moved-from copies or the expanded
/// AES/HMAC states inside a [`super::ControlCipher`] are not wiped).
///
/// Serde lets the server's control process hand the keys to the tester of a session,
/// which derives the test-session keys from them.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionKeys {
    pub aes: [u8; 16],
    pub hmac: [u8; 32],
}

impl SessionKeys {
    /// Fresh random keys (client side, protocol.md §1.4).
    pub fn random() -> Result<Self, CryptoError> {
        Ok(SessionKeys {
            aes: random_bytes("AES session key")?,
            hmac: random_bytes("HMAC session key")?,
        })
    }
}

impl PartialEq for SessionKeys {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.aes, &other.aes) & constant_time_eq(&self.hmac, &other.hmac)
    }
}

impl Eq for SessionKeys {}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys { aes: <redacted>, hmac: <redacted> }")
    }
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.aes.fill(0);
        self.hmac.fill(0);
        // Make the zeroed memory observable so the stores are not removed as dead.
        std::hint::black_box(&mut self.aes);
        std::hint::black_box(&mut self.hmac);
    }
}

/// The plaintext of the Token: the server's challenge and the client's session keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub challenge: [u8; 16],
    pub keys: SessionKeys,
}

impl Token {
    /// Encrypts the Token for Set-Up-Response with `dk` (from [`super::derive_key`]).
    pub fn encrypt(&self, dk: &[u8; 16]) -> [u8; TOKEN_LEN] {
        let mut buf = self.plaintext();
        let mut enc = cbc::Encryptor::<Aes128>::new(dk.into(), &[0u8; 16].into());
        cbc_encrypt_in_place(&mut enc, &mut buf);
        buf
    }

    /// Decrypts a Token. This cannot fail: any 64 bytes decrypt to *something*; the
    /// server then checks the challenge with [`Token::challenge_matches`] (protocol.md §1.2
    /// step 4). For an unknown KeyID, decrypt with [`super::derive_decoy_key`] and do
    /// the same comparison, so both paths cost the same.
    pub fn decrypt(dk: &[u8; 16], token: &[u8; TOKEN_LEN]) -> Token {
        let mut buf = *token;
        let mut dec = cbc::Decryptor::<Aes128>::new(dk.into(), &[0u8; 16].into());
        cbc_decrypt_in_place(&mut dec, &mut buf);
        let (challenge, rest) = buf.split_at(16);
        let (aes, hmac) = rest.split_at(16);
        let tok = Token {
            challenge: to_array(challenge),
            keys: SessionKeys {
                aes: to_array(aes),
                hmac: to_array(hmac),
            },
        };
        buf.fill(0);
        std::hint::black_box(&mut buf);
        tok
    }

    /// Constant-time comparison of the decrypted challenge with the one the server sent.
    pub fn challenge_matches(&self, sent: &[u8; 16]) -> bool {
        constant_time_eq(&self.challenge, sent)
    }

    fn plaintext(&self) -> [u8; TOKEN_LEN] {
        let mut buf = [0u8; TOKEN_LEN];
        let (c, rest) = buf.split_at_mut(16);
        let (a, h) = rest.split_at_mut(16);
        c.copy_from_slice(&self.challenge);
        a.copy_from_slice(&self.keys.aes);
        h.copy_from_slice(&self.keys.hmac);
        buf
    }
}

/// Copies a slice whose length the caller has fixed by `split_at` into an array,
/// zero-filling on the (impossible) short case instead of panicking.
fn to_array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, i) in out.iter_mut().zip(s) {
        *o = *i;
    }
    out
}
