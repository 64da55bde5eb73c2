//! Operator tools that come with the server package: `owpfstore` edits
//! `owamp-server.pfs` as perfSONAR's `pfstore` does, and `owampd-cleanup` removes
//! session files older than a day that no running process holds open (what
//! perfSONAR's daily cron job does, for our process names too).
#![forbid(unsafe_code)]

pub mod cleanup;
pub mod pfstore;
pub mod replace;
