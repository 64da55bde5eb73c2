//! One control connection's byte stream: the clear handshake, then whole blocks run
//! through `owamp::crypto::ControlCipher` (protocol.md §1.4–1.6). The cipher is sans-IO; this
//! is the async shell around it.
//!
//! Every read is bounded by the control timeout (protocol.md §2.0 "controltimeout"), except
//! where the caller explicitly waits without one (while test sessions run).

use owamp::crypto::{ControlCipher, CryptoError};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest single read we ever make from a client (Request-Session slots are read in
/// pieces of this size), so a hostile length field cannot make us allocate much.
pub const MAX_READ: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum ConnError {
    #[error("{peer}: connection closed by the client")]
    Closed { peer: SocketAddr },
    #[error("{peer}: I/O error: {source}")]
    Io {
        peer: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{peer}: no {what} within the control timeout")]
    Timeout {
        peer: SocketAddr,
        what: &'static str,
    },
    #[error("{peer}: {what}: {blocks} blocks is more than one read may take")]
    TooLarge {
        peer: SocketAddr,
        what: &'static str,
        blocks: usize,
    },
    #[error("{peer}: {source}")]
    Crypto {
        peer: SocketAddr,
        #[source]
        source: CryptoError,
    },
}

pub struct ControlConn<S> {
    stream: S,
    pub peer: SocketAddr,
    cipher: ControlCipher,
    timeout: Option<Duration>,
    /// Raw bytes read but not yet consumed. Reads go through [`ControlConn::fill`], which
    /// is cancel-safe, so the session can wait for the client and for its testers at
    /// once without losing a partly received message.
    rbuf: Vec<u8>,
    /// Sealed bytes queued by [`ControlConn::queue`] for one write later.
    wbuf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ControlConn<S> {
    /// `timeout`: None = wait forever (controltimeout 0).
    pub fn new(stream: S, peer: SocketAddr, timeout: Option<Duration>) -> Self {
        ControlConn {
            stream,
            peer,
            cipher: ControlCipher::open_mode(),
            timeout,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
        }
    }

    pub fn set_cipher(&mut self, cipher: ControlCipher) {
        self.cipher = cipher;
    }

    pub fn cipher_mut(&mut self) -> &mut ControlCipher {
        &mut self.cipher
    }

    fn crypto(&self, source: CryptoError) -> ConnError {
        ConnError::Crypto {
            peer: self.peer,
            source,
        }
    }

    /// One read of whatever the client sent (cancel-safe: nothing is consumed unless the
    /// read completes). Returns the number of buffered bytes.
    pub async fn fill(&mut self) -> Result<usize, ConnError> {
        let peer = self.peer;
        let mut tmp = [0u8; 4096];
        let n = self
            .stream
            .read(&mut tmp)
            .await
            .map_err(|source| ConnError::Io { peer, source })?;
        if n == 0 {
            return Err(ConnError::Closed { peer });
        }
        self.rbuf.extend_from_slice(tmp.get(..n).unwrap_or(&[]));
        Ok(self.rbuf.len())
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    async fn fill_to(&mut self, want: usize) -> Result<(), ConnError> {
        while self.rbuf.len() < want {
            self.fill().await?;
        }
        Ok(())
    }

    async fn read_exact_timed(
        &mut self,
        buf: &mut [u8],
        what: &'static str,
        timed: bool,
    ) -> Result<(), ConnError> {
        let peer = self.peer;
        let want = buf.len();
        match (timed, self.timeout) {
            (true, Some(t)) => tokio::time::timeout(t, self.fill_to(want))
                .await
                .map_err(|_| ConnError::Timeout { peer, what })??,
            _ => self.fill_to(want).await?,
        }
        let head = self.rbuf.get(..want).ok_or(ConnError::Closed { peer })?;
        buf.copy_from_slice(head);
        self.rbuf.drain(..want);
        Ok(())
    }

    /// Clear bytes (Set-Up-Response).
    pub async fn read_raw(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), ConnError> {
        self.read_exact_timed(buf, what, true).await
    }

    /// `n` blocks, decrypted (and fed to the receive HMAC).
    pub async fn read_blocks(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, ConnError> {
        if n.saturating_mul(16) > MAX_READ {
            return Err(ConnError::TooLarge {
                peer: self.peer,
                what,
                blocks: n,
            });
        }
        let mut buf = vec![0u8; n * 16];
        self.read_exact_timed(&mut buf, what, true).await?;
        self.cipher.open(&mut buf).map_err(|e| self.crypto(e))?;
        Ok(buf)
    }

    /// One block, decrypted; `timed = false` waits without the control timeout.
    pub async fn read_block(
        &mut self,
        what: &'static str,
        timed: bool,
    ) -> Result<[u8; 16], ConnError> {
        let mut buf = [0u8; 16];
        self.read_exact_timed(&mut buf, what, timed).await?;
        self.cipher.open(&mut buf).map_err(|e| self.crypto(e))?;
        Ok(buf)
    }

    /// An HMAC block: decrypted and checked (protocol.md §1.5; a mismatch closes the connection).
    pub async fn read_hmac(&mut self, what: &'static str) -> Result<(), ConnError> {
        let mut buf = [0u8; 16];
        self.read_exact_timed(&mut buf, what, true).await?;
        self.cipher.verify_hmac(&buf).map_err(|e| self.crypto(e))
    }

    /// `bytes` as they are, after anything still queued, in one write.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.wbuf.extend_from_slice(bytes);
        self.flush_queued().await
    }

    /// One message: its segments, each followed by its HMAC block, in one write.
    pub async fn send(&mut self, segments: &[&[u8]]) -> Result<(), ConnError> {
        self.queue(segments)?;
        self.flush_queued().await
    }

    /// Writes `clear` then `blocks` sealed without an HMAC block (encrypted and fed to
    /// the send HMAC), in ONE write: Server-Start is 32 clear octets and one sealed
    /// block (protocol.md §1.3), and splitting it made the tail wait for the client's
    /// delayed ACK (~40 ms per connection).
    pub async fn send_clear_then_sealed(
        &mut self,
        clear: &[u8],
        blocks: &[u8],
    ) -> Result<(), ConnError> {
        self.wbuf.extend_from_slice(clear);
        self.queue_sealed(blocks)?;
        self.flush_queued().await
    }

    /// [`ControlConn::send`] without the write: the sealed message waits for the next
    /// write ([`ControlConn::flush_queued`], or any other), so a reply of several
    /// messages costs one. With TCP_NODELAY each write is a segment of its own, and on
    /// loopback the sender's CPU also delivers it to the client.
    pub fn queue(&mut self, segments: &[&[u8]]) -> Result<(), ConnError> {
        let bytes = self.cipher.seal(segments).map_err(|e| self.crypto(e))?;
        self.wbuf.extend_from_slice(&bytes);
        Ok(())
    }

    /// `blocks` sealed without an HMAC block (a streamed Fetch response's body), queued.
    pub fn queue_sealed(&mut self, blocks: &[u8]) -> Result<(), ConnError> {
        let sealed = self
            .cipher
            .seal_without_hmac(blocks)
            .map_err(|e| self.crypto(e))?;
        self.wbuf.extend_from_slice(&sealed);
        Ok(())
    }

    /// How many sealed bytes wait for a write.
    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes what [`ControlConn::queue`] and [`ControlConn::queue_sealed`] kept: the one
    /// write path, so the stream keeps its order.
    ///
    /// Writes are bounded by the control timeout too: a client that stops reading
    /// (its receive window stays shut) would otherwise hold its connection slot
    /// (the master's maxcontrolsessions count), its sessions and a Fetch's records
    /// forever.
    pub async fn flush_queued(&mut self) -> Result<(), ConnError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let peer = self.peer;
        let (stream, bytes) = (&mut self.stream, &self.wbuf);
        let write = async move {
            stream
                .write_all(bytes)
                .await
                .map_err(|source| ConnError::Io { peer, source })?;
            stream
                .flush()
                .await
                .map_err(|source| ConnError::Io { peer, source })
        };
        let done = match self.timeout {
            Some(t) => tokio::time::timeout(t, write)
                .await
                .unwrap_or(Err(ConnError::Timeout {
                    peer,
                    what: "room to write (the client is not reading)",
                })),
            None => write.await,
        };
        // Written, or the connection is over: either way nothing stays queued.
        self.wbuf.clear();
        done
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that never reads: the write gives up after the control timeout
    /// instead of waiting forever.
    #[tokio::test]
    async fn a_client_that_does_not_read_times_out_a_write() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut c = ControlConn::new(ours, peer, Some(Duration::from_millis(50)));
        match c.write_raw(&[0u8; 4096]).await {
            Err(ConnError::Timeout { what, .. }) => assert!(what.contains("write"), "{what}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    /// An AsyncWrite that counts the writes that moved bytes.
    struct CountingStream {
        inner: tokio::io::DuplexStream,
        writes: usize,
    }

    impl AsyncRead for CountingStream {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountingStream {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
            if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
                self.writes += 1;
            }
            r
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    async fn read_all(mut theirs: tokio::io::DuplexStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.expect("read");
        got
    }

    /// Queued messages go out in one write, byte for byte what sending each would
    /// have written, and a later plain send comes after them.
    #[tokio::test]
    async fn queued_messages_go_out_in_one_write_and_in_order() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let mut one_by_one = ControlConn::new(ours, peer, None);
        one_by_one.send(&[&[1u8; 16]]).await.expect("send");
        one_by_one
            .send(&[&[2u8; 32], &[3u8; 16]])
            .await
            .expect("send");
        one_by_one
            .send_clear_then_sealed(&[], &[4u8; 48])
            .await
            .expect("send");
        one_by_one.send(&[&[5u8; 16]]).await.expect("send");
        one_by_one.send(&[&[6u8; 16]]).await.expect("send");
        drop(one_by_one);
        let want = read_all(theirs).await;

        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let stream = CountingStream {
            inner: ours,
            writes: 0,
        };
        let mut queued = ControlConn::new(stream, peer, None);
        queued.queue(&[&[1u8; 16]]).expect("queue");
        queued.queue(&[&[2u8; 32], &[3u8; 16]]).expect("queue");
        queued.queue_sealed(&[4u8; 48]).expect("queue");
        assert_eq!(queued.stream.writes, 0, "queueing wrote");
        // Each segment is followed by its HMAC block; the sealed blocks have none.
        assert_eq!(queued.queued(), (16 + 16) + (32 + 16 + 16 + 16) + 48);
        queued.flush_queued().await.expect("flush");
        assert_eq!(queued.stream.writes, 1);
        assert_eq!(queued.queued(), 0);
        queued.flush_queued().await.expect("flush nothing");
        // Queued bytes are never overtaken by a plain send: both go in its write.
        queued.queue(&[&[5u8; 16]]).expect("queue");
        queued.send(&[&[6u8; 16]]).await.expect("send");
        assert_eq!(queued.stream.writes, 2);
        drop(queued);
        assert_eq!(read_all(theirs).await, want);
    }

    /// Without a control timeout (controltimeout 0) a write that fits completes.
    #[tokio::test]
    async fn a_write_that_fits_completes() {
        let (ours, _theirs) = tokio::io::duplex(4096);
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut c = ControlConn::new(ours, peer, None);
        assert!(c.write_raw(&[0u8; 100]).await.is_ok());
    }
}
