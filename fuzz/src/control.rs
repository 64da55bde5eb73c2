//! What both control targets (`control_session`, `control_socket`) serve a connection
//! with: the server context of a small daemon, and testers that answer as scripted.
//!
//! Real testers cannot run under the fuzzer: each is a process the spawner starts in its
//! own sandbox. The fakes answer control's messages the way a tester does, at once, so
//! every input reaches the test period, the Stop-Sessions exchange and the data store.

use owamp::owp::{ReceiveWriter, SessionHeader};
use owamp::{ErrorEstimate, ModeSet, Num64, PacketRecord, SkipRange};
use owampd_control::directory::SimpleDirectory;
use owampd_control::log::{LogSink, Logger, MemorySink};
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
use tester_ipc::{
    ControlToTester, Outcome, Report, Role as TesterRole, Setup, Stop, TesterToControl,
};

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

/// Control's log lines on stderr, for replaying an input by hand.
struct StderrLines;

impl LogSink for StderrLines {
    fn log(&self, level: config::LogLevel, message: String) {
        eprintln!("[{level:?}] {message}");
    }
}

/// Control's log lines: kept in memory, or printed to stderr with `FUZZ_CONTROL_LOG=1`
/// (to see how far an input gets when replaying it).
fn log_sink() -> Arc<dyn LogSink> {
    if std::env::var_os("FUZZ_CONTROL_LOG").is_some_and(|v| v == "1") {
        Arc::new(StderrLines)
    } else {
        Arc::new(MemorySink::default())
    }
}

/// A current-thread runtime with its clock paused (it jumps to the next timer whenever
/// every task waits), as both control targets drive `serve_connection`.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// A daemon with every mode and unlimited classes, its store in `dir`.
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
        policy: Policy::new(tree, 1.0),
        store,
        ports: PortAllocator::new(None),
        log: Logger::new(log_sink(), config::LogLevel::All),
        testers: Arc::new(FakeLauncher),
    })
}

/// Testers that answer as scripted: a sender finishes right after Start; a receiver
/// writes its data file's header at Start, reports ReceiveDone, and at Stop writes a few
/// records (sent long enough before the stop time to be kept), takes the peer's skip
/// ranges and finalises the file as the real tester does (`owamp::owp`), so that a
/// Fetch-Session of the session reads a real file.
pub struct FakeLauncher;

/// Records a fake receiver writes.
const FAKE_RECORDS: u32 = 5;

struct FakeLink {
    index: usize,
    role: TesterRole,
    request: owamp::wire::RequestSession,
    events: EventTx,
    file: Option<File>,
    writer: Option<StopOrLive>,
    /// The peer's skip ranges still to come, and the stop time, after a Stop with the
    /// peer's record.
    skips_left: u32,
}

enum StopOrLive {
    Live(ReceiveWriter),
    Stopping(owamp::owp::StopFinalizer),
    Incomplete(ReceiveWriter, Num64),
    /// The Stop-Sessions rule failed (reported at Finalize, as the tester does).
    Failed(owamp::owp::OwpError),
}

impl FakeLink {
    fn reply(&self, msg: TesterToControl) {
        let _ = self.events.send((self.index, TesterEvent::Msg(msg)));
    }

    fn finished(&self, r: Result<owamp::owp::FinalizeOutcome, owamp::owp::OwpError>) {
        let outcome = match r {
            Ok(o) => Outcome::Receiver {
                finished: o.finished,
                records: o.num_records,
                lost: 0,
            },
            Err(e) => Outcome::Failed {
                reason: e.to_string(),
            },
        };
        self.reply(TesterToControl::Finished(Report {
            outcome,
            drops: vec![],
        }));
    }

    fn start_receiver(&mut self) {
        let header = SessionHeader::parse(&self.request.encode_stored());
        self.writer = match (self.file.take(), header) {
            (Some(f), Ok(h)) => ReceiveWriter::create(f, "fake", &h)
                .ok()
                .map(StopOrLive::Live),
            _ => None,
        };
        self.reply(TesterToControl::ReceiveDone);
    }

    fn stop_receiver(&mut self, stop: &Stop) {
        let Some(StopOrLive::Live(mut w)) = self.writer.take() else {
            return;
        };
        let timeout = self.request.timeout;
        let n = FAKE_RECORDS.min(self.request.num_packets);
        for seq in 0..n {
            let back = Num64(u64::from(n - seq) << 32).wrapping_add(timeout);
            let _ = w.record(&PacketRecord {
                seq,
                send_err: ErrorEstimate::UNSYNC,
                recv_err: ErrorEstimate::UNSYNC,
                send_ts: stop.stop_time.wrapping_sub(back),
                recv_ts: stop.stop_time,
                ttl: 64,
            });
        }
        self.writer = match stop.peer {
            Some(rec) => match w.begin_stop(stop.stop_time, rec.next_seqno) {
                Ok(f) => {
                    self.skips_left = rec.num_skips;
                    Some(StopOrLive::Stopping(f))
                }
                Err(e) => Some(StopOrLive::Failed(e)),
            },
            None => Some(StopOrLive::Incomplete(w, stop.stop_time)),
        };
    }

    fn finalize_receiver(&mut self) {
        match self.writer.take() {
            Some(StopOrLive::Stopping(f)) => {
                let r = f.finish();
                self.finished(r);
            }
            Some(StopOrLive::Incomplete(w, at)) => {
                let r = w.finalize_incomplete(at);
                self.finished(r);
            }
            Some(StopOrLive::Live(w)) => {
                let r = w.finalize_incomplete(Num64::ZERO);
                self.finished(r);
            }
            Some(StopOrLive::Failed(e)) => self.finished(Err(e)),
            None => self.finished(Ok(owamp::owp::FinalizeOutcome {
                finished: 2,
                next_seqno: 0,
                num_records: 0,
                num_skips: 0,
            })),
        }
    }
}

impl TesterLink for FakeLink {
    fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError> {
        match (msg, self.role) {
            (ControlToTester::Start, TesterRole::Sender) => {
                let skips = vec![SkipRange { first: 0, last: 0 }];
                self.reply(TesterToControl::SenderSkips(skips));
                self.reply(TesterToControl::Finished(Report {
                    outcome: Outcome::Sender {
                        next_seqno: self.request.num_packets,
                        num_skips: 1,
                    },
                    drops: vec![],
                }));
            }
            (ControlToTester::Start, TesterRole::Receiver) => self.start_receiver(),
            (ControlToTester::Stop(stop), TesterRole::Receiver) => self.stop_receiver(stop),
            (ControlToTester::Skips(ranges), TesterRole::Receiver) => {
                if let Some(StopOrLive::Stopping(f)) = &mut self.writer {
                    // As the tester: no more than announced, at most one per packet.
                    let room = self
                        .skips_left
                        .min(self.request.num_packets.saturating_sub(f.num_skips()));
                    let take = ranges.len().min(room as usize);
                    let _ = f.skips(&ranges[..take]);
                    self.skips_left = self.skips_left.saturating_sub(ranges.len() as u32);
                }
            }
            (ControlToTester::Finalize, TesterRole::Receiver) => self.finalize_receiver(),
            (ControlToTester::Abort, TesterRole::Receiver) => match self.writer.take() {
                Some(StopOrLive::Live(w)) | Some(StopOrLive::Incomplete(w, _)) => {
                    let _ = w.finalize_error();
                }
                Some(StopOrLive::Stopping(f)) => {
                    let _ = f.error();
                }
                Some(StopOrLive::Failed(_)) | None => {}
            },
            _ => {}
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
        file: Option<File>,
        index: usize,
        events: EventTx,
    ) -> LaunchFuture<'_> {
        let link = FakeLink {
            index,
            role: setup.role,
            request: setup.request,
            events,
            file,
            writer: None,
            skips_left: 0,
        };
        Box::pin(async move { Ok(Box::new(link) as Box<dyn TesterLink>) })
    }
}
