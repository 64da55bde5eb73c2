//! The sender and receiver loops (spec §3.3, §3.4).
