//! Parsers and validation for `owamp-server.conf`, `.limits` and `.pfs`.
#![forbid(unsafe_code)]
