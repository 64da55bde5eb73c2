//! The owampd control process: OWAMP-Control for every connection, the limits
//! accounting, test ports, the data store and Fetch-Session (design.md "Processes").
//!
//! A library so that the modules can be unit-tested; `main.rs` is the process.
#![forbid(unsafe_code)]

pub mod clock;
pub mod confdir;
pub mod directory;
pub mod log;
pub mod policy;
pub mod ports;
pub mod store;
pub mod testers;

// conn, session and fetch need owamp::owp, which is not merged yet; their `pub mod`
// lines come back with that merge (they are compile-checked and tested against it).
