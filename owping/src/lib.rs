//! Shared code of the OWAMP clients.
#![forbid(unsafe_code)]
