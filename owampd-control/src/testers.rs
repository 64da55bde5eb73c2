//! Test-session endpoints as seen from a control connection: one `owampd-tester`
//! process per session (design.md "Processes"), behind a small trait so the connection
//! state machine can be tested with in-process fakes.
//!
//! A launcher starts the tester, completes the `Hello`/`Setup`/`Ready` exchange, and
//! from then on forwards every message the tester sends (or its death) as a
//! [`TesterEvent`] tagged with the session's index, into the connection's one event
//! queue. A dead tester ends only its own session (design.md "Processes").

use ipc::tester::{ControlToTester, TesterSetup, TesterToControl};
use std::fs::File;
use std::future::Future;
use std::net::UdpSocket;
use std::pin::Pin;
use thiserror::Error;
use tokio::sync::mpsc;

#[derive(Debug, Error)]
pub enum TesterError {
    #[error("cannot start owampd-tester: {0}")]
    Spawn(String),
    #[error("owampd-tester: {0}")]
    Protocol(String),
    #[error("owampd-tester is gone: {0}")]
    Gone(String),
}

/// Something a tester said or did, after `Ready`.
#[derive(Debug)]
pub enum TesterEvent {
    Msg(TesterToControl),
    /// The channel closed or failed: the process exited or was killed.
    Gone(String),
}

pub type EventTx = mpsc::UnboundedSender<(usize, TesterEvent)>;
pub type EventRx = mpsc::UnboundedReceiver<(usize, TesterEvent)>;

/// Control's handle on a running tester.
pub trait TesterLink: Send + Sync {
    fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError>;
    /// Kill the process now (the session is abandoned).
    fn kill(&mut self);
}

pub type LaunchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn TesterLink>, TesterError>> + Send + 'a>>;

pub trait TesterLauncher: Send + Sync {
    /// Start a tester for `setup` with its bound `socket` (fd 4) and, for a receiver,
    /// its data `file` (fd 5); return once it said `Ready`.
    fn launch(
        &self,
        setup: TesterSetup,
        socket: UdpSocket,
        file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> LaunchFuture<'_>;
}
