//! Client↔server round trips through `ControlCipher`: chained CBC across messages,
//! HMAC coverage of protocol.md §1.6 (incl. the pending Server-Start block), tampering.

use owamp::crypto::{ControlCipher, CryptoError, Role, RunningHmac, SessionKeys};

fn keys() -> SessionKeys {
    SessionKeys {
        aes: std::array::from_fn(|i| 0x20 + i as u8),
        hmac: std::array::from_fn(|i| 0x30 + i as u8),
    }
}

const CIV: [u8; 16] = [0x40; 16];
const SIV: [u8; 16] = [0x50; 16];

fn pair() -> (ControlCipher, ControlCipher) {
    (
        ControlCipher::new(Role::Client, &keys(), &CIV, &SIV),
        ControlCipher::new(Role::Server, &keys(), &CIV, &SIV),
    )
}

fn blocks(n: usize, fill: u8) -> Vec<u8> {
    (0..n * 16).map(|i| fill.wrapping_add(i as u8)).collect()
}

/// Receives a message sealed from `segments` (lengths only) and returns the plaintext
/// of each segment, verifying every HMAC.
fn receive(
    rx: &mut ControlCipher,
    wire: &[u8],
    seg_lens: &[usize],
) -> Result<Vec<Vec<u8>>, CryptoError> {
    let mut pos = 0;
    let mut out = Vec::new();
    for &len in seg_lens {
        let mut seg = wire[pos..pos + len].to_vec();
        rx.open(&mut seg)?;
        pos += len;
        let field: [u8; 16] = wire[pos..pos + 16].try_into().expect("16");
        rx.verify_hmac(&field)?;
        pos += 16;
        out.push(seg);
    }
    assert_eq!(
        pos,
        wire.len(),
        "wire length = segments + one HMAC block each"
    );
    Ok(out)
}

#[test]
fn conversation_with_pending_server_start_block() {
    let (mut c, mut s) = pair();

    // Server-Start bytes 32..47: sealed without HMAC, opened by the client.
    let ss = blocks(1, 0xa0);
    let mut ss_wire = s.seal_without_hmac(&ss).expect("aligned");
    assert_ne!(ss_wire, ss);
    c.open(&mut ss_wire).expect("aligned");
    assert_eq!(ss_wire, ss);

    // Request-Session: preamble (6 blocks) + slots (3 blocks), two HMAC fields.
    let pre = blocks(6, 1);
    let slots = blocks(3, 2);
    let wire = c.seal(&[&pre, &slots]).expect("aligned");
    assert_eq!(wire.len(), (6 + 1 + 3 + 1) * 16);
    let got = receive(&mut s, &wire, &[96, 48]).expect("request verifies");
    assert_eq!(got, vec![pre.clone(), slots.clone()]);

    // Accept-Session: its HMAC also covers the pending Server-Start block.
    let acc = blocks(2, 3);
    let wire = s.seal(&[&acc]).expect("aligned");
    // Independently: HMAC(ss ‖ acc) truncated is the plaintext of block 2.
    let mut plain_view = ControlCipher::new(Role::Client, &keys(), &CIV, &SIV);
    let mut all = server_chain_from_start(&ss, &wire);
    plain_view.open(&mut all).expect("aligned");
    let mut want = RunningHmac::new(&keys().hmac);
    want.update(&ss);
    want.update(&acc);
    assert_eq!(&all[48..64], &want.finish());
    // ... and not HMAC(acc) alone: the pending block really is covered.
    let mut without = RunningHmac::new(&keys().hmac);
    without.update(&acc);
    assert_ne!(&all[48..64], &without.finish());
    let got = receive(&mut c, &wire, &[32]).expect("accept verifies");
    assert_eq!(got, vec![acc]);

    // Start-Sessions, Start-Ack, a Stop-Sessions with no sessions, a Fetch response with
    // an empty skip segment: all keep the chain going in both directions.
    let start = blocks(1, 4);
    let wire = c.seal(&[&start]).expect("aligned");
    assert_eq!(receive(&mut s, &wire, &[16]).expect("ok"), vec![start]);
    let ack = blocks(1, 5);
    let wire = s.seal(&[&ack]).expect("aligned");
    assert_eq!(receive(&mut c, &wire, &[16]).expect("ok"), vec![ack]);
    let fetch = [blocks(7, 6), Vec::new(), blocks(4, 7), Vec::new()];
    let segs: Vec<&[u8]> = fetch.iter().map(Vec::as_slice).collect();
    let wire = s.seal(&segs).expect("aligned");
    let got = receive(&mut c, &wire, &[112, 0, 64, 0]).expect("fetch verifies");
    assert_eq!(got, fetch.to_vec());
}

/// Server-Start block wire bytes followed by a message, to decrypt the whole S→C chain
/// from its start.
fn server_chain_from_start(ss_plain: &[u8], msg_wire: &[u8]) -> Vec<u8> {
    let mut s = ControlCipher::new(Role::Server, &keys(), &CIV, &SIV);
    let mut v = s.seal_without_hmac(ss_plain).expect("aligned");
    v.extend_from_slice(msg_wire);
    v
}

#[test]
fn every_tampered_byte_fails_verification() {
    let (mut c0, mut s0) = pair();
    let pre = blocks(6, 1);
    let slots = blocks(2, 2);
    let wire = c0.seal(&[&pre, &slots]).expect("aligned");
    assert!(receive(&mut s0, &wire, &[96, 32]).is_ok());
    for i in 0..wire.len() {
        let mut bad = wire.clone();
        bad[i] ^= 0x01;
        let (_, mut s) = pair();
        assert!(
            matches!(
                receive(&mut s, &bad, &[96, 32]),
                Err(CryptoError::HmacMismatch { role: Role::Server })
            ),
            "flip at byte {i} went unnoticed"
        );
    }
}

#[test]
fn chain_continues_across_messages() {
    // The same plaintext sent twice must not give the same ciphertext (no IV reset).
    let (mut c, mut s) = pair();
    let m = blocks(1, 9);
    let w1 = c.seal(&[&m]).expect("aligned");
    let w2 = c.seal(&[&m]).expect("aligned");
    assert_ne!(w1, w2);
    // A receiver that skips the first message cannot read the second.
    let mut late = ControlCipher::new(Role::Server, &keys(), &CIV, &SIV);
    assert!(receive(&mut late, &w2, &[16]).is_err());
    assert!(receive(&mut s, &w1, &[16]).is_ok());
    assert!(receive(&mut s, &w2, &[16]).is_ok());
}

#[test]
fn directions_use_different_ivs() {
    let (mut c, mut s) = pair();
    let m = blocks(1, 9);
    assert_ne!(c.seal(&[&m]).expect("a"), s.seal(&[&m]).expect("a"));
}

#[test]
fn wrong_keys_fail() {
    let mut c = ControlCipher::new(Role::Client, &keys(), &CIV, &SIV);
    let mut other = keys();
    other.hmac[31] ^= 0x80;
    let mut s = ControlCipher::new(Role::Server, &other, &CIV, &SIV);
    let wire = c.seal(&[&blocks(1, 1)]).expect("aligned");
    assert!(receive(&mut s, &wire, &[16]).is_err());
}

#[test]
fn open_mode_is_clear_with_zero_hmac_fields() {
    let mut c = ControlCipher::open_mode();
    assert!(c.is_open_mode());
    let a = blocks(2, 1);
    let wire = c.seal(&[&a, &[]]).expect("aligned");
    let mut want = a.clone();
    want.extend_from_slice(&[0u8; 32]);
    assert_eq!(wire, want);
    assert_eq!(c.seal_without_hmac(&a).expect("aligned"), a);
    let mut s = ControlCipher::open_mode();
    let mut buf = a.clone();
    s.open(&mut buf).expect("aligned");
    assert_eq!(buf, a);
    // HMAC fields are never checked in open mode.
    s.verify_hmac(&[0xff; 16]).expect("open mode ignores HMAC");
}

#[test]
fn misaligned_input_is_an_error_and_changes_nothing() {
    for mut c in [
        ControlCipher::open_mode(),
        ControlCipher::new(Role::Client, &keys(), &CIV, &SIV),
    ] {
        let good = blocks(1, 1);
        let bad = [0u8; 15];
        assert!(matches!(
            c.seal(&[&good, &bad]),
            Err(CryptoError::NotBlockAligned { len: 15, .. })
        ));
        assert!(c.seal_without_hmac(&bad).is_err());
        assert!(c.open(&mut [0u8; 17]).is_err());
        // State untouched: the next message still decrypts from the start of the chain.
        let wire = c.seal(&[&good]).expect("aligned");
        let mut rx = if c.is_open_mode() {
            ControlCipher::open_mode()
        } else {
            ControlCipher::new(Role::Server, &keys(), &CIV, &SIV)
        };
        assert_eq!(receive(&mut rx, &wire, &[16]).expect("ok"), vec![good]);
    }
}
