//! A connection the master passed with `MasterToControl::Connection` (docs/processes.md
//! "Master"): its accepted TCP socket becomes a stream of this process's runtime.
//!
//! One function, shared by `main.rs` and the `control_socket` fuzz target, so that what
//! the fuzzer feeds goes through the same socket set-up as a client's real connection.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("connection from {peer}: {what}: {source}")]
pub struct HandoverError {
    pub peer: SocketAddr,
    what: &'static str,
    #[source]
    source: io::Error,
}

/// The stream for a socket the master accepted, and the peer's address as the kernel
/// has it (`announced` is the master's copy, which went through bincode and lost any
/// IPv6 scope id; a link-local client's test addresses need it). Must run inside the
/// tokio runtime that will serve the connection.
pub fn adopt(
    fd: OwnedFd,
    announced: SocketAddr,
) -> Result<(tokio::net::TcpStream, SocketAddr), HandoverError> {
    let std_stream = std::net::TcpStream::from(fd);
    let peer = std_stream.peer_addr().unwrap_or(announced);
    let fail = |what| move |source| HandoverError { peer, what, source };
    // Every control message is written whole; Nagle would only hold the next one back
    // for the peer's delayed ACK.
    std_stream.set_nodelay(true).map_err(fail("TCP_NODELAY"))?;
    std_stream
        .set_nonblocking(true)
        .map_err(fail("non-blocking mode"))?;
    let stream = tokio::net::TcpStream::from_std(std_stream).map_err(fail("runtime"))?;
    Ok((stream, peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real accepted socket: the stream carries bytes both ways and the peer is the
    /// kernel's, not the announced one.
    #[tokio::test]
    async fn an_accepted_socket_becomes_a_stream_with_the_kernels_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().expect("accept");
        let announced: SocketAddr = "192.0.2.1:9".parse().unwrap();
        let (mut stream, peer) = adopt(OwnedFd::from(accepted), announced).expect("adopt");
        assert_eq!(peer, client.local_addr().unwrap());
        stream.write_all(b"greeting").await.unwrap();
        let mut got = [0u8; 8];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        assert_eq!(&got, b"greeting");
        std::io::Write::write_all(&mut client, b"reply").unwrap();
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"reply");
    }

    /// Not a TCP socket (a Unix stream): refused with the step that failed, not used.
    #[tokio::test]
    async fn a_socket_that_is_not_tcp_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let announced: SocketAddr = "192.0.2.1:9".parse().unwrap();
        let err = adopt(OwnedFd::from(a), announced).expect_err("not TCP");
        assert_eq!(err.peer, announced);
        assert!(err.to_string().contains("TCP_NODELAY"), "{err}");
    }
}
