//! The owampd control process: OWAMP-Control for every connection, the limits
//! accounting, test ports, the data store and Fetch-Session (docs/processes.md).
//!
//! A library so that the modules can be unit-tested; `main.rs` is the process.
//!
//! - [`session`]: one control connection's state machine (handshake, requests, the test
//!   period and Stop-Sessions exchange), over [`conn`] (async I/O around the sans-IO
//!   `owamp::crypto::ControlCipher`, cancel-safe reads).
//! - [`fetch`]: Fetch-Session from the store, with the reference's retry delays as
//!   async sleeps.
//! - [`policy`]: the limits tree's global accounting (bandwidth, disk with diskfudge,
//!   per-connection test_sessions), every reservation an RAII guard.
//! - [`ports`]: test-port allocation from the `testports` range.
//! - [`store`]: `{datadir}/hierarchy/…`, indexed at start.
//! - [`testers`]: one `owampd-tester` per session behind the `TesterLauncher` trait
//!   (the process launcher, or fakes in tests); its messages become session events.
//! - [`directory`], [`confdir`]: who a peer is (class, passphrase) over `config`.
//! - [`handover`]: the socket of a connection the master passed, made a stream.
//! - [`log`]: lines for the master, tagged `[control]`, the peer and the SID.
//! - [`shutdown`]: the daemon's stop: running sessions end with Stop-Sessions within
//!   `dieby`, other connections close.
//!
//! Choices and departures (spec section in brackets):
//! - `test_sessions` counts every Request-Session that reaches the policy, including
//!   one then refused for bandwidth or disk, as the reference's never-released counter
//!   does (§7.4).
//! - IPv6 link-local test addresses get Accept=3: scope ids are not carried (§2.1.3).
//! - More than 2^20 slots in one Request-Session closes the connection (§9 allows it).
//! - A Fetch-Session holds the selected records in memory (25 bytes each) while it
//!   sends them; the retry delays are async sleeps, other connections carry on (§2.8).
//! - Testers run with argv[0] `owampd-tester [sid=…]` (what `ps` shows); their kernel
//!   name (PR_SET_NAME, 15 bytes, what `top` shows) is `owtest-XXXXXXXX`, the last four
//!   SID bytes.
//! - A receiving tester's data file is bounded with RLIMIT_FSIZE (header, every packet
//!   recorded four times, a skip range per packet, 64 KiB); a sender may write no file.
//! - The tester's seccomp debug switch comes in its environment (`OWAMPD_SECCOMP_LOG=1`),
//!   since it enters its sandbox before reading any message.
#![forbid(unsafe_code)]

pub mod admission;
pub mod confdir;
pub mod conn;
pub mod directory;
pub mod fetch;
pub mod handover;
pub mod log;
pub mod policy;
pub mod ports;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod testers;
