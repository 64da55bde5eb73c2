//! `owamp-server.pfs` (protocol.md §7.10): the server's `Pfs::parse` and the client's
//! `pfs_lookup_client` (`owping -k`) on arbitrary text.
//!
//! Input: `identity \0 file text` (no NUL: the whole input is the file and the identity
//! is the first line's first word).
//!
//! Invariants: no panic; the server accepts a file only if the client does too (the
//! client only drops the duplicate check); an identity the server knows is found by the
//! client with the same pass-phrase; the table survives bincode unchanged.
#![no_main]

use config::{Pfs, pfs_lookup_client};
use libfuzzer_sys::fuzz_target;
use owampd_fuzz::text_of;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let (query, file) = match data.iter().position(|&b| b == 0) {
        Some(i) => (text_of(&data[..i]), text_of(&data[i + 1..])),
        None => {
            let t = text_of(data);
            let first = t.split_whitespace().next().unwrap_or("").to_string();
            (first.into(), t)
        }
    };
    let path = Path::new("owamp-server.pfs");
    let server = Pfs::parse(&file, path);
    let client = pfs_lookup_client(&file, path, &query);
    if let Err(e) = &client {
        assert!(!e.to_string().is_empty());
    }
    let Ok(pfs) = server else { return };
    let found = client.expect("the client refused a file the server accepted");
    if let Some(pass) = pfs.get(&query) {
        assert_eq!(
            found.as_deref(),
            Some(pass),
            "client and server disagree on {query:?}"
        );
    }
    if query.is_empty() {
        assert_eq!(found, None, "an empty identity matched");
    }
    assert_eq!(pfs.identities().count(), pfs.len());
    for id in pfs.identities() {
        assert!(id.len() <= 80 && !id.is_empty());
        assert!(pfs.contains(id));
        assert!(
            !pfs.get(id).unwrap_or_default().is_empty(),
            "empty pass-phrase for {id:?}"
        );
    }
    let cfg = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&pfs, cfg).expect("Pfs encodes");
    let (back, _): (Pfs, usize) =
        bincode::serde::decode_from_slice(&bytes, cfg).expect("Pfs decodes");
    assert_eq!(back, pfs, "Pfs bincode round trip");
});
