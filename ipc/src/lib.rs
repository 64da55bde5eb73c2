//! owampd internal messages and their transport (design.md "IPC").
//!
//! - [`fds`]: the fixed fd layout every child inherits, and the check a child makes at start.
//! - [`channel`]: one message per `SOCK_SEQPACKET` datagram, bincode-encoded, bounded to
//!   [`channel::MAX_MESSAGE`] before decoding, with fds riding along (`SCM_RIGHTS`).
//! - [`spawn`]: fork+exec a child with its fds moved to fixed numbers and a clean environment.
//! - [`master`]: the master ⇄ control messages.
//! - [`tester`]: the control ⇄ tester messages.
//! - [`daemon`]: detach from the terminal (fork needs `unsafe`, which the master may not hold).
//!
//! `unsafe` is allowed in this crate only for fd ownership, the `pre_exec` hook and
//! `fork`; every block carries a `// SAFETY:` comment.

pub mod channel;
mod codec;
pub mod daemon;
pub mod error;
pub mod fds;
pub mod master;
pub mod spawn;
pub mod tester;

pub use channel::{Channel, Received};
pub use error::IpcError;
