//! The owampd control process: OWAMP-Control for every connection, the limits
//! accounting, test ports, the data store and Fetch-Session (design.md "Processes").
//!
//! A library so that the modules can be unit-tested; `main.rs` is the process.
//!
//! - [`session`]: one control connection's state machine (handshake, requests, the test
//!   period and Stop-Sessions exchange), over [`conn`] (async I/O around the sans-IO
//!   `owamp::crypto::ControlCipher`, cancel-safe reads).
//! - [`fetch`]: Fetch-Session from the store, with the reference's retry delays as
//!   async sleeps.
//! - [`policy`]: the limits tree's global accounting (bandwidth, disk with diskfudge,
//!   per-connection test_sessions, maxcontrolsessions), every reservation an RAII guard.
//! - [`ports`]: test-port allocation from the `testports` range.
//! - [`store`]: `{datadir}/hierarchy/…` and `catalog/`, rebuilt at start.
//! - [`testers`]: one `owampd-tester` per session behind the `TesterLauncher` trait
//!   (the process launcher, or fakes in tests); its messages become session events.
//! - [`directory`], [`confdir`]: who a peer is (class, passphrase) over `config`.
//! - [`log`]: lines for the master, tagged `[control]`, the peer and the SID.
#![forbid(unsafe_code)]

pub mod clock;
pub mod confdir;
pub mod conn;
pub mod directory;
pub mod fetch;
pub mod log;
pub mod policy;
pub mod ports;
pub mod session;
pub mod store;
pub mod testers;
