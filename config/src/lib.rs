//! Parsers and validation for owampd's three configuration files, compatible with
//! perfSONAR owamp 5.x (protocol.md §7.9–7.11). Each file is looked up in the
//! configuration directory under its current name first, then its older name.
//!
//! - **`owamp-server.conf`** (`owampd.conf`), [`ServerConf`]: daemon settings, one
//!   `key [value] [#comment]` per line (authmode, datadir, vardir, srcnode, testports,
//!   user, group, rootfolly, facility, loglevel, loglocation, verbose, diskfudge, dieby,
//!   controltimeout, pbkdf2_count, enddelay, maxcontrolsessions). Unknown keys are fatal.
//!   A missing file means the defaults unless the directory was given explicitly (`-c`).
//! - **`owamp-server.pfs`** (`owampd.pfs`), [`Pfs`]: `identity hexpassphrase` lines
//!   written by `pfstore`; the PBKDF2 key is the decoded bytes. A missing file means no
//!   users (so only open mode can succeed). [`pfs_lookup_client`] is the `owping -k`
//!   lookup with the reference's prefix-match quirk.
//! - **`OWAMP_DEBUG_TIMEOFFSET`** ([`debug_time_offset`]): the one setting read from the
//!   environment, here so that the master (which links no protocol code) and the
//!   programs that keep time read it alike.
//! - **`owamp-server.limits`** (`owampd.limits`), [`Limits`]: the limit-class tree
//!   (`limit NAME with k=v,...`) and the rules that choose a class for a connection
//!   (`assign default|net|user`). A missing file means one unlimited class `default`.
//!
//! Every parser takes the file text and a path (used only in messages) and reports
//! problems as `path:line: what is wrong`. All values are plain data
//! (`Serialize`/`Deserialize`) so the master can parse them once at start and ship them
//! to the control process over IPC. This crate does no crypto and no name resolution.
#![forbid(unsafe_code)]

mod cnum;
pub mod debug_offset;
pub mod limits;
pub mod pfs;
pub mod ports;
pub mod server;
pub mod srcnode;
mod text;

pub use debug_offset::{
    DEBUG_TIME_OFFSET_ENV, DebugOffsetError, debug_time_offset, parse_debug_time_offset,
};
pub use limits::{ClassId, LimitClass, Limits, LimitsError, LimitsProblem, NetRule};
pub use pfs::{Pfs, PfsError, PfsProblem, pfs_lookup_client};
pub use ports::{PortRange, PortRangeError};
pub use server::{
    ConfError, ConfNote, ConfProblem, ConfWarning, Facility, LoadedConf, LogLevel, RunAs,
    ServerConf,
};
pub use srcnode::{OWAMP_CONTROL_PORT, SrcNode, SrcNodeError};
pub use text::ReadError;
