//! Master ⇄ control messages over fd 3 (docs/processes.md "IPC").
//!
//! Variants are append-only: `tests/golden.rs` pins the encoding of one value of each.
//! The first message each way is `Hello`; [`check_hello`] turns a mismatch into an error.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::IpcError;

/// The configuration types carried here are the `config` crate's, re-exported so that
/// both ends name them the same way.
pub use config::{Limits, LogLevel, Pfs, PortRange};

/// Bumped whenever a message changes incompatibly (appending a variant is compatible only
/// with peers that never receive it; both binaries ship together, so bump anyway).
pub const PROTOCOL_VERSION: u32 = 3;

/// Messages from the master to control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MasterToControl {
    Hello {
        version: u32,
    },
    /// Sent once after `Hello`, before any `Connection`.
    Configure(Box<ControlSettings>),
    /// An accepted OWAMP-Control TCP connection; its fd rides with this message.
    Connection {
        peer: SocketAddr,
        local: SocketAddr,
    },
    /// Orderly stop: end running test sessions with Stop-Sessions, close every
    /// connection and exit; the master SIGKILLs after `dieby` seconds.
    Shutdown,
}

/// Messages from control to the master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControlToMaster {
    Hello {
        version: u32,
    },
    /// Configured, sandboxed, and taking connections.
    Ready,
    /// A line for syslog (and stderr with `-Z`); the master writes it, control cannot.
    Log(LogRecord),
    /// One control connection has ended (for `maxcontrolsessions` accounting).
    ConnectionDone,
    /// Control cannot start (its sandbox, or its data store: e.g. a datadir the run-as
    /// user cannot write) and is about to exit. Sent after `Hello`, instead of `Ready`;
    /// `reason` is one line. The first control of a daemon failing this way ends the
    /// daemon's start (no respawn), with `reason` as its launcher's error line.
    StartFailed {
        reason: String,
    },
}

/// One log line from a less-privileged process. `message` starts with the role tag of its
/// origin and carries the peer/SID where there is one, e.g. `"[control] [::1]:4711: ..."`
/// or `"[tester sid=…] ..."`; the master's own lines are `"[master] ..."`. The master
/// writes it unchanged to syslog (ident `owampd`) and, with `-Z`, as `owampd: <message>`
/// on stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub level: LogLevel,
    pub message: String,
}

/// Everything control needs from the command line and `owamp-server.conf`, validated by
/// the master (protocol.md §7.11). Control never reads the conf file itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlSettings {
    /// Bit set of allowed modes (1 open, 2 authenticated, 4 encrypted).
    pub authmodes: u32,
    /// Absolute.
    pub datadir: PathBuf,
    /// `None`: ephemeral ports.
    pub testports: Option<PortRange>,
    pub diskfudge: f64,
    pub controltimeout_s: u32,
    /// PBKDF2 Count of the Server-Greeting (`pbkdf2_count`, protocol.md §1.1).
    pub pbkdf2_count: u32,
    pub enddelay_s: f64,
    pub dieby_s: u32,
    /// 0 = unlimited. The master counts control connections (passed minus
    /// `ConnectionDone`) and closes one over this before passing it: control never
    /// sees it, and keeps no count of its own.
    pub maxcontrolsessions: u32,
    pub limits: Limits,
    pub pfs: Pfs,
    /// Absolute path of `owampd-tester`.
    pub tester_path: PathBuf,
    /// (uid, gid) to run as; `None` when not started as root.
    pub run_as: Option<(u32, u32)>,
    /// The `loglevel` threshold: control drops quieter lines (its own and its testers')
    /// before they are encoded for the master.
    pub loglevel: LogLevel,
    /// `OWAMP_DEBUG_TIMEOFFSET`, seconds.
    pub debug_time_offset: f64,
    /// The daemon's start time (NTP 32.32) for Server-Start (protocol.md §1.3).
    pub start_time_ntp: u64,
    /// Seccomp logs instead of killing (debug only, never the default).
    pub seccomp_log_only: bool,
}

/// Check the peer's `Hello` version against ours.
pub fn check_hello(theirs: u32) -> Result<(), IpcError> {
    if theirs == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(IpcError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Golden bytes: these pin the wire encoding (bincode 2 standard: varint integers,
    //! enum tag as varint, u16 > 250 as 0xfb + little-endian). A failing test here means
    //! the protocol changed: append variants, never reorder, and bump PROTOCOL_VERSION.
    use super::*;
    use crate::codec::{decode, encode};

    /// The limits of a missing file: one unlimited class `default` (protocol.md §7.9).
    fn limits() -> Limits {
        Limits::parse("", std::path::Path::new("owamp-server.limits"), None).expect("empty limits")
    }

    fn settings() -> ControlSettings {
        ControlSettings {
            authmodes: 7,
            datadir: PathBuf::from("/d"),
            testports: Some(PortRange {
                low: 8760,
                high: 9960,
            }),
            diskfudge: 1.0,
            controltimeout_s: 1800,
            pbkdf2_count: 4096,
            enddelay_s: 1.0,
            dieby_s: 5,
            maxcontrolsessions: 0,
            limits: limits(),
            pfs: Pfs::default(),
            tester_path: PathBuf::from("/t"),
            run_as: Some((65534, 65534)),
            loglevel: LogLevel::Info,
            debug_time_offset: 0.0,
            start_time_ntp: 0x0102_0304_0506_0708,
            seccomp_log_only: false,
        }
    }

    fn golden<T>(value: T, bytes: &[u8])
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let got = encode(&value).expect("encode");
        assert_eq!(got, bytes, "encoding of {value:?}");
        let back: T = decode(bytes).expect("decode");
        assert_eq!(back, value);
    }

    #[test]
    fn golden_master_to_control() {
        golden(MasterToControl::Hello { version: 1 }, &[0x00, 0x01]);
        golden(MasterToControl::Shutdown, &[0x03]);
        golden(
            MasterToControl::Connection {
                peer: "[::1]:4711".parse().expect("addr"),
                local: "127.0.0.1:861".parse().expect("addr"),
            },
            &[
                0x02, // Connection
                0x01, // SocketAddr::V6
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // ::1
                0xfb, 0x67, 0x12, // port 4711
                0x00, // SocketAddr::V4
                127, 0, 0, 1, 0xfb, 0x5d, 0x03, // 127.0.0.1:861
            ],
        );
    }

    #[test]
    fn golden_configure() {
        // Limits and Pfs are pinned by the config crate's own tests; here they are
        // spliced in as encoded, so this pins ControlSettings' own layout around them.
        let mut want = vec![0x01]; // Configure
        want.push(0x07); // authmodes
        want.extend_from_slice(&[0x02, b'/', b'd']); // datadir
        want.extend_from_slice(&[0x01, 0xfb, 0x38, 0x22, 0xfb, 0xe8, 0x26]); // Some(8760-9960)
        want.extend_from_slice(&1.0f64.to_le_bytes()); // diskfudge
        want.extend_from_slice(&[0xfb, 0x08, 0x07]); // controltimeout 1800
        want.extend_from_slice(&[0xfb, 0x00, 0x10]); // pbkdf2_count 4096
        want.extend_from_slice(&1.0f64.to_le_bytes()); // enddelay
        want.extend_from_slice(&[0x05, 0x00]); // dieby, maxcontrolsessions
        want.extend_from_slice(&encode(&limits()).expect("limits"));
        want.extend_from_slice(&encode(&Pfs::default()).expect("pfs"));
        want.extend_from_slice(&[0x02, b'/', b't']); // tester_path
        want.extend_from_slice(&[0x01, 0xfb, 0xfe, 0xff, 0xfb, 0xfe, 0xff]); // run_as
        want.push(0x03); // loglevel Info (config's order: None, Fatal, Warning, Info, ...)
        want.extend_from_slice(&0.0f64.to_le_bytes()); // debug_time_offset
        want.push(0xfd); // u64 varint marker
        want.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        want.push(0x00); // seccomp_log_only
        golden(MasterToControl::Configure(Box::new(settings())), &want);
    }

    #[test]
    fn golden_control_to_master() {
        golden(ControlToMaster::Hello { version: 1 }, &[0x00, 0x01]);
        golden(ControlToMaster::Ready, &[0x01]);
        golden(
            ControlToMaster::Log(LogRecord {
                level: LogLevel::Warning,
                message: "hi".into(),
            }),
            // Log, LogLevel::Warning (config's order: None, Fatal, Warning, ...), "hi"
            &[0x02, 0x02, 0x02, b'h', b'i'],
        );
        golden(ControlToMaster::ConnectionDone, &[0x03]);
        golden(
            ControlToMaster::StartFailed {
                reason: "no".into(),
            },
            &[0x04, 0x02, b'n', b'o'],
        );
    }

    #[test]
    fn trailing_bytes_refused() {
        let r: Result<ControlToMaster, _> = decode(&[0x01, 0x00]);
        assert!(matches!(r, Err(IpcError::Decode { len: 2, .. })), "{r:?}");
    }

    #[test]
    fn unknown_variant_refused() {
        let r: Result<ControlToMaster, _> = decode(&[0x09]);
        assert!(matches!(r, Err(IpcError::Decode { .. })), "{r:?}");
    }

    #[test]
    fn hello_check() {
        assert!(check_hello(PROTOCOL_VERSION).is_ok());
        let e = check_hello(PROTOCOL_VERSION + 1).expect_err("mismatch");
        assert!(
            matches!(e, IpcError::VersionMismatch { theirs, .. } if theirs == PROTOCOL_VERSION + 1)
        );
        assert!(e.to_string().contains("version mismatch"));
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode::<MasterToControl>(&bytes);
            let _ = decode::<ControlToMaster>(&bytes);
        }

        #[test]
        fn log_round_trip(msg in ".{0,200}", lvl in 0u8..6) {
            let level = [LogLevel::Fatal, LogLevel::Warning, LogLevel::Info,
                         LogLevel::Debug, LogLevel::All, LogLevel::None][usize::from(lvl)];
            let m = ControlToMaster::Log(LogRecord { level, message: msg });
            let back: ControlToMaster = decode(&encode(&m).expect("encode")).expect("decode");
            proptest::prop_assert_eq!(back, m);
        }
    }
}
