//! The server's whole OWAMP-Control connection (owampd-control `serve_connection`) fed
//! a hostile client's byte stream: greeting, Set-Up-Response, then any commands
//! (Request-Session, Start-Sessions, Stop-Sessions, Fetch-Session, junk) until EOF.
//!
//! The fuzzer cannot forge a Token for an unknown random challenge, so beyond the
//! Set-Up-Response it explores open mode, where HMAC fields are not checked (protocol.md §1.5):
//! that is the whole command state machine, policy, port allocation, the data store and
//! the tester exchange (with scripted fake testers, as in control's own flow tests).
//! Tokio's clock is paused and advances by itself, so timeouts cost nothing.
//!
//! Invariants: no panic; the connection always ends once the client's bytes run out
//! (a hang is a libFuzzer timeout); every test-session guard is released afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owamp::{ModeSet, Num64, SkipRange};
use owampd_control::directory::SimpleDirectory;
use owampd_control::log::{Logger, MemorySink};
use owampd_control::policy::{ClassTree, Policy};
use owampd_control::ports::PortAllocator;
use owampd_control::session::{ServerConfig, ServerCtx, serve_connection};
use owampd_control::store::Store;
use owampd_control::testers::{
    EventTx, LaunchFuture, TesterError, TesterEvent, TesterLauncher, TesterLink,
};
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;
use tester_ipc::{ControlToTester, Outcome, Report, Role as TesterRole, Setup, TesterToControl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = ClassTree::unlimited();
    let (store, _) = Store::open(dir.path(), &tree).expect("store");
    let ctx = Arc::new(ServerCtx {
        config: ServerConfig {
            authmodes: ModeSet(7),
            control_timeout: Some(Duration::from_secs(60)),
            end_delay_s: 1.0,
            start_time: Num64(0xdd12_e5a0_0000_0000),
            debug_time_offset: 0.0,
        },
        directory: Arc::new(SimpleDirectory {
            users: vec![("alice".into(), b"testpass".to_vec())],
        }),
        policy: Policy::new(tree, 1.0),
        store,
        ports: PortAllocator::new(None),
        log: Logger::new(Arc::new(MemorySink::default()), config::LogLevel::All),
        testers: Arc::new(FakeLauncher),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let input = data.to_vec();
    rt.block_on(async {
        let (server_end, client_end) = tokio::io::duplex(1 << 16);
        let (mut rd, mut wr) = tokio::io::split(client_end);
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = rd.read_to_end(&mut sink).await;
        });
        let feed = tokio::spawn(async move {
            let _ = wr.write_all(&input).await;
            let _ = wr.shutdown().await;
            // Keep the write half alive until the server is done with the stream.
            wr
        });
        let peer = "127.0.0.1:40000".parse().expect("peer");
        serve_connection(server_end, peer, ctx.clone()).await;
        let _ = feed.await;
        let _ = drain.await;
    });
    drop(rt);
    // Every guard of the connection is gone: no test session is still counted.
    assert_eq!(ctx.policy.test_sessions(), 0, "test session slot leaked");
});

/// Testers that answer as scripted: a sender finishes right after Start; a receiver
/// reports ReceiveDone after Start and a normal finish at Finalize (after Stop).
struct FakeLauncher;

struct FakeLink {
    index: usize,
    role: TesterRole,
    npackets: u32,
    events: EventTx,
    /// Whether the receiver's Stop carried the peer's record (Stop-Sessions from the
    /// client), until Finalize.
    stopped_by_peer: Option<bool>,
}

impl TesterLink for FakeLink {
    fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError> {
        let reply = match (msg, self.role) {
            (ControlToTester::Start, TesterRole::Sender) => {
                let skips = vec![SkipRange { first: 0, last: 0 }];
                let _ = self.events.send((
                    self.index,
                    TesterEvent::Msg(TesterToControl::SenderSkips(skips)),
                ));
                Some(TesterToControl::Finished(Report {
                    outcome: Outcome::Sender {
                        next_seqno: self.npackets,
                        num_skips: 1,
                    },
                    drops: vec![],
                }))
            }
            (ControlToTester::Start, TesterRole::Receiver) => Some(TesterToControl::ReceiveDone),
            (ControlToTester::Stop(stop), TesterRole::Receiver) => {
                self.stopped_by_peer = Some(stop.peer.is_some());
                None
            }
            (ControlToTester::Finalize, TesterRole::Receiver) => {
                Some(TesterToControl::Finished(Report {
                    outcome: Outcome::Receiver {
                        finished: if self.stopped_by_peer == Some(true) { 1 } else { 2 },
                        records: 0,
                        lost: 0,
                    },
                    drops: vec![],
                }))
            }
            _ => None,
        };
        if let Some(r) = reply {
            let _ = self.events.send((self.index, TesterEvent::Msg(r)));
        }
        Ok(())
    }

    fn kill(&mut self) {}
}

impl TesterLauncher for FakeLauncher {
    fn launch(
        &self,
        setup: Setup,
        _socket: std::net::UdpSocket,
        _file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> LaunchFuture<'_> {
        let link = FakeLink {
            index,
            role: setup.role,
            npackets: setup.request.num_packets,
            events,
            stopped_by_peer: None,
        };
        Box::pin(async move { Ok(Box::new(link) as Box<dyn TesterLink>) })
    }
}
