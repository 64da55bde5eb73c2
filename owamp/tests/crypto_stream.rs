//! `ControlStream` over in-memory transports: one write per message, reads, HMAC
//! mismatch vs I/O errors.

use owamp::crypto::{ControlCipher, ControlStream, Role, SessionKeys, StreamError};
use std::io::{self, Cursor, Read, Write};

/// Records every `write` call separately; reads from a fixed buffer.
#[derive(Default)]
struct Recorder {
    input: Cursor<Vec<u8>>,
    writes: Vec<Vec<u8>>,
}

impl Read for Recorder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn keys() -> SessionKeys {
    SessionKeys {
        aes: [7; 16],
        hmac: [9; 32],
    }
}

fn cipher(role: Role) -> ControlCipher {
    ControlCipher::new(role, &keys(), &[1; 16], &[2; 16])
}

fn blocks(n: usize, fill: u8) -> Vec<u8> {
    vec![fill; n * 16]
}

#[test]
fn message_is_one_write_and_reads_back() {
    let mut client = ControlStream::new(Recorder::default());
    client.write_raw(&[0u8; 164]).expect("set-up-response");
    client.set_cipher(cipher(Role::Client));
    let pre = blocks(6, 0x11);
    let slots = blocks(10, 0x22);
    client.write_message(&[&pre, &slots]).expect("write");
    let rec = client.into_inner();
    assert_eq!(
        rec.writes.len(),
        2,
        "one write for the handshake, one for the message"
    );
    let wire = rec.writes[1].clone();
    assert_eq!(wire.len(), (6 + 1 + 10 + 1) * 16);

    let mut server = ControlStream::new(Recorder {
        input: Cursor::new([vec![0u8; 164], wire].concat()),
        writes: Vec::new(),
    });
    let mut sur = [0xffu8; 164];
    server.read_raw(&mut sur).expect("clear part");
    assert_eq!(sur, [0u8; 164]);
    server.set_cipher(cipher(Role::Server));
    assert_eq!(server.read_blocks(6).expect("preamble"), pre);
    server.read_hmac().expect("preamble HMAC");
    assert_eq!(server.read_blocks(10).expect("slots"), slots);
    server.read_hmac().expect("slots HMAC");
    // Nothing left: the next read is an I/O error (EOF), not an HMAC error.
    let err = server.read_blocks(1).expect_err("EOF");
    assert!(matches!(err, StreamError::Io { .. }));
    assert!(!err.is_hmac_mismatch());
}

#[test]
fn large_read_spans_several_chunks() {
    let mut tx = cipher(Role::Server);
    let data: Vec<u8> = (0..300 * 16).map(|i| (i * 7) as u8).collect();
    let wire = tx.seal(&[&data]).expect("aligned");
    let mut rx = ControlStream::new(Cursor::new(wire));
    rx.set_cipher(cipher(Role::Client));
    assert_eq!(rx.read_blocks(300).expect("read"), data);
    rx.read_hmac().expect("HMAC");
}

#[test]
fn hmac_mismatch_is_reported_as_such() {
    let mut tx = cipher(Role::Client);
    let mut wire = tx.seal(&[&blocks(2, 3)]).expect("aligned");
    wire[5] ^= 0x40;
    let mut rx = ControlStream::new(Cursor::new(wire));
    rx.set_cipher(cipher(Role::Server));
    rx.read_blocks(2).expect("blocks still read");
    let err = rx.read_hmac().expect_err("tampered");
    assert!(err.is_hmac_mismatch(), "{err}");
}

#[test]
fn huge_block_counts_do_not_allocate_or_overflow() {
    let mut rx = ControlStream::new(Cursor::new(vec![0u8; 32]));
    assert!(matches!(
        rx.read_blocks(usize::MAX),
        Err(StreamError::TooLarge { .. })
    ));
    // A peer-supplied count of 2^32 slots with a short stream ends in EOF, not OOM.
    let mut rx = ControlStream::new(Cursor::new(vec![0u8; 32]));
    assert!(matches!(
        rx.read_blocks(1 << 32),
        Err(StreamError::Io { .. })
    ));
}

#[test]
fn misaligned_message_is_a_crypto_error_and_nothing_is_written() {
    let mut s = ControlStream::new(Recorder::default());
    let err = s.write_message(&[&[0u8; 5]]).expect_err("misaligned");
    assert!(matches!(err, StreamError::Crypto(_)));
    assert!(s.get_ref().writes.is_empty());
}

#[test]
fn open_mode_stream_round_trip() {
    let mut s = ControlStream::new(Recorder::default());
    s.write_message(&[&blocks(1, 5)]).expect("write");
    let wire = s.into_inner().writes.concat();
    assert_eq!(wire, [blocks(1, 5), vec![0; 16]].concat());
    let mut r = ControlStream::new(Cursor::new(wire));
    assert_eq!(r.read_blocks(1).expect("read"), blocks(1, 5));
    r.read_hmac().expect("open mode");
}
