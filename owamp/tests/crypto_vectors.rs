//! Known-answer tests: protocol.md §6 self-check vectors, RFC 2202 (HMAC-SHA1) and RFC 6070
//! (PBKDF2-HMAC-SHA1).

use owamp::crypto::{
    ControlCipher, Role, RunningHmac, SessionKeys, Token, aes_ecb_encrypt_block, constant_time_eq,
    derive_key, pbkdf2_hmac_sha1_16,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(s.len() % 2, 0, "odd hex length in test vector");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vector hex"))
        .collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().expect("test vector length")
}

/// 0x{start}, 0x{start+1}, … (the spec's "101112..1f" notation).
fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

fn spec_keys() -> SessionKeys {
    SessionKeys {
        aes: seq(0x20),
        hmac: seq(0x30),
    }
}

#[test]
fn spec6_dk() {
    let dk = derive_key(b"testpass", &seq(0x00), 2048);
    assert_eq!(dk, arr::<16>("56f1040cebd5be87a86e13dd77ca9a48"));
}

#[test]
fn spec6_token_encrypt_and_decrypt() {
    let dk = arr::<16>("56f1040cebd5be87a86e13dd77ca9a48");
    let want = arr::<64>(
        "c7e862ce30ab995100ac060aacd2e62a1d53c2fa72f5273130b4873675a4e050
         d85f0ed38c68b743057cbb731eed22c8e7c4be9d68b34aabdbe3d062a10a2f32",
    );
    let tok = Token {
        challenge: seq(0x10),
        keys: spec_keys(),
    };
    assert_eq!(tok.encrypt(&dk), want);

    let back = Token::decrypt(&dk, &want);
    assert_eq!(back.challenge, seq::<16>(0x10));
    assert_eq!(back.keys.aes, seq::<16>(0x20));
    assert_eq!(back.keys.hmac, seq::<32>(0x30));
    assert!(back.challenge_matches(&seq(0x10)));
    assert!(!back.challenge_matches(&seq(0x11)));
}

#[test]
fn token_with_wrong_dk_does_not_match_challenge() {
    let dk = derive_key(b"testpass", &seq(0x00), 2048);
    let wrong = derive_key(b"testpasS", &seq(0x00), 2048);
    let tok = Token {
        challenge: seq(0x10),
        keys: spec_keys(),
    };
    let back = Token::decrypt(&wrong, &tok.encrypt(&dk));
    assert!(!back.challenge_matches(&seq(0x10)));
}

#[test]
fn spec6_start_sessions_first_client_message() {
    let mut c = ControlCipher::new(Role::Client, &spec_keys(), &seq(0x40), &seq(0x50));
    let mut block0 = [0u8; 16];
    block0[0] = 2; // Start-Sessions command number
    let wire = c.seal(&[&block0]).expect("aligned");
    assert_eq!(
        wire,
        hex("eafc8e16dd50686aa61f0d5a657c3f5a 455b2a9f6b5db489e83847b5e8b910a1")
    );

    // The server reads it: plaintext block 0, then the HMAC of protocol.md §6.
    let mut s = ControlCipher::new(Role::Server, &spec_keys(), &seq(0x40), &seq(0x50));
    let mut head = wire[..16].to_vec();
    s.open(&mut head).expect("aligned");
    assert_eq!(head, block0);
    let hmac_field = arr::<16>("455b2a9f6b5db489e83847b5e8b910a1");
    s.verify_hmac(&hmac_field)
        .expect("spec vector HMAC verifies");

    // And the plaintext of the HMAC field is the one given in the spec.
    let mut plain = ControlCipher::new(Role::Server, &spec_keys(), &seq(0x40), &seq(0x50));
    let mut both = wire.clone();
    plain.open(&mut both).expect("aligned");
    assert_eq!(
        both,
        hex("02000000000000000000000000000000 281fc9a23939a4f730fbf9f8541361a8")
    );
}

#[test]
fn spec6_server_start_block() {
    let mut s = ControlCipher::new(Role::Server, &spec_keys(), &seq(0x40), &seq(0x50));
    let block = hex("dd12e5a000000000 0000000000000000");
    let wire = s.seal_without_hmac(&block).expect("aligned");
    assert_eq!(wire, hex("f7d78a5ae7a45335dee436d9ddcd6097"));

    let mut c = ControlCipher::new(Role::Client, &spec_keys(), &seq(0x40), &seq(0x50));
    let mut got = wire.clone();
    c.open(&mut got).expect("aligned");
    assert_eq!(got, block);
}

#[test]
fn spec6_hmac_of_empty_input() {
    let mut m = RunningHmac::new(&seq::<32>(0x30));
    assert_eq!(m.finish(), arr::<16>("e9c84fca7c5af283906b72c8c5db45e0"));
    // After a reset the context is fresh again.
    m.update(b"something");
    let _ = m.finish();
    assert_eq!(m.finish(), arr::<16>("e9c84fca7c5af283906b72c8c5db45e0"));
}

#[test]
fn rfc2202_hmac_sha1_cases_1_to_3() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 3] = [
        (
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "b617318655057264e28bc0b6fb378c8ef146be00",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        ),
        (
            vec![0xaa; 20],
            vec![0xdd; 50],
            "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
        ),
    ];
    for (key, data, want) in cases {
        let want = hex(want);
        let mut m = RunningHmac::new(&key);
        m.update(&data);
        assert_eq!(m.finish_full().to_vec(), want);
        // Same input split in two updates, truncated form.
        let mut m = RunningHmac::new(&key);
        let (a, b) = data.split_at(data.len() / 2);
        m.update(a);
        m.update(b);
        assert_eq!(m.finish().to_vec(), want[..16].to_vec());
    }
}

#[test]
fn rfc2202_hmac_sha1_long_key() {
    // RFC 2202 test case 6: an 80-byte key is hashed first (RFC 2104 §2).
    let mut m = RunningHmac::new(&[0xaa; 80]);
    m.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
    assert_eq!(
        m.finish_full().to_vec(),
        hex("aa4ae5e15272d00e95705637ce8a3b55ed402112")
    );
}

#[test]
fn rfc6070_pbkdf2_truncated_to_16() {
    let cases: [(&[u8], &[u8], u32, &str); 4] = [
        (b"password", b"salt", 1, "0c60c80f961f0e71f3a9b524af601206"),
        (b"password", b"salt", 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0"),
        (
            b"password",
            b"salt",
            4096,
            "4b007901b765489abead49d926f721d0",
        ),
        (
            b"pass\0word",
            b"sa\0lt",
            4096,
            "56fa6aa75548099dcc37d7f03425e0c3",
        ),
    ];
    for (p, s, c, want) in cases {
        assert_eq!(pbkdf2_hmac_sha1_16(p, s, c).to_vec(), hex(want), "c={c}");
    }
}

#[test]
fn constant_time_eq_semantics() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(&[0x80], &[0x00]));
}

#[test]
fn aes_ecb_fips197_vector() {
    // FIPS-197 Appendix C.1 (AES-128).
    let key = arr::<16>("000102030405060708090a0b0c0d0e0f");
    let mut block = arr::<16>("00112233445566778899aabbccddeeff");
    aes_ecb_encrypt_block(&key, &mut block);
    assert_eq!(block, arr::<16>("69c4e0d86a7b0430d8cdb78070b4c55a"));
}

#[test]
fn debug_output_hides_keys() {
    let keys = SessionKeys {
        aes: [0xab; 16],
        hmac: [0xcd; 32],
    };
    let tok = Token {
        challenge: [0; 16],
        keys: keys.clone(),
    };
    let c = ControlCipher::new(Role::Client, &keys, &[0; 16], &[0; 16]);
    for text in [
        format!("{keys:?}"),
        format!("{tok:?}"),
        format!("{c:?}"),
        format!("{:?}", RunningHmac::new(&keys.hmac)),
    ] {
        for needle in ["171", "205", "ab", "cd", "AB", "CD"] {
            assert!(!text.contains(needle), "{text} leaks key material");
        }
    }
}

#[test]
fn random_keys_differ() {
    let a = SessionKeys::random().expect("OS random source");
    let b = SessionKeys::random().expect("OS random source");
    assert_ne!(a, b);
}

/// Several messages in each direction with the protocol.md §6 keys and IVs, so the CBC chain
/// across messages, the pending Server-Start block and an empty segment are pinned by
/// bytes computed outside this code (Python `cryptography` AES-CBC + `hmac`/SHA-1, an
/// encryptor per direction kept across messages, HMAC reset after each field):
/// C→S: Request-Session [preamble 01 01..5f (96 B), slots a0..bf (32 B)], then
///      Start-Sessions [02 00..00].
/// S→C: Server-Start block (no HMAC), Accept-Session [60..7f], then a Fetch-style
///      message [empty skip segment, records 80..af].
#[test]
fn golden_multi_message_conversation() {
    let c2s = hex(
        "7434d2e7f3f31f9766a4cecc37c1a6d0de54fdf35afa11e59c373292d4438024
         bc4e87ed474bac663807c86d1d6ec136d9201c3e7611f5df566dd4f3ef6a5670
         f55e73dd71aefef421d01347d4a220962aa01cc940a0aae001a6e1276c22d49b
         d3c487ca7ad6459d0b908b7f6867a30512161dea6f7f74bd276b397230a6c0d2
         97ac919fa8de4a44b1884aad762fdb93078ac920c6aeb90872de3873eb03845d
         065bed1f30a0f5bd47c9bc2355d476e14069557918b7c051454395bd57433335",
    );
    let s2c = hex(
        "f7d78a5ae7a45335dee436d9ddcd60977eaddce25efafe76024bf651d189d74f
         37741bf4772b0cbbb5cc01f49f41e5aa850b5f37f5bd682b5ad31547f3fff35f
         b02d289452e8fe63cd5f4bf74edd99f71fdc3bdcd17d9746bec94d2bc19b0d2a
         3e30fabdc78dca2fde3b46d3cf4b1e48d4fe46eddcef1ab2dc9c1451a81e1417
         638c81649eea05395341832f8cb6175f",
    );
    let mut pre = seq::<96>(0x00);
    pre[0] = 1;
    let slots = seq::<32>(0xa0);
    let mut start = [0u8; 16];
    start[0] = 2;
    let ss = hex("dd12e5a000000000 0000000000000000");
    let acc = seq::<32>(0x60);
    let recs = seq::<48>(0x80);

    let mut c = ControlCipher::new(Role::Client, &spec_keys(), &seq(0x40), &seq(0x50));
    let mut wire = c.seal(&[&pre, &slots]).expect("aligned");
    wire.extend(c.seal(&[&start]).expect("aligned"));
    assert_eq!(wire, c2s);

    let mut s = ControlCipher::new(Role::Server, &spec_keys(), &seq(0x40), &seq(0x50));
    let mut wire = s.seal_without_hmac(&ss).expect("aligned");
    wire.extend(s.seal(&[&acc]).expect("aligned"));
    wire.extend(s.seal(&[&[], &recs]).expect("aligned"));
    assert_eq!(wire, s2c);
}
