//! Shared code of the OWAMP clients (owping, owstats, owfetch, owup; spec §8).
#![forbid(unsafe_code)]

pub mod getopt;
pub mod opts;
pub mod parse;
