//! The connection state machine driven end to end over an in-memory stream, with a
//! small async OWAMP-Control client and scripted fake testers.

use super::*;
use crate::directory::SimpleDirectory;
use crate::log::MemorySink;
use crate::policy::ClassTree;
use crate::testers::{LaunchFuture, ReadyRx, TesterError};
use owamp::wire::{FetchAck, StartSessions};
use owamp::{Slot, SlotKind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tester_ipc::{Outcome, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Scripted testers: a sender finishes right after Start; a receiver says ReceiveDone
/// after Start and Finished after Stop. Every message control sends is recorded.
#[derive(Default)]
struct FakeLauncher {
    sent: Arc<Mutex<Vec<(usize, ControlToTester)>>>,
    setups: Mutex<Vec<Setup>>,
    /// The next testers fail their start-up exchange (after Accept-Session).
    fail_start: AtomicBool,
}

struct FakeLink {
    index: usize,
    role: TesterRole,
    npackets: u32,
    events: EventTx,
    sent: Arc<Mutex<Vec<(usize, ControlToTester)>>>,
    ready: Option<ReadyRx>,
    /// The receiver's Stop, until Finalize.
    stop: Option<Stop>,
}

impl TesterLink for FakeLink {
    fn send(&mut self, msg: &ControlToTester) -> Result<(), TesterError> {
        self.sent.lock().unwrap().push((self.index, msg.clone()));
        let reply = match (msg, self.role) {
            (ControlToTester::Start, TesterRole::Sender) => {
                let skips = vec![SkipRange { first: 1, last: 2 }];
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
                self.stop = Some(*stop);
                None
            }
            // Scripted: Next Seqno 0 stands for "a received record at or past it".
            (ControlToTester::Finalize, TesterRole::Receiver) => match self.stop {
                Some(Stop {
                    peer: Some(PeerRecord { next_seqno: 0, .. }),
                    ..
                }) => Some(TesterToControl::Finished(Report {
                    outcome: Outcome::Failed {
                        reason: "session invalid".into(),
                    },
                    drops: vec![],
                })),
                stop => Some(TesterToControl::Finished(Report {
                    outcome: Outcome::Receiver {
                        finished: if stop.is_some_and(|s| s.peer.is_some()) {
                            1
                        } else {
                            2
                        },
                        records: 3,
                        lost: 0,
                    },
                    drops: vec![],
                })),
            },
            _ => None,
        };
        if let Some(r) = reply {
            let _ = self.events.send((self.index, TesterEvent::Msg(r)));
        }
        Ok(())
    }
    fn kill(&mut self) {}
    fn take_ready(&mut self) -> Option<ReadyRx> {
        self.ready.take()
    }
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
        if let Some(f) = file {
            f.set_len(500).unwrap();
        }
        let ready = self.fail_start.load(Ordering::SeqCst).then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tx.send(Err(TesterError::Protocol("sandbox refused".into())))
                .unwrap();
            rx
        });
        let link = FakeLink {
            index,
            role: setup.role,
            npackets: setup.request.num_packets,
            events,
            sent: self.sent.clone(),
            ready,
            stop: None,
        };
        self.setups.lock().unwrap().push(setup);
        Box::pin(async move { Ok(Box::new(link) as Box<dyn TesterLink>) })
    }
}

struct Harness {
    ctx: Arc<ServerCtx>,
    launcher: Arc<FakeLauncher>,
    sink: Arc<MemorySink>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Every one of `needles` is in some log line written so far (which are consumed).
    fn assert_logged(&self, needles: &[&str]) {
        let lines = self.sink.take();
        for n in needles {
            assert!(
                lines.iter().any(|(_, l)| l.contains(n)),
                "{n:?} not in {lines:?}"
            );
        }
    }
}

fn harness(authmodes: u32) -> Harness {
    harness_with(authmodes, Duration::from_secs(5))
}

fn harness_with(authmodes: u32, timeout: Duration) -> Harness {
    harness_tree(authmodes, timeout, ClassTree::unlimited())
}

fn harness_tree(authmodes: u32, timeout: Duration, tree: ClassTree) -> Harness {
    harness_count(
        authmodes,
        timeout,
        tree,
        config::server::DEFAULT_PBKDF2_COUNT,
    )
}

fn harness_count(authmodes: u32, timeout: Duration, tree: ClassTree, pbkdf2_count: u32) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &tree).unwrap();
    let launcher = Arc::new(FakeLauncher::default());
    let sink = Arc::new(MemorySink::default());
    let ctx = Arc::new(ServerCtx {
        config: ServerConfig {
            authmodes: ModeSet(authmodes),
            control_timeout: Some(timeout),
            pbkdf2_count,
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
        log: Logger::new(sink.clone(), config::LogLevel::All),
        testers: launcher.clone(),
    });
    Harness {
        ctx,
        launcher,
        sink,
        _dir: dir,
    }
}

const PEER: &str = "127.0.0.1:40000";

/// A minimal async client: the handshake, then sealed messages.
struct Client {
    s: DuplexStream,
    cipher: ControlCipher,
}

impl Client {
    async fn start(h: &Harness) -> (Client, ServerGreeting, tokio::task::JoinHandle<()>) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let ctx = h.ctx.clone();
        let task = tokio::spawn(serve_connection(b, PEER.parse().unwrap(), ctx));
        let mut c = Client {
            s: a,
            cipher: ControlCipher::open_mode(),
        };
        let mut g = [0u8; 64];
        c.s.read_exact(&mut g).await.unwrap();
        (c, ServerGreeting::decode(&g).unwrap(), task)
    }

    /// Sends Set-Up-Response; returns Server-Start (tail decrypted when accepted).
    async fn setup(
        &mut self,
        g: &ServerGreeting,
        mode: u32,
        user: Option<(&str, &[u8])>,
    ) -> ServerStart {
        let keys = SessionKeys {
            aes: [0x20; 16],
            hmac: [0x30; 32],
        };
        let client_iv = [0x40; 16];
        let mut resp = SetupResponse {
            mode,
            key_id: [0; 80],
            token: [0; 64],
            client_iv: [0; 16],
        };
        if let Some((name, pass)) = user {
            resp.key_id = SetupResponse::key_id_from_str(name).unwrap();
            let dk = crypto::derive_key(pass, &g.salt, g.count);
            resp.token = Token {
                challenge: g.challenge,
                keys: keys.clone(),
            }
            .encrypt(&dk);
            resp.client_iv = client_iv;
        }
        self.s.write_all(&resp.encode()).await.unwrap();
        let mut clear = [0u8; 32];
        self.s.read_exact(&mut clear).await.unwrap();
        let mut tail = [0u8; 16];
        self.s.read_exact(&mut tail).await.unwrap();
        let accepted = clear[15] == 0;
        if accepted && user.is_some() {
            let mut iv = [0u8; 16];
            iv.copy_from_slice(&clear[16..32]);
            self.cipher = ControlCipher::new(crypto::Role::Client, &keys, &client_iv, &iv);
            self.cipher.open(&mut tail).unwrap();
        }
        ServerStart::decode(&clear, &tail).unwrap()
    }

    async fn send(&mut self, segs: &[&[u8]]) {
        let b = self.cipher.seal(segs).unwrap();
        self.s.write_all(&b).await.unwrap();
    }

    async fn recv(&mut self, blocks: usize) -> Vec<u8> {
        let mut b = vec![0u8; blocks * 16];
        self.s.read_exact(&mut b).await.unwrap();
        self.cipher.open(&mut b).unwrap();
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).await.unwrap();
        self.cipher.verify_hmac(&h).unwrap();
        b
    }

    async fn request(&mut self, req: &RequestSession) -> AcceptSession {
        self.send(&[&req.encode_preamble(), &req.encode_slots()])
            .await;
        let b = self.recv(2).await;
        AcceptSession::decode(&b.try_into().unwrap()).unwrap()
    }

    /// True if the server closed the connection (EOF) without sending more.
    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b).await, Ok(0))
    }
}

fn request(conf_receiver: bool) -> RequestSession {
    RequestSession {
        conf_sender: !conf_receiver,
        conf_receiver,
        num_packets: 10,
        sender_port: 5000,
        receiver_port: 5001,
        sender_addr: "127.0.0.1".parse().unwrap(),
        receiver_addr: "127.0.0.1".parse().unwrap(),
        sid: Sid([7; 16]),
        padding: 0,
        // Ten seconds ahead: a Start Time long past is refused (MAX_START_IN_PAST).
        start_time: now_with_offset(0.0).wrapping_add(Num64(10 << 32)),
        timeout: Num64::from_secs_f64(2.0),
        type_p: 0,
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            param: Num64(0x1999_99A0),
        }],
    }
}

#[tokio::test]
async fn open_mode_handshake() {
    let h = harness(7);
    let (mut c, g, task) = Client::start(&h).await;
    assert_eq!(g.modes, ModeSet(7));
    assert_eq!(g.count, 2048);
    let start = c.setup(&g, 1, None).await;
    assert_eq!(start.accept, 0);
    assert_eq!(start.start_time, Num64(0xdd12_e5a0_0000_0000));
    drop(c);
    task.await.unwrap();
    h.assert_logged(&["accepted: mode open, user -"]);
}

#[tokio::test]
async fn mode_not_offered_is_accept_1_and_bad_mode_closes() {
    let h = harness(6);
    let (mut c, g, task) = Client::start(&h).await;
    assert_eq!(g.modes, ModeSet(6));
    assert_eq!(c.setup(&g, 1, None).await.accept, 1);
    assert!(c.closed().await);
    task.await.unwrap();

    let (mut c, _g, task) = Client::start(&h).await;
    let resp = SetupResponse {
        mode: 3,
        key_id: [0; 80],
        token: [0; 64],
        client_iv: [0; 16],
    };
    c.s.write_all(&resp.encode()).await.unwrap();
    assert!(c.closed().await, "no Server-Start for mode 3");
    task.await.unwrap();
}

#[tokio::test]
async fn no_modes_greets_then_closes() {
    let h = harness(0);
    let (mut c, g, task) = Client::start(&h).await;
    assert!(g.modes.is_empty());
    assert!(c.closed().await);
    task.await.unwrap();
}

#[tokio::test]
async fn authentication() {
    let h = harness(7);
    let (mut c, g, task) = Client::start(&h).await;
    assert_eq!(c.setup(&g, 4, Some(("alice", b"wrong"))).await.accept, 1);
    task.await.unwrap();
    let (mut c, g, task) = Client::start(&h).await;
    assert_eq!(
        c.setup(&g, 2, Some(("mallory", b"testpass"))).await.accept,
        1
    );
    task.await.unwrap();

    let (mut c, g, task) = Client::start(&h).await;
    let start = c.setup(&g, 4, Some(("alice", b"testpass"))).await;
    assert_eq!(start.accept, 0);
    assert_eq!(start.start_time, Num64(0xdd12_e5a0_0000_0000));
    // The first server message's HMAC covers the Server-Start tail (protocol.md §1.6): a
    // refused Request-Session (both conf flags) is Accept=3 and verifies.
    let mut both = request(true);
    both.conf_sender = true;
    let a = c.request(&both).await;
    assert_eq!(a.accept, AcceptCode::NotSupported);
    assert_eq!((a.port, a.sid), (0, Sid([0; 16])));
    // And the connection stays usable.
    let a = c.request(&request(true)).await;
    assert_eq!(a.accept, AcceptCode::Ok);
    drop(c);
    task.await.unwrap();
    // Closed before Start-Sessions: the receive file is deleted.
    assert!(h.ctx.store.is_empty());
    h.assert_logged(&["unknown user"]);
}

/// `pbkdf2_count` is the Count the greeting carries and the one the server derives the
/// user's key with: a client using the greeting's Count logs in, one that assumes the
/// default 2048 does not.
#[tokio::test]
async fn the_configured_pbkdf2_count_is_offered_and_used() {
    let h = harness_count(7, Duration::from_secs(5), ClassTree::unlimited(), 4096);
    let (mut c, g, task) = Client::start(&h).await;
    assert_eq!(g.count, 4096);
    assert_eq!(c.setup(&g, 2, Some(("alice", b"testpass"))).await.accept, 0);
    drop(c);
    task.await.unwrap();
    let (mut c, mut g, task) = Client::start(&h).await;
    g.count = 2048;
    assert_eq!(c.setup(&g, 2, Some(("alice", b"testpass"))).await.accept, 1);
    task.await.unwrap();
    h.assert_logged(&["wrong passphrase"]);
}

#[tokio::test]
async fn open_mode_sender_only_to_the_client() {
    let h = harness(7);
    let (mut c, g, _task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    let mut r = request(false);
    r.receiver_addr = "127.0.0.2".parse().unwrap();
    assert_eq!(c.request(&r).await.accept, AcceptCode::Failure);
    let r = request(false);
    let a = c.request(&r).await;
    assert_eq!(a.accept, AcceptCode::Ok);
    assert_eq!(a.sid, r.sid, "the client's SID is echoed");
}

#[tokio::test]
async fn unexpected_commands_close() {
    let h = harness(7);
    for cmd in [3u8, 5, 0] {
        let (mut c, g, task) = Client::start(&h).await;
        c.setup(&g, 1, None).await;
        let mut b = [0u8; 16];
        b[0] = cmd;
        c.send(&[&b]).await;
        assert!(c.closed().await, "command {cmd}");
        task.await.unwrap();
    }
}

#[tokio::test]
async fn fetch_unknown_sid_is_accept_1() {
    let h = harness(7);
    let (mut c, g, _task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    let f = FetchSession {
        begin: 0,
        end: u32::MAX,
        sid: Sid([9; 16]),
    };
    c.send(&[&f.encode()]).await;
    let b = c.recv(1).await;
    let ack = FetchAck::decode(&b.try_into().unwrap()).unwrap();
    assert_eq!(ack.accept, AcceptCode::Failure);
}

/// Both directions: the server's endpoints finish first, so it sends Stop-Sessions
/// first (N=1, its sender), then reads the client's (N=1, the client's sender).
#[tokio::test]
async fn full_test_period_server_stops_first() {
    let h = harness(7);
    let (mut c, g, task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    let recv = c.request(&request(true)).await;
    assert_eq!(recv.accept, AcceptCode::Ok);
    assert_ne!(recv.port, 0);
    assert_eq!(&recv.sid.0[..4], &[127, 0, 0, 1]);
    let send = c.request(&request(false)).await;
    assert_eq!(send.accept, AcceptCode::Ok);
    c.send(&[&StartSessions.encode()]).await;
    let ack = c.recv(1).await;
    assert_eq!(ack[0], 0, "Start-Ack accept");
    // Server's Stop-Sessions: header, SID block, body (8 bytes + range 1..2 = 16).
    let mut head = [0u8; 16];
    c.s.read_exact(&mut head).await.unwrap();
    c.cipher.open(&mut head).unwrap();
    let mut dec = StopSessionsDecoder::new(
        &head,
        StopLimits {
            max_sessions: 4,
            max_skips: 10,
        },
    )
    .unwrap();
    while dec.blocks_needed() > 0 {
        let mut b = vec![0u8; dec.blocks_needed() * 16];
        c.s.read_exact(&mut b).await.unwrap();
        c.cipher.open(&mut b).unwrap();
        dec.feed(&b).unwrap();
    }
    let mut hm = [0u8; 16];
    c.s.read_exact(&mut hm).await.unwrap();
    c.cipher.verify_hmac(&hm).unwrap();
    let ours = dec.finish().unwrap();
    assert_eq!(ours.accept, AcceptCode::Ok);
    assert_eq!(
        ours.sessions,
        vec![SessionStop {
            sid: send.sid,
            next_seqno: 10,
            skips: vec![SkipRange { first: 1, last: 2 }],
        }]
    );
    // The client's: its own sender (the server's receive session), stopped at 8.
    let stop = StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![SessionStop {
            sid: recv.sid,
            next_seqno: 8,
            skips: vec![],
        }],
    };
    c.send(&[&stop.encode()]).await;
    // Back to Idle: a Fetch works (the fake wrote no file, so Accept=2 for a partial
    // range of a file with no header), proving the command loop is running again.
    let f = FetchSession {
        begin: 0,
        end: 5,
        sid: recv.sid,
    };
    c.send(&[&f.encode()]).await;
    let b = c.recv(1).await;
    assert_eq!(
        FetchAck::decode(&b.try_into().unwrap()).unwrap().accept,
        AcceptCode::InternalError
    );
    drop(c);
    task.await.unwrap();
    let sent = h.launcher.sent.lock().unwrap().clone();
    let stop = sent.iter().find_map(|(i, m)| match m {
        ControlToTester::Stop(s) if *i == 0 => Some(*s),
        _ => None,
    });
    let stop = stop.unwrap_or_else(|| panic!("receiver never stopped: {sent:?}"));
    assert_eq!(
        stop.peer,
        Some(PeerRecord {
            next_seqno: 8,
            num_skips: 0
        })
    );
    assert!(sent.contains(&(0, ControlToTester::Finalize)), "{sent:?}");
    // The kept file is accounted at its real size, whatever the tester reported.
    assert_eq!(h.ctx.policy.disk_used(0), 500);
    let setups = h.launcher.setups.lock().unwrap();
    assert_eq!(setups[0].role, TesterRole::Receiver);
    assert_eq!(setups[0].peer, "127.0.0.1:5000".parse().unwrap());
    assert_eq!(setups[1].peer, "127.0.0.1:5001".parse().unwrap());
}

/// A finished receive session whose file outgrew its disk reservation (duplicates and
/// skip ranges are not in the estimate) in a class that cannot take the difference: the
/// file is kept and charged in full (the class is then over its allowance, which the
/// log says), never deleted.
#[tokio::test]
async fn a_file_over_the_disk_allowance_is_kept() {
    // The estimate for 10 packets and one slot is 450 octets; the fake tester's file is
    // 500; the class allows 460 (diskfudge 1.0).
    let mut tree = limited(0, 0, true);
    tree = ClassTree::new(vec![crate::policy::LimitClass {
        disk: 460,
        ..tree.get(0).unwrap().clone()
    }])
    .unwrap();
    let h = harness_tree(7, Duration::from_secs(5), tree);
    let (mut c, g, task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    let recv = c.request(&request(true)).await;
    assert_eq!(recv.accept, AcceptCode::Ok);
    assert_eq!(h.ctx.policy.disk_used(0), 450);
    c.send(&[&StartSessions.encode()]).await;
    assert_eq!(c.recv(1).await[0], 0, "Start-Ack accept");
    // The server's Stop-Sessions (no senders of its own): the header and its HMAC.
    let head = c.recv(1).await;
    assert_eq!((head[0], &head[4..8]), (3, &[0u8, 0, 0, 0][..]));
    let stop = StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![SessionStop {
            sid: recv.sid,
            next_seqno: 10,
            skips: vec![],
        }],
    };
    c.send(&[&stop.encode()]).await;
    drop(c);
    task.await.unwrap();
    assert_eq!(h.ctx.store.len(), 1, "the file is kept");
    assert_eq!(h.ctx.policy.disk_used(0), 500);
    h.assert_logged(&["data kept over the disk allowance"]);
    // Over its allowance, the class takes no new receive session.
    let (mut c, g, task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    assert_eq!(c.request(&request(true)).await.accept, AcceptCode::Failure);
    drop(c);
    task.await.unwrap();
}

/// The client stops first with a bad SID: the server closes, and the receive data is
/// finalised by the tester (it is not deleted).
#[tokio::test]
async fn stop_with_unknown_sid_closes() {
    let h = harness(7);
    let (mut c, g, task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    // Only a sender on the server: the fake finishes at once, so the server stops first;
    // use a receiver that never finishes instead by asking for a receive session whose
    // ReceiveDone arrives, then answering with a wrong SID.
    let recv = c.request(&request(true)).await;
    assert_eq!(recv.accept, AcceptCode::Ok);
    c.send(&[&StartSessions.encode()]).await;
    c.recv(1).await;
    // Server sends its Stop (N=0) once the receiver is done.
    let b = c.recv(1).await;
    assert_eq!(b[0], 3);
    let stop = StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![SessionStop {
            sid: Sid([1; 16]),
            next_seqno: 3,
            skips: vec![],
        }],
    };
    c.send(&[&stop.encode()]).await;
    assert!(c.closed().await);
    task.await.unwrap();
    let sent = h.launcher.sent.lock().unwrap().clone();
    assert!(sent.contains(&(0, ControlToTester::Abort)), "{sent:?}");
}

#[tokio::test]
async fn idle_client_is_closed_after_the_control_timeout() {
    let h = harness_with(7, Duration::from_millis(200));
    let (mut c, g, task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    // No command: the server gives up and closes.
    assert!(c.closed().await);
    task.await.unwrap();
    h.assert_logged(&["within the control timeout"]);
}

#[tokio::test]
async fn malformed_request_is_read_whole_and_answered_accept_3() {
    let h = harness(7);
    let (mut c, g, _task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    // IPVN 5, two slots of an unknown type: the server must consume both slots and the
    // slot HMAC, answer Accept=3, and still understand the next command.
    let r = request(true);
    let mut pre = r.encode_preamble();
    pre[1] = 5;
    pre[4..8].copy_from_slice(&2u32.to_be_bytes());
    let mut slots = vec![0u8; 32];
    slots[0] = 9;
    slots[16] = 9;
    c.send(&[&pre, &slots]).await;
    let b = c.recv(2).await;
    let a = AcceptSession::decode(&b.try_into().unwrap()).unwrap();
    assert_eq!(a.accept, AcceptCode::NotSupported);
    let a = c.request(&request(true)).await;
    assert_eq!(a.accept, AcceptCode::Ok);
}

#[tokio::test]
async fn bad_hmac_closes() {
    let h = harness(7);
    let (mut c, g, task) = Client::start(&h).await;
    c.setup(&g, 2, Some(("alice", b"testpass"))).await;
    let mut bytes = c.cipher.seal(&[&StartSessions.encode()]).unwrap();
    bytes[20] ^= 1;
    c.s.write_all(&bytes).await.unwrap();
    assert!(c.closed().await);
    task.await.unwrap();
}

fn limited(bandwidth: u64, test_sessions: u32, allow_open_mode: bool) -> ClassTree {
    ClassTree::new(vec![crate::policy::LimitClass {
        name: "root".into(),
        parent: None,
        bandwidth,
        disk: 0,
        delete_on_fetch: false,
        allow_open_mode,
        test_sessions,
    }])
    .unwrap()
}

#[tokio::test]
async fn policy_refusals_are_accept_1_and_release_everything() {
    // One default session is ~3.4 kbit/s: allow one at a time, two per connection.
    let h = harness_tree(7, Duration::from_secs(5), limited(4000, 2, true));
    let (mut c, g, _task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    assert_eq!(c.request(&request(true)).await.accept, AcceptCode::Ok);
    assert_eq!(
        c.request(&request(true)).await.accept,
        AcceptCode::Failure,
        "bandwidth"
    );
    // The refused request counted towards test_sessions (the reference counts every
    // request that reaches the policy), so the third is refused for that.
    assert_eq!(c.request(&request(true)).await.accept, AcceptCode::Failure);
    assert_eq!(h.ctx.store.len(), 1, "no file for refused sessions");
    h.assert_logged(&["bandwidth limit", "test_sessions limit"]);
}

#[tokio::test]
async fn allow_open_mode_off_removes_open_from_the_greeting() {
    let h = harness_tree(7, Duration::from_secs(5), limited(0, 0, false));
    let (mut c, g, task) = Client::start(&h).await;
    assert_eq!(g.modes, ModeSet(6));
    assert_eq!(c.setup(&g, 1, None).await.accept, 1);
    task.await.unwrap();
}

/// Two test periods on one connection: the second period's session must not be
/// confused with the first's (whose tester events may still be queued).
#[tokio::test]
async fn two_test_periods_on_one_connection() {
    let h = harness(7);
    let (mut c, g, _task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    for _ in 0..2 {
        let send = c.request(&request(false)).await;
        assert_eq!(send.accept, AcceptCode::Ok);
        c.send(&[&StartSessions.encode()]).await;
        assert_eq!(c.recv(1).await[0], 0);
        // The fake sender finishes at once: the server stops first with its record.
        let mut head = [0u8; 16];
        c.s.read_exact(&mut head).await.unwrap();
        c.cipher.open(&mut head).unwrap();
        assert_eq!(head[0], 3);
        assert_eq!(u32::from_be_bytes(head[4..8].try_into().unwrap()), 1);
        let mut rest = vec![0u8; 16 * 3];
        c.s.read_exact(&mut rest).await.unwrap();
        let stop = StopSessions {
            accept: AcceptCode::Ok,
            sessions: vec![],
        };
        c.send(&[&stop.encode()]).await;
    }
    let sent = h.launcher.sent.lock().unwrap().clone();
    let starts: Vec<usize> = sent
        .iter()
        .filter(|(_, m)| *m == ControlToTester::Start)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(starts, vec![0, 1], "each session has its own id");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever a client sends after the handshake (in open mode: no HMAC to stop it
    /// early), the connection task ends without panicking, and nothing stays held.
    #[test]
    fn arbitrary_commands_never_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        first in 0u8..6,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let h = harness_with(7, Duration::from_millis(300));
            let (mut c, g, task) = Client::start(&h).await;
            c.setup(&g, 1, None).await;
            let mut b = bytes.clone();
            if let Some(x) = b.first_mut() {
                *x = first;
            }
            let _ = c.s.write_all(&b).await;
            let _ = c.s.shutdown().await;
            // Drain whatever the server answers until it closes.
            let mut sink = Vec::new();
            let _ = c.s.read_to_end(&mut sink).await;
            task.await.unwrap();
            assert_eq!(h.ctx.policy.test_sessions(), 0);
            assert_eq!(h.ctx.ports.in_use(), 0);
        });
    }
}

/// A receiver that reports failure at Stop (invalid data, protocol.md §7.8) loses its data.
#[tokio::test]
async fn failed_receiver_data_is_deleted() {
    let h = harness(7);
    let (mut c, g, _task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    let recv = c.request(&request(true)).await;
    assert_eq!(recv.accept, AcceptCode::Ok);
    assert_eq!(h.ctx.store.len(), 1);
    c.send(&[&StartSessions.encode()]).await;
    c.recv(1).await;
    assert_eq!(c.recv(1).await[0], 3, "server's Stop-Sessions (N=0)");
    let stop = StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![SessionStop {
            sid: recv.sid,
            next_seqno: 0,
            skips: vec![],
        }],
    };
    c.send(&[&stop.encode()]).await;
    // The connection goes on; by the next answer the data is gone.
    let f = FetchSession {
        begin: 0,
        end: u32::MAX,
        sid: recv.sid,
    };
    c.send(&[&f.encode()]).await;
    let b = c.recv(1).await;
    assert_eq!(
        FetchAck::decode(&b.try_into().unwrap()).unwrap().accept,
        AcceptCode::Failure
    );
    assert!(h.ctx.store.is_empty());
    assert_eq!(h.ctx.policy.disk_used(0), 0);
}

/// A tester that fails after Accept-Session (its start-up finishes in the background)
/// makes Start-Ack non-zero: no tester is started, the connection closes, and the
/// sessions' data files, ports and disk are released.
#[tokio::test]
async fn a_tester_that_fails_to_start_fails_start_sessions() {
    let h = harness(7);
    let (mut c, g, task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    assert_eq!(c.request(&request(false)).await.accept, AcceptCode::Ok);
    h.launcher.fail_start.store(true, Ordering::SeqCst);
    let recv = c.request(&request(true)).await;
    assert_eq!(recv.accept, AcceptCode::Ok, "the failure is not known yet");
    assert_eq!(h.ctx.store.len(), 1);
    c.send(&[&StartSessions.encode()]).await;
    let ack = c.recv(1).await;
    assert_eq!(ack[0], AcceptCode::InternalError.as_u8(), "Start-Ack");
    assert!(c.closed().await);
    task.await.unwrap();
    let sent = h.launcher.sent.lock().unwrap().clone();
    assert!(
        !sent
            .iter()
            .any(|(_, m)| matches!(m, ControlToTester::Start)),
        "no tester may start when one failed: {sent:?}"
    );
    assert!(h.ctx.store.is_empty());
    assert_eq!(h.ctx.ports.in_use(), 0);
    assert_eq!(h.ctx.policy.disk_used(0), 0);
    h.assert_logged(&["cannot start: owampd-tester: sandbox refused"]);
}

#[tokio::test]
async fn test_address_problems() {
    let h = harness(7);
    let (mut c, g, _task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    // Not a local address: the bind fails, Accept=2 (not a close, protocol.md §9).
    let mut r = request(true);
    r.receiver_addr = "203.0.113.7".parse().unwrap();
    assert_eq!(c.request(&r).await.accept, AcceptCode::InternalError);
    // Link-local IPv6 test addresses: Accept=3.
    let mut r = request(true);
    r.sender_addr = "fe80::1".parse().unwrap();
    r.receiver_addr = "fe80::2".parse().unwrap();
    assert_eq!(c.request(&r).await.accept, AcceptCode::NotSupported);
    // Still usable.
    assert_eq!(c.request(&request(true)).await.accept, AcceptCode::Ok);
    assert_eq!(h.ctx.ports.in_use(), 1);
}

/// Start-Sessions with no session: accepted, and the server stops at once (protocol.md §2.3).
#[tokio::test]
async fn start_with_no_sessions() {
    let h = harness(7);
    let (mut c, g, _task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    c.send(&[&StartSessions.encode()]).await;
    assert_eq!(c.recv(1).await[0], 0, "Start-Ack");
    let b = c.recv(1).await;
    assert_eq!((b[0], b[1]), (3, 0), "server's Stop-Sessions, Accept 0");
    assert_eq!(u32::from_be_bytes(b[4..8].try_into().unwrap()), 0);
    let stop = StopSessions {
        accept: AcceptCode::Ok,
        sessions: vec![],
    };
    c.send(&[&stop.encode()]).await;
    // A second Start-Sessions is a new (empty) test period, not a protocol error.
    c.send(&[&StartSessions.encode()]).await;
    assert_eq!(c.recv(1).await[0], 0);
}

/// A second Start-Sessions during a test period closes (protocol.md §9).
#[tokio::test]
async fn start_during_a_test_period_closes() {
    let h = harness(7);
    let (mut c, g, task) = Client::start(&h).await;
    c.setup(&g, 1, None).await;
    let recv = c.request(&request(true)).await;
    assert_eq!(recv.accept, AcceptCode::Ok);
    c.send(&[&StartSessions.encode()]).await;
    assert_eq!(c.recv(1).await[0], 0);
    // The fake receiver reported ReceiveDone, so the server sends its Stop first;
    // answer with another Start-Sessions instead of Stop-Sessions.
    assert_eq!(c.recv(1).await[0], 3);
    c.send(&[&StartSessions.encode()]).await;
    assert!(c.closed().await);
    task.await.unwrap();
}

/// A client sent the server's Stop-Sessions (its sessions were over) and not answering
/// it when the daemon's stop begins: it is cut off at the exchange deadline, and what
/// the receiver got is kept, finalised as incomplete. An idle connection closes at once.
#[tokio::test]
async fn a_stop_cuts_off_a_client_that_does_not_answer() {
    use crate::shutdown::{Deadlines, ShutdownTrigger};
    let h = harness_with(7, Duration::from_secs(3600));
    let (trigger, shutdown) = ShutdownTrigger::new();
    let (a, b) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(serve_connection_until(
        b,
        PEER.parse().unwrap(),
        h.ctx.clone(),
        shutdown.clone(),
    ));
    let mut c = Client {
        s: a,
        cipher: ControlCipher::open_mode(),
    };
    let mut g = [0u8; 64];
    c.s.read_exact(&mut g).await.unwrap();
    c.setup(&ServerGreeting::decode(&g).unwrap(), 1, None).await;
    let recv = c.request(&request(true)).await;
    assert_eq!(recv.accept, AcceptCode::Ok);
    c.send(&[&StartSessions.encode()]).await;
    assert_eq!(c.recv(1).await[0], 0, "Start-Ack accept");
    // The server's Stop-Sessions (no sender of its own: header and HMAC block).
    let mut stop = [0u8; 32];
    c.s.read_exact(&mut stop).await.unwrap();
    assert_eq!(stop[0], 3, "Stop-Sessions");
    // An idle connection beside it.
    let (a2, b2) = tokio::io::duplex(1 << 16);
    let idle = tokio::spawn(serve_connection_until(
        b2,
        PEER.parse().unwrap(),
        h.ctx.clone(),
        shutdown,
    ));
    let mut c2 = Client {
        s: a2,
        cipher: ControlCipher::open_mode(),
    };
    c2.s.read_exact(&mut g).await.unwrap();
    c2.setup(&ServerGreeting::decode(&g).unwrap(), 1, None)
        .await;
    let now = tokio::time::Instant::now();
    trigger.begin(Deadlines::from_dieby(now, Duration::from_millis(400)));
    // Bounded, so that a connection the stop fails to end fails the test.
    const WITHIN: Duration = Duration::from_secs(10);
    assert!(
        tokio::time::timeout(WITHIN, c2.closed()).await.unwrap(),
        "the idle connection is closed"
    );
    tokio::time::timeout(WITHIN, idle).await.unwrap().unwrap();
    assert!(
        tokio::time::timeout(WITHIN, c.closed()).await.unwrap(),
        "the silent client is cut off"
    );
    tokio::time::timeout(WITHIN, task).await.unwrap().unwrap();
    let sent = h.launcher.sent.lock().unwrap().clone();
    let stop = sent.iter().find_map(|(i, m)| match m {
        ControlToTester::Stop(s) if *i == 0 => Some(*s),
        _ => None,
    });
    let stop = stop.unwrap_or_else(|| panic!("receiver never stopped: {sent:?}"));
    assert_eq!(stop.peer, None, "stopped without the client's record");
    assert!(sent.contains(&(0, ControlToTester::Finalize)), "{sent:?}");
    assert!(!h.ctx.store.is_empty(), "the receive data is kept");
    h.assert_logged(&["finished=2"]);
}
