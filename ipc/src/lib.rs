//! owampd internal messages and their transport (docs/processes.md "IPC").
//!
//! - [`fds`]: the fixed fd layout every child inherits, and the check a child makes at start.
//! - [`channel`]: one message per `SOCK_SEQPACKET` datagram, bincode-encoded, bounded to
//!   [`channel::MAX_MESSAGE`] before decoding, with fds riding along (`SCM_RIGHTS`).
//! - [`spawn`]: start a child (posix_spawn) with its fds moved to fixed numbers and a
//!   clean environment.
//! - [`spawner`]: the small process control forks to start its testers, and its protocol.
//! - [`master`]: the master ⇄ control messages. (Control ⇄ tester messages live in the
//!   `tester-ipc` crate: they carry `owamp` types, and the master links this crate but
//!   never `owamp`.)
//! - [`daemon`]: detach from the terminal (fork needs `unsafe`, which the master may not hold).
//! - [`stop`]: the signals that stop the daemon; only the master acts on them, the
//!   other processes hold them blocked.
//!
//! `unsafe` is allowed in this crate only for fd ownership, `fork`, `dup3`, `sigaction`
//! and the pidfd calls; every block carries a `// SAFETY:` comment.

pub mod channel;
mod codec;
pub mod daemon;
pub mod error;
pub mod fds;
pub mod master;
pub mod spawn;
pub mod spawner;
pub mod stop;

pub use channel::{Channel, Received};
pub use error::IpcError;
