//! [`ControlCipher`]: the sans-IO crypto state of one end of an OWAMP-Control
//! connection (protocol.md §1.4–1.6, RFC 4656 §3.1–3.2).
//!
//! Each direction is an AES-128-CBC stream whose chain continues across messages (the
//! IV of a block is the previous ciphertext block in that direction; there is no
//! per-message reset) plus a running HMAC-SHA1 context over the *plaintext*. Each HMAC
//! field carries the truncated digest of everything since the previous HMAC field; the
//! field itself is encrypted (it is part of the chain) but never fed to the HMAC.
//!
//! Open mode uses the same type with no keys: nothing is encrypted, HMAC fields are
//! sent as zeros and never checked (protocol.md §1.4, §1.5).

use super::mac::{HMAC_LEN, RunningHmac};
use super::{BLOCK, CryptoError, SessionKeys, constant_time_eq};
use aes::Aes128;
use aes::cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit};

/// Which end of the control connection this state belongs to. The client sends with
/// Client-IV and receives with Server-IV; the server the reverse (protocol.md §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// The crypto state of one end of a control connection.
pub struct ControlCipher {
    keyed: Option<Keyed>,
    role: Role,
}

/// Authenticated/encrypted modes (2 and 4 protect control identically, protocol.md §1.4).
struct Keyed {
    enc: cbc::Encryptor<Aes128>,
    dec: cbc::Decryptor<Aes128>,
    send_mac: RunningHmac,
    recv_mac: RunningHmac,
}

impl ControlCipher {
    /// Open mode (mode 1): no encryption; HMAC fields are zeros and not verified.
    ///
    /// The role only labels errors; open mode behaves the same at both ends.
    pub fn open_mode() -> Self {
        ControlCipher {
            keyed: None,
            role: Role::Client,
        }
    }

    /// Authenticated or encrypted mode. `client_iv` is Set-Up-Response's Client-IV and
    /// `server_iv` is Server-Start's Server-IV.
    pub fn new(role: Role, keys: &SessionKeys, client_iv: &[u8; 16], server_iv: &[u8; 16]) -> Self {
        let (send_iv, recv_iv) = match role {
            Role::Client => (client_iv, server_iv),
            Role::Server => (server_iv, client_iv),
        };
        let key = (&keys.aes).into();
        ControlCipher {
            keyed: Some(Keyed {
                enc: cbc::Encryptor::<Aes128>::new(key, send_iv.into()),
                dec: cbc::Decryptor::<Aes128>::new(key, recv_iv.into()),
                send_mac: RunningHmac::new(&keys.hmac),
                recv_mac: RunningHmac::new(&keys.hmac),
            }),
            role,
        }
    }

    /// True for open mode (no keys).
    pub fn is_open_mode(&self) -> bool {
        self.keyed.is_none()
    }

    /// The role given to [`ControlCipher::new`] (`Client` for open mode).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Turns a message's plaintext segments into wire bytes: for each segment (whole
    /// blocks, possibly empty) its blocks, then one HMAC block covering that segment and
    /// anything left pending in the send HMAC (protocol.md §1.6). Nothing is changed if any
    /// segment is not block-aligned.
    ///
    /// Examples: Request-Session is `[preamble (6 blocks), slots]`; a Fetch response is
    /// several messages, each with its own segment list.
    pub fn seal(&mut self, segments: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
        for seg in segments {
            check_aligned("segment to seal", seg.len())?;
        }
        let total = segments
            .iter()
            .map(|s| s.len() + HMAC_LEN)
            .fold(0usize, usize::saturating_add);
        let mut out = Vec::with_capacity(total);
        for seg in segments {
            let start = out.len();
            out.extend_from_slice(seg);
            match &mut self.keyed {
                None => out.extend_from_slice(&[0u8; HMAC_LEN]),
                Some(k) => {
                    k.send_mac.update(seg);
                    let digest = k.send_mac.finish();
                    out.extend_from_slice(&digest);
                    if let Some(tail) = out.get_mut(start..) {
                        cbc_encrypt_in_place(&mut k.enc, tail);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Encrypts blocks and feeds them to the send HMAC without emitting an HMAC field:
    /// only for Server-Start bytes 32..47 (protocol.md §1.3), whose plaintext is then covered by
    /// the HMAC of the next server→client message.
    pub fn seal_without_hmac(&mut self, blocks: &[u8]) -> Result<Vec<u8>, CryptoError> {
        check_aligned("blocks to seal without HMAC", blocks.len())?;
        let mut out = blocks.to_vec();
        if let Some(k) = &mut self.keyed {
            k.send_mac.update(&out);
            cbc_encrypt_in_place(&mut k.enc, &mut out);
        }
        Ok(out)
    }

    /// Decrypts received blocks in place (continuing the receive chain) and appends
    /// their plaintext to the receive HMAC. Use for every received block that is not an
    /// HMAC field, including Server-Start bytes 32..47 on the client.
    pub fn open(&mut self, cipher: &mut [u8]) -> Result<(), CryptoError> {
        check_aligned("blocks to open", cipher.len())?;
        if let Some(k) = &mut self.keyed {
            cbc_decrypt_in_place(&mut k.dec, cipher);
            k.recv_mac.update(cipher);
        }
        Ok(())
    }

    /// Checks a received HMAC field: decrypts it (it is part of the receive chain), compares
    /// it in constant time with the receive HMAC's truncated digest and resets that HMAC.
    /// Open mode: always Ok, the field is not looked at (protocol.md §1.5).
    pub fn verify_hmac(&mut self, cipher_block: &[u8; 16]) -> Result<(), CryptoError> {
        let Some(k) = &mut self.keyed else {
            return Ok(());
        };
        let mut block = *cipher_block;
        cbc_decrypt_in_place(&mut k.dec, &mut block);
        let expected = k.recv_mac.finish();
        if constant_time_eq(&block, &expected) {
            Ok(())
        } else {
            Err(CryptoError::HmacMismatch { role: self.role })
        }
    }
}

impl std::fmt::Debug for ControlCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key schedules, chain state and HMAC state are secret: show only the shape.
        f.debug_struct("ControlCipher")
            .field("role", &self.role)
            .field("open_mode", &self.keyed.is_none())
            .finish()
    }
}

/// AES-128 encryption of one block (ECB), for the test-session key derivation of spec
/// §3.1 (`Test AES key = AES-ECB(key = SID, control AES key)`).
pub fn aes_ecb_encrypt_block(key: &[u8; 16], block: &mut [u8; 16]) {
    let aes = Aes128::new(key.into());
    aes.encrypt_block(block.into());
}

fn check_aligned(what: &'static str, len: usize) -> Result<(), CryptoError> {
    if len.is_multiple_of(BLOCK) {
        Ok(())
    } else {
        Err(CryptoError::NotBlockAligned { what, len })
    }
}

/// CBC-encrypts whole blocks in place, continuing `enc`'s chain. A trailing partial
/// block (callers check alignment first) is left untouched.
pub(crate) fn cbc_encrypt_in_place(enc: &mut cbc::Encryptor<Aes128>, buf: &mut [u8]) {
    for chunk in buf.chunks_exact_mut(BLOCK) {
        enc.encrypt_block_mut(aes::Block::from_mut_slice(chunk));
    }
}

/// CBC-decrypts whole blocks in place, continuing `dec`'s chain.
pub(crate) fn cbc_decrypt_in_place(dec: &mut cbc::Decryptor<Aes128>, buf: &mut [u8]) {
    for chunk in buf.chunks_exact_mut(BLOCK) {
        dec.decrypt_block_mut(aes::Block::from_mut_slice(chunk));
    }
}
