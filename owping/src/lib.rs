//! Shared code of the OWAMP clients (owping, owstats, owfetch, owup; spec §8).
#![forbid(unsafe_code)]

pub mod control;
pub mod getopt;
pub mod net;
pub mod passphrase;
pub mod signals;
pub mod opts;
pub mod parse;
