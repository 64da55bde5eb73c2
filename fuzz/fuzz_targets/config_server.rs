//! `owamp-server.conf` (protocol.md §7.11): `ServerConf::parse` on arbitrary text (UTF-8 as
//! given, anything else through `from_utf8_lossy` as a reader of the file would see it).
//!
//! Invariants: no panic; parsing is deterministic; an accepted file gives values inside
//! their documented ranges, survives the bincode trip to the control process unchanged,
//! and every error displays with the path.
#![no_main]

use config::{PortRange, ServerConf};
use libfuzzer_sys::fuzz_target;
use owampd_fuzz::text_of;
use std::path::Path;

const PATH: &str = "owamp-server.conf";

fuzz_target!(|data: &[u8]| {
    let text = text_of(data);
    let parsed = ServerConf::parse(&text, Path::new(PATH));
    assert_eq!(
        parsed,
        ServerConf::parse(&text, Path::new(PATH)),
        "not deterministic"
    );
    let conf = match parsed {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            return;
        }
    };
    assert!(
        conf.authmode != 0 && conf.authmode & !7 == 0,
        "authmode {}",
        conf.authmode
    );
    assert!(
        (1.0..=10.0).contains(&conf.diskfudge),
        "diskfudge {}",
        conf.diskfudge
    );
    assert!(
        conf.enddelay.is_finite() && conf.enddelay >= 0.0,
        "enddelay {}",
        conf.enddelay
    );
    let tp = conf.testports;
    assert!(tp == PortRange::EPHEMERAL || (tp.low >= 1 && tp.low <= tp.high));

    let cfg = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&conf, cfg).expect("ServerConf encodes");
    let (back, used): (ServerConf, usize) =
        bincode::serde::decode_from_slice(&bytes, cfg).expect("ServerConf decodes");
    assert_eq!(used, bytes.len());
    assert_eq!(back, conf, "ServerConf bincode round trip");
});
