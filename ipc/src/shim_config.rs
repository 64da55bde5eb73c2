//! SHIM, to delete at merge: the few `config` crate types that [`crate::master`] carries,
//! until the real `config` crate lands. At merge `master.rs` re-exports `config::{...}`
//! instead and this file goes (the `Configure` golden bytes then need re-pinning).

use serde::{Deserialize, Serialize};

/// `config::LogLevel`: the `loglevel` keyword (spec §7.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogLevel {
    Fatal,
    Warning,
    Info,
    Debug,
    All,
    None,
}

/// `config::PortRange`: `-P` / `testports` (spec §7.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

/// `config::Limits`: stand-in, opaque here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {}

/// `config::Pfs`: stand-in, opaque here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pfs {}
