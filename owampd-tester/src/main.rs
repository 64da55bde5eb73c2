//! `owampd-tester`: one OWAMP test session, a sender or a receiver (docs/processes.md).
//! Started by the spawner on behalf of `owampd-control` with fd 3 (the channel to
//! control), fd 4 (the bound UDP test socket) and, for a receiver, fd 5 (the session's
//! data file). It enters its sandbox before it reads its first message, and never opens
//! anything itself. The messages are `tester_ipc`'s.
//!
//! Process name (PR_SET_NAME allows 15 bytes): `owtest-XXXXXXXX`, the last 4 bytes of
//! the SID in hex (the random part of the SID, RFC 4656 §3.5), so a line in `ps` can be
//! matched with the `sid=` of the log lines.
#![forbid(unsafe_code)]

use ipc::Channel;
use ipc::fds::{DATA_FILE_FD, IPC_FD, TEST_SOCKET_FD};
use owamp::engine::{
    DropCounts, Endpoint, EndpointSetup, ReceiverParams, RecordSink, SenderParams, SessionControl,
    run_receiver, run_sender,
};
use owamp::owp::{FinalizeOutcome, ReceiveWriter, SessionHeader};
use owamp::packet::TestKeys;
use owamp::{Num64, PacketRecord};
use std::fs::File;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::ExitCode;
use tester_ipc::{
    ControlToTester, DropCount, Gather, LogLevel, LogLine, MAX_SKIPS_PER_MESSAGE, Outcome,
    PROTOCOL_VERSION, Report, Role, Setup, Stop, TesterToControl, chunks,
};

/// The tester's view of its channel: log lines and reports to control.
struct Ipc {
    chan: Channel,
}

/// What control said to end the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Stop(Stop),
    Abort,
}

/// Control went away: the same as a Stop without the peer's record (finalise as
/// incomplete, RFC 4656 §3.8 leaves the data to the server).
const CONTROL_GONE: Ending = Ending::Stop(Stop {
    stop_time: Num64::ZERO,
    peer: None,
});

impl Ipc {
    fn send(&self, m: &TesterToControl) {
        // If control is gone there is nobody to tell; the session ends on its own.
        let _ = self.chan.send(m, &[]);
    }

    fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.send(&TesterToControl::Log(LogLine {
            level,
            message: message.into(),
        }));
    }

    fn failed(&self, reason: impl Into<String>) -> ExitCode {
        let reason = reason.into();
        self.send(&TesterToControl::Finished(Report {
            outcome: Outcome::Failed { reason },
            drops: vec![],
        }));
        ExitCode::FAILURE
    }

    /// Next message, blocking; `None` when control is gone.
    fn next(&self) -> Result<Option<ControlToTester>, String> {
        match self.chan.recv::<ControlToTester>() {
            Ok(r) => Ok(Some(r.msg)),
            Err(ipc::IpcError::Closed) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits for the end of the session (after a receiver's time is over, or before
    /// Start-Sessions); other messages now are a protocol error that aborts it.
    fn wait_ending(&self) -> Result<Ending, String> {
        Ok(match self.next()? {
            None => CONTROL_GONE,
            Some(ControlToTester::Stop(s)) => Ending::Stop(s),
            Some(ControlToTester::Abort) => Ending::Abort,
            Some(other) => {
                self.log(LogLevel::Warning, format!("{other:?} before Stop: aborted"));
                Ending::Abort
            }
        })
    }
}

/// Reads the channel without blocking whenever the engine asks, remembering what ended
/// the session. The engine waits on the channel itself (fd 3): readable means a message
/// (or control hung up), so an idle session does not poll.
struct IpcControl<'a> {
    ipc: &'a Ipc,
    ending: Option<Ending>,
}

impl SessionControl for IpcControl<'_> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.ipc.chan.as_fd())
    }

    fn poll_stop(&mut self) -> bool {
        if self.ending.is_some() {
            return true;
        }
        self.ending = match self.ipc.chan.try_recv::<ControlToTester>() {
            Ok(None) => return false,
            Ok(Some(r)) => Some(match r.msg {
                ControlToTester::Stop(s) => Ending::Stop(s),
                ControlToTester::Abort => Ending::Abort,
                // Anything else now is a protocol error from control: give up the
                // session as if aborted, and say why (control hears of it before the
                // channel closes).
                other => {
                    self.ipc.log(
                        LogLevel::Warning,
                        format!("unexpected {other:?} during the session: aborted"),
                    );
                    Ending::Abort
                }
            }),
            Err(ipc::IpcError::Closed) => Some(CONTROL_GONE),
            Err(e) => {
                self.ipc.log(
                    LogLevel::Warning,
                    format!("reading control's messages: {e}: aborted"),
                );
                Some(Ending::Abort)
            }
        };
        true
    }
}

/// The engine's record sink over the `.owp` receive writer, with a record bound below
/// the data file's size limit (control's `receive_file_bound`: four records per packet,
/// a skip range per packet and 64 KiB).
///
/// The engine writes at most `2 × num_packets + 1024` records (it only counts duplicates
/// past its own bound), so a session never reaches this one; it is the backstop that
/// keeps the file under its limit whatever happens: past it records are counted, not
/// written, and the session keeps what it measured instead of failing with EFBIG (after
/// which control would delete the whole file).
struct WriterSink<'a> {
    writer: &'a mut ReceiveWriter,
    max: u64,
    refused: u64,
}

impl<'a> WriterSink<'a> {
    fn new(writer: &'a mut ReceiveWriter, num_packets: u32) -> Self {
        WriterSink {
            writer,
            max: max_records(num_packets),
            refused: 0,
        }
    }
}

/// The most records a receiver writes to its data file.
fn max_records(num_packets: u32) -> u64 {
    u64::from(num_packets)
        .saturating_mul(4)
        .saturating_add(1024)
}

impl RecordSink for WriterSink<'_> {
    fn record(&mut self, r: &PacketRecord) -> io::Result<()> {
        if self.writer.records_written() >= self.max {
            self.refused += 1;
            return Ok(());
        }
        self.writer.record(r).map_err(io::Error::other)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().map_err(io::Error::other)
    }
}

fn main() -> ExitCode {
    // Only the master acts on a stop signal (ipc::stop); control tells us how to end.
    if let Err(e) = ipc::stop::hold_stop_signals() {
        eprintln!("owampd-tester: blocking the stop signals: {e}");
        return ExitCode::FAILURE;
    }
    let chan = match ipc::fds::take_inherited(IPC_FD) {
        Ok(fd) => Channel::from_owned(fd),
        Err(_) => {
            eprintln!(
                "{}",
                ipc::fds::started_by_hand_line("owampd-tester", "owampd-control", IPC_FD)
            );
            return ExitCode::FAILURE;
        }
    };
    let socket = match ipc::fds::take_inherited(TEST_SOCKET_FD) {
        Ok(fd) => UdpSocket::from(fd),
        Err(_) => {
            eprintln!(
                "{}",
                ipc::fds::started_by_hand_line("owampd-tester", "owampd-control", TEST_SOCKET_FD)
            );
            return ExitCode::FAILURE;
        }
    };
    // Only a receiver gets a data file.
    let file = ipc::fds::take_inherited(DATA_FILE_FD).ok().map(File::from);

    // Sandbox first, before the first message is read. Control passes the debug switch
    // and the file size allowance in the environment for that reason.
    let seccomp = if std::env::var_os("OWAMPD_SECCOMP_LOG").is_some_and(|v| v == "1") {
        sandbox::SeccompMode::Log
    } else {
        sandbox::SeccompMode::Enforce
    };
    // The data file may not outgrow the session's allowance (control computes it from
    // the request); a sender has no file and may write none.
    let max_file_size = std::env::var("OWAMPD_TESTER_MAX_FILE_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let opts = sandbox::SandboxOptions {
        keep_fds: DATA_FILE_FD,
        seccomp,
        max_file_size: Some(max_file_size),
        ..sandbox::SandboxOptions::default()
    };
    let ipc = Ipc { chan };
    if let Err(e) = sandbox::enter(sandbox::Role::Tester, &opts) {
        ipc.log(LogLevel::Fatal, format!("sandbox: {e}"));
        return ipc.failed(format!("sandbox: {e}"));
    }
    ipc.send(&TesterToControl::Hello {
        version: PROTOCOL_VERSION,
    });
    match ipc.next() {
        Ok(Some(ControlToTester::Hello { version })) if version == PROTOCOL_VERSION => {}
        other => {
            return ipc.failed(format!(
                "expected Hello version {PROTOCOL_VERSION}, got {other:?}"
            ));
        }
    }
    let setup = match read_setup(&ipc) {
        Ok(s) => s,
        Err(why) => return ipc.failed(why),
    };
    match run(&ipc, setup, socket, file) {
        Ok(code) => code,
        Err(why) => ipc.failed(why),
    }
}

/// `Setup`, then the rest of its slots.
fn read_setup(ipc: &Ipc) -> Result<Setup, String> {
    let mut setup = match ipc.next()? {
        Some(ControlToTester::Setup(s)) => *s,
        other => return Err(format!("expected Setup, got {other:?}")),
    };
    let first = std::mem::take(&mut setup.request.slots);
    let mut slots = Gather::new(setup.num_slots as usize, first).map_err(|e| e.to_string())?;
    while !slots.is_complete() {
        match ipc.next()? {
            Some(ControlToTester::Slots(more)) => slots.push(more).map_err(|e| e.to_string())?,
            other => return Err(format!("expected Slots, got {other:?}")),
        }
    }
    setup.request.slots = slots.into_inner();
    Ok(setup)
}

fn run(ipc: &Ipc, setup: Setup, socket: UdpSocket, file: Option<File>) -> Result<ExitCode, String> {
    let req = &setup.request;
    let sid = req.sid;
    let hex = sid.to_hex();
    let _ = sandbox::set_process_name(&format!("owtest-{}", hex.get(24..).unwrap_or("")));

    let keys = match (&setup.keys, setup.mode.is_secure()) {
        (Some(k), true) => Some(TestKeys::derive(sid, &k.aes, &k.hmac)),
        (None, false) => None,
        _ => return Err("session keys do not match the mode".into()),
    };
    let endpoint = EndpointSetup {
        mode: setup.mode,
        keys: keys.as_ref(),
        padding: req.padding,
        sid,
        start: req.start_time,
        slots: &req.slots,
        num_packets: req.num_packets,
        dscp: req.dscp(),
        clock_status: Some(kernel_status),
        debug_offset: setup.debug_time_offset,
    };
    // Sleeps may end a little late so that the kernel can serve many sessions' timers
    // with one interrupt (the engine's `timer_slack` says how much and why).
    let slack = owamp::engine::timer_slack(endpoint.packets_per_second());
    let Endpoint {
        socket: mut sock,
        format: mut fmt,
        schedule: mut sched,
        clock,
    } = endpoint
        .open(socket, setup.peer)
        .map_err(|e| e.to_string())?;
    if let Err(e) = sandbox::set_timer_slack(slack) {
        ipc.log(LogLevel::Debug, format!("timer slack: {e}"));
    }
    if sock.discarded_before_connect() > 0 {
        ipc.log(
            LogLevel::Info,
            format!(
                "{} datagrams from other sources, queued before the test socket was \
                 connected to the peer, discarded",
                sock.discarded_before_connect()
            ),
        );
    }
    if let Some(why) = sock.unconnected_reason() {
        // Datagrams from anyone then reach the socket; the receiver still drops those
        // that are not from the peer, after they took their share of its buffer.
        ipc.log(
            LogLevel::Info,
            format!("test socket not connected to the peer: {why}"),
        );
    }
    ipc.send(&TesterToControl::Ready);

    // Wait for Start-Sessions (or the end of the session before it started).
    match ipc.next()? {
        Some(ControlToTester::Start) => {}
        None | Some(ControlToTester::Stop(_) | ControlToTester::Abort) => {
            return Ok(ExitCode::SUCCESS);
        }
        Some(other) => return Err(format!("expected Start, got {other:?}")),
    }
    // The header is written at Start-Sessions: a session that never starts leaves an
    // empty file, which the data store removes at its next scan.
    let writer = match setup.role {
        Role::Receiver => {
            let file = file.ok_or("receiver without a data file (fd 5)")?;
            let header = SessionHeader::parse(&req.encode_stored()).map_err(|e| e.to_string())?;
            Some(
                ReceiveWriter::create(file, format!("sid {hex}"), &header)
                    .map_err(|e| e.to_string())?,
            )
        }
        Role::Sender => None,
    };
    let mut ctl = IpcControl { ipc, ending: None };
    let Some(mut writer) = writer else {
        let params = SenderParams {
            num_packets: req.num_packets,
            timeout: req.timeout,
            end_delay: setup.end_delay.min(std::time::Duration::from_secs(3600)),
        };
        let rep = run_sender(&mut sock, &clock, &mut fmt, &mut sched, params, &mut ctl)
            .map_err(|e| format!("sender: {e}"))?;
        if rep.send_errors > 0 {
            ipc.log(LogLevel::Info, format!("{} send errors", rep.send_errors));
        }
        if ctl.ending == Some(Ending::Abort) {
            return Ok(ExitCode::SUCCESS);
        }
        for chunk in chunks(&rep.skips, MAX_SKIPS_PER_MESSAGE) {
            ipc.send(&TesterToControl::SenderSkips(chunk));
        }
        ipc.send(&TesterToControl::Finished(Report {
            outcome: Outcome::Sender {
                next_seqno: rep.next_seqno,
                num_skips: u32::try_from(rep.skips.len()).unwrap_or(u32::MAX),
            },
            drops: vec![],
        }));
        return Ok(ExitCode::SUCCESS);
    };

    let params = ReceiverParams {
        num_packets: req.num_packets,
        timeout: req.timeout,
        expected_src: setup.peer,
    };
    let (rep, refused) = {
        let mut sink = WriterSink::new(&mut writer, req.num_packets);
        let rep = run_receiver(
            &mut sock, &clock, &fmt, &mut sched, params, &mut sink, &mut ctl,
        )
        .map_err(|e| format!("receiver: {e}"))?;
        (rep, sink.refused)
    };
    // What a replay (or a spoofed flood) cost: said once, at the end. The records kept
    // are the measurement; RFC 4656 has no field to tell the client more.
    if rep.duplicates_unrecorded > 0 {
        ipc.log(
            LogLevel::Warning,
            format!(
                "{} duplicates received, {} of them counted but not recorded (over the \
                 bound of {} duplicate records: replayed or spoofed packets?)",
                rep.duplicates,
                rep.duplicates_unrecorded,
                owamp::engine::max_duplicate_records(req.num_packets)
            ),
        );
    }
    if refused > 0 {
        ipc.log(
            LogLevel::Warning,
            format!(
                "{refused} records not written: the data file holds at most {} records",
                max_records(req.num_packets)
            ),
        );
    }
    let ending = match ctl.ending.take() {
        Some(e) => e,
        None => {
            // Our time is over: control sends its Stop-Sessions first, then tells us how
            // to finalise (RFC 4656 §3.8).
            ipc.send(&TesterToControl::ReceiveDone);
            ipc.wait_ending()?
        }
    };
    let stop = match ending {
        Ending::Abort => {
            let _ = writer.finalize_error();
            return Ok(ExitCode::SUCCESS);
        }
        Ending::Stop(s) => s,
    };
    let stoptime = if stop.stop_time == Num64::ZERO {
        clock.now().0
    } else {
        stop.stop_time
    };
    let Some(outcome) = finish_receive(ipc, &stop, writer, stoptime, req.num_packets)? else {
        return Ok(ExitCode::SUCCESS);
    };
    ipc.send(&TesterToControl::Finished(Report {
        outcome: Outcome::Receiver {
            finished: outcome.finished,
            records: outcome.num_records,
            lost: rep.lost,
        },
        drops: drop_counts(&rep.drops),
    }));
    Ok(ExitCode::SUCCESS)
}

/// After a receiver's `Stop`: finalise its data file (RFC 4656 §3.8). With the peer's
/// record, the Stop-Sessions rule is applied at once and the peer's skip ranges go to
/// the file as they arrive in `Skips` (a Stop-Sessions may announce up to 2^32−1 of
/// them: none is held here), then `Finalize` completes it. Without one, or if control
/// goes away first, the data is kept as incomplete. `Ok(None)`: aborted (the file is
/// marked failed, nothing to report).
///
/// At most `num_packets` ranges are written: ranges that do not overlap and lie below
/// Next Seqno ≤ Number of Packets cannot be more, and the data file's size limit
/// allows one per packet. The rest are read and dropped.
fn finish_receive(
    ipc: &Ipc,
    stop: &Stop,
    writer: ReceiveWriter,
    stoptime: Num64,
    num_packets: u32,
) -> Result<Option<FinalizeOutcome>, String> {
    let finalising = |e: owamp::owp::OwpError| format!("finalising: {e}");
    let Some(rec) = stop.peer else {
        return match ipc.next()? {
            None | Some(ControlToTester::Finalize) => writer
                .finalize_incomplete(stoptime)
                .map(Some)
                .map_err(finalising),
            _ => {
                let _ = writer.finalize_error();
                Ok(None)
            }
        };
    };
    // A session the rule makes invalid is marked failed already; the peer's ranges are
    // still read, and the failure reported once control says Finalize.
    let mut fin = writer.begin_stop(stoptime, rec.next_seqno);
    let announced = u64::from(rec.num_skips);
    let (mut received, mut dropped) = (0u64, 0u64);
    loop {
        match ipc.next()? {
            Some(ControlToTester::Skips(more)) => {
                received += more.len() as u64;
                if received > announced {
                    return Err(format!("more skip ranges than the {announced} announced"));
                }
                if let Ok(f) = &mut fin {
                    let room = (num_packets.saturating_sub(f.num_skips())) as usize;
                    let keep = more.len().min(room);
                    dropped += (more.len() - keep) as u64;
                    if let Err(e) = f.skips(more.get(..keep).unwrap_or(&[])) {
                        return Err(finalising(e));
                    }
                }
            }
            Some(ControlToTester::Finalize) if received == announced => {
                if dropped > 0 {
                    ipc.log(
                        LogLevel::Warning,
                        format!(
                            "the peer's Stop-Sessions has {announced} skip ranges for \
                             {num_packets} packets: {dropped} not kept"
                        ),
                    );
                }
                return fin.and_then(|f| f.finish()).map(Some).map_err(finalising);
            }
            None => {
                return fin
                    .and_then(|f| f.incomplete(stoptime))
                    .map(Some)
                    .map_err(finalising);
            }
            Some(ControlToTester::Abort) => {
                if let Ok(f) = fin {
                    let _ = f.error();
                }
                return Ok(None);
            }
            Some(other) => {
                return Err(format!("expected Skips or Finalize, got {other:?}"));
            }
        }
    }
}

/// The drop counters worth reporting (the non-zero ones), by reason.
fn drop_counts(d: &DropCounts) -> Vec<DropCount> {
    [
        ("wrong source", d.wrong_source),
        ("short", d.short),
        ("bad HMAC", d.bad_hmac),
        ("seq out of range", d.seq_out_of_range),
        ("invalid send error estimate", d.invalid_send_err),
        ("send/receive gap over Timeout", d.send_recv_gap),
        ("off schedule by more than Timeout", d.schedule_gap),
        ("already declared lost", d.already_lost),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(reason, count)| DropCount {
        reason: reason.into(),
        count,
    })
    .collect()
}

/// The kernel's clock status for the Error Estimate (adjtimex lives in `sandbox`).
fn kernel_status() -> Option<owamp::time::KernelClockStatus> {
    sandbox::kernel_clock().map(|k| owamp::time::KernelClockStatus {
        synchronized: k.synchronized,
        esterror_us: k.esterror_us,
        offset_ns: k.offset_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tester_ipc::PeerRecord;

    fn pair() -> (Ipc, Channel) {
        let (a, b) = Channel::pair().unwrap();
        (Ipc { chan: a }, b)
    }

    /// A receive session of `num_packets` packets from 127.0.0.1.
    fn session_request(num_packets: u32) -> owamp::wire::RequestSession {
        owamp::wire::RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets,
            sender_port: 9,
            receiver_port: 10,
            sender_addr: "127.0.0.1".parse().unwrap(),
            receiver_addr: "127.0.0.1".parse().unwrap(),
            sid: owamp::Sid([1; 16]),
            padding: 0,
            start_time: Num64(1 << 40),
            timeout: Num64(1 << 32),
            type_p: 0,
            slots: vec![owamp::Slot {
                kind: owamp::SlotKind::Fixed,
                param: Num64(1 << 30),
            }],
        }
    }

    fn record(seq: u32) -> PacketRecord {
        PacketRecord {
            seq,
            send_err: owamp::ErrorEstimate::UNSYNC,
            recv_err: owamp::ErrorEstimate::UNSYNC,
            send_ts: Num64(1 << 40),
            recv_ts: Num64(1 << 40),
            ttl: 255,
        }
    }

    /// Past its bound the sink counts records instead of writing them, so the file stays
    /// under control's size limit and the session keeps what it measured.
    #[test]
    fn the_record_bound_keeps_the_file_and_counts_the_rest() {
        let (_dir, _path, mut w) = receive_writer(2);
        let r = record(1);
        let mut sink = WriterSink::new(&mut w, 2);
        for _ in 0..max_records(2) + 7 {
            sink.record(&r).unwrap();
        }
        sink.flush().unwrap();
        assert_eq!(sink.refused, 8);
        assert_eq!(w.records_written(), max_records(2));
    }

    #[test]
    fn poll_stop_is_false_until_stop_then_stays_true() {
        let (ipc, control) = pair();
        let mut ctl = IpcControl {
            ipc: &ipc,
            ending: None,
        };
        assert!(!ctl.poll_stop());
        let stop = Stop {
            stop_time: Num64(7),
            peer: Some(PeerRecord {
                next_seqno: 3,
                num_skips: 0,
            }),
        };
        control.send(&ControlToTester::Stop(stop), &[]).unwrap();
        assert!(ctl.poll_stop());
        assert!(ctl.poll_stop());
        assert_eq!(ctl.ending, Some(Ending::Stop(stop)));
    }

    #[test]
    fn control_gone_means_stop_without_information() {
        let (ipc, control) = pair();
        drop(control);
        let mut ctl = IpcControl {
            ipc: &ipc,
            ending: None,
        };
        assert!(ctl.poll_stop());
        assert_eq!(ctl.ending, Some(CONTROL_GONE));
        // And a blocking read says the same.
        assert_eq!(ipc.wait_ending(), Ok(CONTROL_GONE));
    }

    #[test]
    fn anything_but_stop_while_running_aborts() {
        let (ipc, control) = pair();
        control.send(&ControlToTester::Start, &[]).unwrap();
        let mut ctl = IpcControl {
            ipc: &ipc,
            ending: None,
        };
        assert!(ctl.poll_stop());
        assert_eq!(ctl.ending, Some(Ending::Abort));
        // Control hears why before the channel closes.
        match control.recv::<TesterToControl>().unwrap().msg {
            TesterToControl::Log(l) => {
                assert_eq!(l.level, LogLevel::Warning);
                assert!(l.message.contains("Start"), "{}", l.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failure_is_reported_to_control() {
        let (ipc, control) = pair();
        let code = ipc.failed("no");
        assert_eq!(code, ExitCode::FAILURE);
        let got = control.recv::<TesterToControl>().unwrap().msg;
        assert_eq!(
            got,
            TesterToControl::Finished(Report {
                outcome: Outcome::Failed {
                    reason: "no".into()
                },
                drops: vec![],
            })
        );
    }

    /// A receive session's data file (`npackets` packets), with one record written.
    fn receive_writer(npackets: u32) -> (tempfile::TempDir, std::path::PathBuf, ReceiveWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.owp");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let header = SessionHeader::parse(&session_request(npackets).encode_stored()).unwrap();
        let mut w = ReceiveWriter::create(file, "test", &header).unwrap();
        w.record(&record(0)).unwrap();
        (dir, path, w)
    }

    fn skips(n: u32) -> Vec<owamp::SkipRange> {
        (0..n)
            .map(|i| owamp::SkipRange {
                first: 1 + 2 * i,
                last: 1 + 2 * i,
            })
            .collect()
    }

    fn stop_with(next_seqno: u32, num_skips: u32) -> Stop {
        Stop {
            stop_time: Num64(1 << 50),
            peer: Some(PeerRecord {
                next_seqno,
                num_skips,
            }),
        }
    }

    /// The peer's skip ranges go to the data file as they arrive, before Finalize: the
    /// tester holds none of them (a Stop-Sessions may announce 2^32−1). Then Finalize
    /// completes the file with all of them.
    #[test]
    fn skip_ranges_are_written_to_the_file_as_they_arrive() {
        let n = 3 * MAX_SKIPS_PER_MESSAGE as u32;
        let (_dir, path, w) = receive_writer(2 * n + 2);
        let (ipc, control) = pair();
        let stop = stop_with(2 * n + 2, n);
        let all = skips(n);
        let worker =
            std::thread::spawn(move || finish_receive(&ipc, &stop, w, stop.stop_time, 2 * n + 2));
        for c in chunks(&all, MAX_SKIPS_PER_MESSAGE) {
            control.send(&ControlToTester::Skips(c), &[]).unwrap();
        }
        // Every range is in the file while the tester still waits for Finalize.
        let header_and_record = {
            let f = owamp::owp::OwpFile::open(&path).unwrap();
            f.header().oset_data + 25
        };
        let want = header_and_record + 8 * u64::from(n);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::fs::metadata(&path).unwrap().len() < want {
            assert!(
                std::time::Instant::now() < deadline,
                "the ranges did not reach the file before Finalize ({} of {want} octets)",
                std::fs::metadata(&path).unwrap().len()
            );
            std::thread::yield_now();
        }
        assert!(!worker.is_finished(), "it finished without Finalize");
        control.send(&ControlToTester::Finalize, &[]).unwrap();
        let out = worker.join().unwrap().unwrap().unwrap();
        assert_eq!((out.finished, out.num_records, out.num_skips), (1, 1, n));
        let mut f = owamp::owp::OwpFile::open(&path).unwrap();
        assert_eq!(f.skips().unwrap(), all);
    }

    /// No more ranges are written than the session has packets (all that can be
    /// meaningful, and what the file's size limit allows); the rest are read and dropped,
    /// and the session still finishes normally.
    #[test]
    fn skip_ranges_beyond_the_packet_count_are_dropped() {
        let (_dir, path, w) = receive_writer(10);
        let (ipc, control) = pair();
        let stop = stop_with(10, 25);
        control
            .send(&ControlToTester::Skips(skips(25)), &[])
            .unwrap();
        control.send(&ControlToTester::Finalize, &[]).unwrap();
        let out = finish_receive(&ipc, &stop, w, stop.stop_time, 10)
            .unwrap()
            .unwrap();
        assert_eq!((out.finished, out.num_skips), (1, 10));
        let mut f = owamp::owp::OwpFile::open(&path).unwrap();
        assert_eq!(f.skips().unwrap(), skips(10));
        match control.recv::<TesterToControl>().unwrap().msg {
            TesterToControl::Log(l) => assert!(l.message.contains("15 not kept"), "{}", l.message),
            other => panic!("{other:?}"),
        }
    }

    /// More ranges than announced are refused; an Abort marks the file failed; control
    /// gone mid-way keeps the records as incomplete, without the partial ranges.
    #[test]
    fn a_stop_that_does_not_end_with_finalize() {
        let (_dir, _path, w) = receive_writer(10);
        let (ipc, control) = pair();
        let stop = stop_with(10, 1);
        control
            .send(&ControlToTester::Skips(skips(2)), &[])
            .unwrap();
        assert!(finish_receive(&ipc, &stop, w, stop.stop_time, 10).is_err());

        let (_dir, path, w) = receive_writer(10);
        control.send(&ControlToTester::Abort, &[]).unwrap();
        assert_eq!(finish_receive(&ipc, &stop, w, stop.stop_time, 10), Ok(None));
        let f = owamp::owp::OwpFile::open(&path).unwrap();
        assert_eq!(f.header().finished, 0);

        let (_dir, path, w) = receive_writer(10);
        let stop = stop_with(10, 5);
        control
            .send(&ControlToTester::Skips(skips(3)), &[])
            .unwrap();
        drop(control);
        let out = finish_receive(&ipc, &stop, w, stop.stop_time, 10)
            .unwrap()
            .unwrap();
        assert_eq!((out.finished, out.num_records, out.num_skips), (2, 1, 0));
        let mut f = owamp::owp::OwpFile::open(&path).unwrap();
        assert!(f.skips().unwrap().is_empty());
        assert_eq!(f.read_records().unwrap().len(), 1);
    }
}
