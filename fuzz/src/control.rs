//! What both control targets (`control_session`, `control_socket`) serve a connection
//! with: the server context of a small daemon, and testers that answer as scripted.
//!
//! Real testers cannot run under the fuzzer: each is a process the spawner starts in its
//! own sandbox. The fakes answer control's messages the way a tester does, at once, so
//! every input reaches the test period, the Stop-Sessions exchange and the data store.

use owamp::{ModeSet, Num64, SkipRange};
use owampd_control::directory::SimpleDirectory;
use owampd_control::log::{LogSink, Logger, MemorySink, StderrSink};
use owampd_control::policy::{ClassTree, Policy};
use owampd_control::ports::PortAllocator;
use owampd_control::session::{ServerConfig, ServerCtx};
use owampd_control::store::Store;
use owampd_control::testers::{
    EventTx, LaunchFuture, TesterError, TesterEvent, TesterLauncher, TesterLink,
};
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tester_ipc::{ControlToTester, Outcome, Report, Role as TesterRole, Setup, TesterToControl};

/// The user the targets know, and its pass-phrase (authenticated and encrypted modes).
pub const USER: &str = "alice";
pub const PASSPHRASE: &[u8] = b"testpass";

/// Where control's clock stands when the fuzzer starts, as an NTP time in seconds:
/// 10 000 s before the Start Time of the seeds' requests (`seeds/make_seeds.py`), so
/// that they stay in the future (accepted, and a paused clock reaches them at once)
/// however long the run and whatever the day. Control's clock is the wall clock plus
/// the daemon's debug offset (`OWAMP_DEBUG_TIMEOFFSET`), which is what this sets.
const NTP_NOW_AT_START: f64 = 3_899_990_000.0;

fn debug_time_offset() -> f64 {
    static OFFSET: OnceLock<f64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        NTP_NOW_AT_START - (unix + 2_208_988_800.0)
    })
}

/// Control's log lines: kept in memory, or printed to stderr with `FUZZ_CONTROL_LOG=1`
/// (to see how far an input gets when replaying it).
fn log_sink() -> Arc<dyn LogSink> {
    if std::env::var_os("FUZZ_CONTROL_LOG").is_some_and(|v| v == "1") {
        Arc::new(StderrSink)
    } else {
        Arc::new(MemorySink::default())
    }
}

/// A daemon with every mode, unlimited classes, one control connection at most (so a
/// leaked connection guard shows as a refused next connection), its store in `dir`.
pub fn server_ctx(dir: &Path) -> Arc<ServerCtx> {
    let tree = ClassTree::unlimited();
    let (store, _) = Store::open(dir, &tree).expect("store");
    Arc::new(ServerCtx {
        config: ServerConfig {
            authmodes: ModeSet(7),
            control_timeout: Some(Duration::from_secs(60)),
            pbkdf2_count: 2048,
            end_delay_s: 1.0,
            start_time: Num64(0xdd12_e5a0_0000_0000),
            debug_time_offset: debug_time_offset(),
        },
        directory: Arc::new(SimpleDirectory {
            users: vec![(USER.into(), PASSPHRASE.to_vec())],
        }),
        policy: Policy::new(tree, 1.0, 1),
        store,
        ports: PortAllocator::new(None),
        log: Logger::new(log_sink()),
        testers: Arc::new(FakeLauncher),
    })
}

/// Testers that answer as scripted: a sender finishes right after Start; a receiver
/// reports ReceiveDone after Start and a normal finish at Finalize (after Stop).
pub struct FakeLauncher;

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
                        finished: if self.stopped_by_peer == Some(true) {
                            1
                        } else {
                            2
                        },
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
