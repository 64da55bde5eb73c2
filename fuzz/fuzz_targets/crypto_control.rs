//! OWAMP-Control crypto on the server side (protocol.md §1.4–1.6): `ControlCipher` opening
//! arbitrary ciphertext and checking arbitrary HMAC fields, under keys, IVs and message
//! framing chosen by the fuzzer; and the Token of Set-Up-Response.
//!
//! Invariants:
//! - opening and verifying anything never panics; a length that is not whole blocks is
//!   a typed error and changes nothing;
//! - what a client seals, a server with the same keys opens to the same plaintext with
//!   every HMAC field accepted; flipping any one bit of the sealed bytes makes some
//!   HMAC check fail (the running HMAC covers everything, protocol.md §1.5);
//! - open mode never rejects and never changes bytes;
//! - `Token::decrypt` then `encrypt` gives the original 64 bytes back.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use owamp::crypto::{ControlCipher, CryptoError, Role, SessionKeys, Token};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::new(&mut u) else {
        return;
    };
    let Ok(which) = u.arbitrary::<u8>() else {
        return;
    };
    let rest = u.take_rest();
    match which % 3 {
        0 => open_arbitrary(&setup, rest),
        1 => seal_then_open(&setup, rest),
        _ => token(&setup, rest),
    }
});

struct Setup {
    aes: [u8; 16],
    hmac: [u8; 32],
    client_iv: [u8; 16],
    server_iv: [u8; 16],
}

impl Setup {
    fn new(u: &mut Unstructured<'_>) -> arbitrary::Result<Setup> {
        Ok(Setup {
            aes: u.arbitrary()?,
            hmac: u.arbitrary()?,
            client_iv: u.arbitrary()?,
            server_iv: u.arbitrary()?,
        })
    }

    fn keys(&self) -> SessionKeys {
        SessionKeys {
            aes: self.aes,
            hmac: self.hmac,
        }
    }

    fn cipher(&self, role: Role) -> ControlCipher {
        ControlCipher::new(role, &self.keys(), &self.client_iv, &self.server_iv)
    }
}

/// A server reading whatever a hostile client sends: each op byte says how many bytes
/// to open (possibly not whole blocks) or to check an HMAC field.
fn open_arbitrary(setup: &Setup, data: &[u8]) {
    let mut server = setup.cipher(Role::Server);
    let mut open = ControlCipher::open_mode();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        if op & 0x80 != 0 {
            let (field, tail) = owampd_fuzz::take_array::<16>(rest);
            rest = tail;
            // Almost always a mismatch; it must be an error, never a panic.
            let _ = server.verify_hmac(&field);
            assert!(
                open.verify_hmac(&field).is_ok(),
                "open mode checked an HMAC"
            );
        } else {
            let n = usize::from(op & 0x7F).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut buf = chunk.to_vec();
            match server.open(&mut buf) {
                Ok(()) => assert_eq!(n % 16, 0),
                Err(CryptoError::NotBlockAligned { len, .. }) => {
                    assert_eq!(len, n);
                    assert_eq!(buf, chunk, "a refused buffer was changed");
                }
                Err(e) => panic!("unexpected error from open: {e}"),
            }
            let mut clear = chunk.to_vec();
            if open.open(&mut clear).is_ok() {
                assert_eq!(clear, chunk, "open mode changed bytes");
            }
        }
    }
}

/// A client seals messages whose segment sizes (in blocks) and contents come from the
/// input; a server opens them. Then the same bytes with one bit flipped.
fn seal_then_open(setup: &Setup, data: &[u8]) {
    let Some((&flip, data)) = data.split_first() else {
        return;
    };
    let (sizes, plain) = owampd_fuzz::take_array::<4>(data);
    // Segments: up to 4, each 0..=3 blocks, filled from the input (zero if it runs out).
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut src = plain.iter().copied().chain(std::iter::repeat(0));
    for s in sizes.iter().take(usize::from(flip & 3) + 1) {
        let len = usize::from(s % 4) * 16;
        segments.push(src.by_ref().take(len).collect());
    }
    let refs: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
    let mut client = setup.cipher(Role::Client);
    let wire = client.seal(&refs).expect("aligned segments seal");
    let expected_len: usize = segments.iter().map(|s| s.len() + 16).sum();
    assert_eq!(wire.len(), expected_len);

    assert!(
        read_all(setup, &wire, &segments),
        "server refused a sealed message"
    );

    // Flip one bit anywhere in the sealed bytes: some HMAC check must fail.
    let bit = usize::from(u16::from_le_bytes([sizes[0], sizes[1]])) % (wire.len() * 8);
    let mut bad = wire.clone();
    bad[bit / 8] ^= 1 << (bit % 8);
    assert!(
        !read_all(setup, &bad, &segments),
        "a flipped bit went unnoticed"
    );

    // Open mode: the segments travel in clear, each followed by 16 zero bytes.
    let mut open = ControlCipher::open_mode();
    let clear = open.seal(&refs).expect("open mode seals");
    let mut at = 0;
    for s in &segments {
        assert_eq!(&clear[at..at + s.len()], s.as_slice());
        assert!(
            clear[at + s.len()..at + s.len() + 16]
                .iter()
                .all(|&b| b == 0)
        );
        at += s.len() + 16;
    }
}

/// Reads `wire` as the server would: each segment's blocks then its HMAC field. True if
/// every HMAC field is accepted (then the plaintext must match).
fn read_all(setup: &Setup, wire: &[u8], segments: &[Vec<u8>]) -> bool {
    let mut server = setup.cipher(Role::Server);
    let mut at = 0;
    let mut all_ok = true;
    for s in segments {
        let mut buf = wire[at..at + s.len()].to_vec();
        server.open(&mut buf).expect("whole blocks open");
        at += s.len();
        let (field, _) = owampd_fuzz::take_array::<16>(&wire[at..]);
        at += 16;
        if server.verify_hmac(&field).is_ok() {
            if all_ok {
                assert_eq!(&buf, s, "HMAC accepted but plaintext differs");
            }
        } else {
            all_ok = false;
        }
    }
    all_ok
}

fn token(setup: &Setup, data: &[u8]) {
    let (bytes, _) = owampd_fuzz::take_array::<64>(data);
    let dk = setup.aes;
    let tok = Token::decrypt(&dk, &bytes);
    assert_eq!(tok.encrypt(&dk), bytes, "Token decrypt/encrypt round trip");
    assert!(tok.challenge_matches(&tok.challenge.clone()));
}
