//! Internal messages as a process receives them on its IPC channel (docs/processes.md
//! "IPC"): arbitrary datagrams written to a real `SOCK_SEQPACKET` pair and read back with
//! `ipc::Channel::try_recv`, for each message enum: the master's (`MasterToControl`,
//! `ControlToMaster`), the spawner's (`Request`, `SpawnReply`) and the tester's
//! (`tester_ipc::ControlToTester`, `TesterToControl`). A compromised control process can
//! send the master or the spawner anything, and a compromised tester can send control
//! anything: these decoders are the other side's attack surface.
//!
//! Invariants: no panic and no allocation beyond the 64 KiB message bound (bincode's
//! limit); a non-empty datagram is a message or a `Decode` error, never "closed" or
//! lost; a decoded message sent back through `Channel::send` arrives and re-encodes to
//! the same bytes (compared as bytes, since f64 fields may hold NaN).
#![no_main]

use ipc::Channel;
use ipc::IpcError;
use ipc::master::{ControlToMaster, MasterToControl};
use ipc::spawner::{Request, SpawnReply};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use tester_ipc::{ControlToTester, TesterToControl};

struct Ends {
    rx: Channel,
    tx: Channel,
    /// A second handle on `tx`'s socket, for writing raw datagrams.
    raw: UnixDatagram,
}

fn ends() -> &'static Ends {
    static ENDS: OnceLock<Ends> = OnceLock::new();
    ENDS.get_or_init(|| {
        let (rx, tx) = Channel::pair().expect("socketpair");
        rx.set_nonblocking(true).expect("non-blocking");
        let dup = tx.as_fd().try_clone_to_owned().expect("dup");
        Ends {
            rx,
            tx,
            raw: UnixDatagram::from(dup),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    // An empty datagram is the SEQPACKET end-of-file by design.
    if bytes.is_empty() {
        return;
    }
    match which % 6 {
        0 => check::<MasterToControl>(bytes),
        1 => check::<ControlToMaster>(bytes),
        2 => check::<ControlToTester>(bytes),
        3 => check::<TesterToControl>(bytes),
        4 => check::<Request>(bytes),
        _ => check::<SpawnReply>(bytes),
    }
});

fn canonical<T: Serialize>(msg: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(msg, bincode::config::standard()).expect("message encodes")
}

fn check<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8]) {
    let e = ends();
    e.raw.send(bytes).expect("raw send");
    let got = e.rx.try_recv::<T>();
    let msg = match got {
        Ok(Some(r)) => {
            assert!(r.fds.is_empty(), "fds appeared from nowhere");
            r.msg
        }
        Ok(None) => panic!("a {}-byte datagram was lost", bytes.len()),
        Err(IpcError::Decode { len, .. }) => {
            assert_eq!(len, bytes.len());
            return;
        }
        Err(other) => panic!(
            "unexpected error for a {}-byte datagram: {other}",
            bytes.len()
        ),
    };
    let enc = canonical(&msg);
    assert!(
        enc.len() <= bytes.len(),
        "re-encoding grew: {} > {}",
        enc.len(),
        bytes.len()
    );
    e.tx.send(&msg, &[]).expect("a decoded message sends");
    let again = match e.rx.try_recv::<T>() {
        Ok(Some(r)) => r.msg,
        other => panic!("own message did not come back: {other:?}"),
    };
    assert_eq!(canonical(&again), enc, "re-encoding not stable for {msg:?}");
}
