//! [`ControlStream`]: a blocking control connection for the clients (owping, owfetch,
//! owup): a `Read + Write` stream plus the [`ControlCipher`] of its client end.
//!
//! The handshake (Server-Greeting, Set-Up-Response, Server-Start bytes 0..31) is clear
//! and goes through [`ControlStream::read_raw`]/[`ControlStream::write_raw`]; once the
//! keys and IVs are known, [`ControlStream::set_cipher`] installs the cipher.

use super::mac::HMAC_LEN;
use super::{BLOCK, ControlCipher, CryptoError};
use std::io::{self, Read, Write};

/// Largest chunk read at once by [`ControlStream::read_blocks`]: the block count often
/// comes from the peer (slot counts, record counts), so memory grows only as data
/// actually arrives instead of being reserved up front.
const READ_CHUNK: usize = 64 * BLOCK;

/// Errors of a blocking control connection: transport failures are kept apart from
/// crypto failures (an HMAC mismatch is fatal and the reference closes silently).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("control connection I/O while {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// `read_blocks` was asked for more bytes than fit in memory addressing.
    #[error("control read of {blocks} blocks is too large")]
    TooLarge { blocks: usize },
}

impl StreamError {
    /// True if the peer's HMAC did not verify.
    pub fn is_hmac_mismatch(&self) -> bool {
        matches!(self, StreamError::Crypto(CryptoError::HmacMismatch { .. }))
    }
}

/// A blocking control connection with its cipher state.
#[derive(Debug)]
pub struct ControlStream<S> {
    stream: S,
    cipher: ControlCipher,
}

impl<S: Read + Write> ControlStream<S> {
    /// Starts in open mode, as every connection does until Server-Start.
    pub fn new(stream: S) -> Self {
        ControlStream {
            stream,
            cipher: ControlCipher::open_mode(),
        }
    }

    /// Installs the cipher once the handshake has fixed mode, keys and IVs.
    pub fn set_cipher(&mut self, cipher: ControlCipher) {
        self.cipher = cipher;
    }

    /// The cipher state (e.g. for Server-Start bytes 32..47 via `open`).
    pub fn cipher_mut(&mut self) -> &mut ControlCipher {
        &mut self.cipher
    }

    /// Seals a message (see [`ControlCipher::seal`]) and sends it with ONE `write_all`,
    /// so e.g. Request-Session with its slots leaves in a single write rather than one
    /// small write per block (fewer segments, no Nagle stalls between parts).
    pub fn write_message(&mut self, segments: &[&[u8]]) -> Result<(), StreamError> {
        let wire = self.cipher.seal(segments)?;
        self.write_all(&wire, "writing a control message")
    }

    /// Writes clear handshake bytes (Set-Up-Response), bypassing the cipher.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.write_all(bytes, "writing handshake bytes")
    }

    /// Reads exactly `n` blocks, decrypts them and appends them to the receive HMAC.
    pub fn read_blocks(&mut self, n: usize) -> Result<Vec<u8>, StreamError> {
        let total = n
            .checked_mul(BLOCK)
            .ok_or(StreamError::TooLarge { blocks: n })?;
        let mut out = Vec::with_capacity(total.min(READ_CHUNK));
        let mut chunk = [0u8; READ_CHUNK];
        while out.len() < total {
            let want = (total - out.len()).min(READ_CHUNK);
            let Some(buf) = chunk.get_mut(..want) else {
                return Err(StreamError::TooLarge { blocks: n });
            };
            self.read_exact(buf, "reading control blocks")?;
            self.cipher.open(buf)?;
            out.extend_from_slice(buf);
        }
        Ok(out)
    }

    /// Reads one HMAC field and verifies it against the receive HMAC.
    pub fn read_hmac(&mut self) -> Result<(), StreamError> {
        let mut block = [0u8; HMAC_LEN];
        self.read_exact(&mut block, "reading an HMAC field")?;
        self.cipher.verify_hmac(&block)?;
        Ok(())
    }

    /// Reads clear handshake bytes (Server-Greeting, Server-Start bytes 0..31, and
    /// 32..47 when Accept is non-zero), bypassing the cipher.
    pub fn read_raw(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        self.read_exact(buf, "reading handshake bytes")
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn into_inner(self) -> S {
        self.stream
    }

    fn write_all(&mut self, bytes: &[u8], op: &'static str) -> Result<(), StreamError> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|source| StreamError::Io { op, source })
    }

    fn read_exact(&mut self, buf: &mut [u8], op: &'static str) -> Result<(), StreamError> {
        self.stream
            .read_exact(buf)
            .map_err(|source| StreamError::Io { op, source })
    }
}
