//! The owampd control process: OWAMP-Control for every connection, the limits
//! accounting, test ports, the data store and Fetch-Session (design.md "Processes").
//!
//! A library so that the modules can be unit-tested; `main.rs` is the process.
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
