//! `.owp` data files (protocol.md §7.7, §7.8): reading v0/v2/v3 files, writing the client's
//! fetched files, and the receiving tester's [`ReceiveWriter`] with the reference's
//! finalisation rules.
//!
//! Locking: the reference takes `fcntl` record locks (a write lock while finalising, a
//! read lock while fetching). We use `flock` through std's `File::lock`/`lock_shared`
//! instead: only our own processes share these files, and `flock` locks are tied to the
//! open file description, which suits fd passing. They do not exclude a C program that
//! uses `fcntl` locks on the same file.

mod reader;
mod receive;
mod session;
mod writer;

pub use reader::{FileHeader, OwpFile, RecordIter};
pub use receive::{FinalizeOutcome, ReceiveWriter, StopFinalizer};
pub use session::{PREAMBLE_LEN, SLOT_LEN, SessionFields, SessionHeader};
pub use writer::{FetchInfo, FetchedFileWriter, write_v3_header};

use std::path::PathBuf;

/// The four magic octets at the start of every `.owp` file.
pub const MAGIC: [u8; 4] = *b"OwA\0";
/// The only version we write; v0 and v2 are read.
pub const VERSION_V3: u32 = 3;
/// Octets before the Request-Session in a v3 header (protocol.md §7.7 table).
pub const V3_FIXED_LEN: u64 = 40;
/// Record sizes: v3 (protocol.md §2.9) and v0/v2.
pub const V3_RECORD_LEN: u64 = 25;
pub const V2_RECORD_LEN: u64 = 24;
/// Octets of one skip range in a file.
pub const SKIP_LEN: u64 = 8;

/// The file's `finished` word (protocol.md §7.7).
pub const FINISHED_ERROR: u32 = 0;
pub const FINISHED_NORMAL: u32 = 1;
pub const FINISHED_INCOMPLETE: u32 = 2;

/// Everything that can go wrong with an `.owp` file.
#[derive(Debug, thiserror::Error)]
pub enum OwpError {
    #[error("{path}: I/O error on {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an .owp file (bad magic {found:02x?})")]
    BadMagic { path: PathBuf, found: [u8; 4] },
    #[error("{path}: unsupported .owp version {version:#x}")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: header field {field} is invalid: {detail}")]
    BadHeader {
        path: PathBuf,
        field: &'static str,
        detail: String,
    },
    #[error(
        "{path}: truncated at {field}: need {need} octets from offset {offset}, file has {have}"
    )]
    Truncated {
        path: PathBuf,
        field: &'static str,
        offset: u64,
        need: u64,
        have: u64,
    },
    #[error("stored Request-Session field {field} is invalid: {detail}")]
    BadSession { field: &'static str, detail: String },
    #[error(
        "{path}: session invalid: received record seq {seq} is not below Next Seqno {next_seqno}"
    )]
    SessionInvalid {
        path: PathBuf,
        seq: u32,
        next_seqno: u32,
    },
    #[error("{path}: {detail}")]
    Usage { path: PathBuf, detail: String },
}

/// Take the shared (reader) lock a fetcher holds while reading a data file; fails
/// with `WouldBlock` inside [`OwpError::Io`] while a writer is finalising (the reference
/// retries with back-off, protocol.md §2.8). `flock(LOCK_SH|LOCK_NB)`.
pub fn try_lock_shared(file: &std::fs::File, path: &std::path::Path) -> Result<(), OwpError> {
    file.try_lock_shared().map_err(|e| {
        let source = match e {
            std::fs::TryLockError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
            std::fs::TryLockError::Error(err) => err,
        };
        OwpError::io(path, "shared lock", source)
    })
}

impl OwpError {
    pub(crate) fn io(path: &std::path::Path, what: &'static str, source: std::io::Error) -> Self {
        OwpError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    }
}
