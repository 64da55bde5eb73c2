//! `owampd-tester`: one OWAMP test session, a sender or a receiver (design.md
//! "Processes"). Exec'd by `owampd-control` with fd 3 (IPC), fd 4 (the bound UDP test
//! socket) and, for a receiver, fd 5 (the session's data file). It enters its sandbox
//! before it reads its first IPC message, and never opens anything itself.
//!
//! Process name (PR_SET_NAME allows 15 bytes): `owtest-XXXXXXXX`, the last 4 bytes of
//! the SID in hex (the random part of the reference's SID layout, spec §2.1.4), so a
//! line in `ps` can be matched with the `sid=` of the log lines.
#![forbid(unsafe_code)]

use ipc::Channel;
use ipc::fds::{DATA_FILE_FD, IPC_FD, TEST_SOCKET_FD};
use ipc::tester::{
    ControlToTester, DropCount, IpcSkipRange, PROTOCOL_VERSION, StopInfo, TesterLog,
    TesterLogLevel, TesterOutcome, TesterReport, TesterRole, TesterSetup, TesterToControl,
};
use owamp::engine::{
    ReceiverParams, RecordSink, SenderParams, SessionControl, UdpTestSocket, run_receiver,
    run_sender,
};
use owamp::owp::{ReceiveWriter, SessionHeader};
use owamp::packet::{PacketFormat, TestKeys};
use owamp::schedule::Schedule;
use owamp::time::Clock;
use owamp::wire::RequestSession;
use owamp::{Mode, Num64, PacketRecord, SkipRange};
use std::fs::File;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::ExitCode;
use std::time::Duration;

/// The tester's view of its channel: log lines and reports to control.
struct Ipc {
    chan: Channel,
}

impl Ipc {
    fn send(&self, m: &TesterToControl) {
        // If control is gone there is nobody to tell; the session ends on its own.
        let _ = self.chan.send(m, &[]);
    }

    fn log(&self, level: TesterLogLevel, message: impl Into<String>) {
        self.send(&TesterToControl::Log(TesterLog {
            level,
            message: message.into(),
        }));
    }

    fn failed(&self, reason: impl Into<String>) -> ExitCode {
        let reason = reason.into();
        self.send(&TesterToControl::Finished(TesterReport {
            outcome: TesterOutcome::Failed { reason },
            drops: vec![],
        }));
        ExitCode::FAILURE
    }

    /// Next message, blocking. A closed channel means control is gone: that is the
    /// same as a Stop without Stop-Sessions information (finalise as incomplete).
    fn next(&self) -> Result<ControlToTester, String> {
        match self.chan.recv::<ControlToTester>() {
            Ok(r) => Ok(r.msg),
            Err(ipc::IpcError::Closed) => Ok(ControlToTester::Stop(StopInfo::Stop {
                stop_time_ntp: 0,
                next_seqno: None,
                skips: vec![],
            })),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Reads the IPC socket without blocking whenever the engine asks, remembering the Stop
/// that ended the session. The engine waits on the socket itself (fd 3): readable means
/// a message (or control hung up), so an idle session does not poll.
struct IpcControl<'a> {
    ipc: &'a Ipc,
    stop: Option<StopInfo>,
}

impl SessionControl for IpcControl<'_> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.ipc.chan.as_fd())
    }

    fn poll_stop(&mut self) -> bool {
        if self.stop.is_some() {
            return true;
        }
        match self.ipc.chan.try_recv::<ControlToTester>() {
            Ok(None) => false,
            Ok(Some(r)) => {
                self.stop = Some(match r.msg {
                    ControlToTester::Stop(info) => info,
                    // Anything else now is a protocol error from control: give up the
                    // session as if aborted.
                    _ => StopInfo::Abort,
                });
                true
            }
            Err(ipc::IpcError::Closed) => {
                self.stop = Some(StopInfo::Stop {
                    stop_time_ntp: 0,
                    next_seqno: None,
                    skips: vec![],
                });
                true
            }
            Err(_) => {
                self.stop = Some(StopInfo::Abort);
                true
            }
        }
    }
}

/// The engine's record sink over the `.owp` receive writer.
struct WriterSink<'a>(&'a mut ReceiveWriter);

impl RecordSink for WriterSink<'_> {
    fn record(&mut self, r: &PacketRecord) -> io::Result<()> {
        self.0.record(r).map_err(io::Error::other)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(io::Error::other)
    }
}

fn main() -> ExitCode {
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

    // Sandbox first, before the first message is read (design.md "Sandbox"). Control
    // passes the debug switch in the environment for that reason.
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
        ipc.log(TesterLogLevel::Error, format!("sandbox: {e}"));
        return ipc.failed(format!("sandbox: {e}"));
    }

    match ipc.next() {
        Ok(ControlToTester::Hello { version }) if version == PROTOCOL_VERSION => {}
        other => {
            let why = format!("expected Hello version {PROTOCOL_VERSION}, got {other:?}");
            ipc.send(&TesterToControl::Hello {
                version: PROTOCOL_VERSION,
            });
            return ipc.failed(why);
        }
    }
    ipc.send(&TesterToControl::Hello {
        version: PROTOCOL_VERSION,
    });
    let setup = match ipc.next() {
        Ok(ControlToTester::Setup(s)) => *s,
        other => return ipc.failed(format!("expected Setup, got {other:?}")),
    };
    match run(&ipc, setup, socket, file) {
        Ok(code) => code,
        Err(why) => ipc.failed(why),
    }
}

fn run(
    ipc: &Ipc,
    setup: TesterSetup,
    socket: UdpSocket,
    file: Option<File>,
) -> Result<ExitCode, String> {
    let stored = RequestSession::decode_stored(&setup.request).map_err(|e| e.to_string())?;
    let slots = stored.slots.clone();
    let req = stored
        .preamble
        .into_request(&slots)
        .map_err(|e| format!("stored Request-Session: {e:?}"))?;
    let sid = req.sid;
    let hex = sid.to_hex();
    let _ = sandbox::set_process_name(&format!("owtest-{}", hex.get(24..).unwrap_or("")));

    let mode = Mode::from_bit(setup.mode).ok_or(format!("mode {:#x}", setup.mode))?;
    let keys = match (&setup.keys, mode.is_secure()) {
        (Some(k), true) => Some(TestKeys::derive(sid, &k.aes, &k.hmac)),
        (None, false) => None,
        _ => return Err("session keys do not match the mode".into()),
    };
    let mut fmt = PacketFormat::new(mode, keys.as_ref(), req.padding).map_err(|e| e.to_string())?;
    let mut sched = Schedule::new(sid, req.start_time, &req.slots, req.num_packets);
    let clock = Clock::new(Some(kernel_status), setup.debug_time_offset);
    let opts = owamp::engine::SocketOptions {
        dscp: req.dscp(),
        packet_len: fmt.len(),
        packets_per_second: owamp::schedule::packets_per_second(&req.slots),
    };
    let mut sock = UdpTestSocket::new(socket, setup.peer, opts).map_err(|e| e.to_string())?;
    ipc.send(&TesterToControl::Ready);

    // Wait for Start-Sessions (or the end of the session before it started).
    match ipc.next()? {
        ControlToTester::Start => {}
        ControlToTester::Stop(_) => return Ok(ExitCode::SUCCESS),
        other => return Err(format!("expected Start, got {other:?}")),
    }
    let mut ctl = IpcControl { ipc, stop: None };
    match setup.role {
        TesterRole::Sender => {
            let params = SenderParams {
                num_packets: req.num_packets,
                timeout: req.timeout,
                // try_: a NaN from a compromised control must not abort us.
                end_delay: Duration::try_from_secs_f64(setup.end_delay_s.clamp(0.0, 3600.0))
                    .unwrap_or(Duration::ZERO),
            };
            let rep = run_sender(&mut sock, &clock, &mut fmt, &mut sched, params, &mut ctl)
                .map_err(|e| format!("sender: {e}"))?;
            if rep.send_errors > 0 {
                ipc.log(
                    TesterLogLevel::Info,
                    format!("{} send errors", rep.send_errors),
                );
            }
            ipc.send(&TesterToControl::Finished(TesterReport {
                outcome: TesterOutcome::Sender {
                    next_seqno: rep.next_seqno,
                    skips: rep
                        .skips
                        .iter()
                        .map(|s| IpcSkipRange {
                            first: s.first,
                            last: s.last,
                        })
                        .collect(),
                },
                drops: vec![],
            }));
            Ok(ExitCode::SUCCESS)
        }
        TesterRole::Receiver => {
            let file = file.ok_or("receiver without a data file (fd 5)")?;
            let header = SessionHeader::parse(&setup.request).map_err(|e| e.to_string())?;
            let mut writer = ReceiveWriter::create(file, format!("sid {hex}"), &header)
                .map_err(|e| e.to_string())?;
            let params = ReceiverParams {
                num_packets: req.num_packets,
                timeout: req.timeout,
                expected_src: setup.peer,
            };
            let rep = {
                let mut sink = WriterSink(&mut writer);
                run_receiver(
                    &mut sock, &clock, &fmt, &mut sched, params, &mut sink, &mut ctl,
                )
                .map_err(|e| format!("receiver: {e}"))?
            };
            let stop = match ctl.stop.take() {
                Some(s) => s,
                None => {
                    // Our time is over: control sends its Stop-Sessions first, then
                    // tells us how to finalise (spec §2.5).
                    ipc.send(&TesterToControl::ReceiveDone);
                    loop {
                        match ipc.next()? {
                            ControlToTester::Stop(s) => break s,
                            other => {
                                ipc.log(
                                    TesterLogLevel::Warning,
                                    format!("ignored while waiting for Stop: {other:?}"),
                                );
                            }
                        }
                    }
                }
            };
            let stoptime = |t: u64| {
                if t == 0 { clock.now().0 } else { Num64(t) }
            };
            let outcome = match stop {
                StopInfo::Abort => {
                    let _ = writer.finalize_error();
                    return Ok(ExitCode::SUCCESS);
                }
                StopInfo::Stop {
                    stop_time_ntp,
                    next_seqno: Some(next),
                    skips,
                } => {
                    let skips: Vec<SkipRange> = skips
                        .iter()
                        .map(|s| SkipRange {
                            first: s.first,
                            last: s.last,
                        })
                        .collect();
                    writer.finalize_with_stop(stoptime(stop_time_ntp), next, &skips)
                }
                StopInfo::Stop {
                    stop_time_ntp,
                    next_seqno: None,
                    ..
                } => writer.finalize_incomplete(stoptime(stop_time_ntp)),
            }
            .map_err(|e| format!("finalising: {e}"))?;
            // The v3 layout (spec §7.7): 40 fixed bytes, the stored Request-Session,
            // then records and skip ranges. (Computed: the seccomp policy has no dup,
            // so there is no second handle to fstat once the writer is consumed.)
            let file_len = 40
                + setup.request.len() as u64
                + 25 * outcome.num_records
                + 8 * u64::from(outcome.num_skips);
            let d = &rep.drops;
            let drops: Vec<DropCount> = [
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
            .collect();
            ipc.send(&TesterToControl::Finished(TesterReport {
                outcome: TesterOutcome::Receiver {
                    finished: outcome.finished,
                    records: outcome.num_records,
                    lost: rep.lost,
                    file_len,
                },
                drops,
            }));
            Ok(ExitCode::SUCCESS)
        }
    }
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

    fn pair() -> (Ipc, Channel) {
        let (a, b) = Channel::pair().unwrap();
        (Ipc { chan: a }, b)
    }

    #[test]
    fn poll_stop_is_false_until_stop_then_stays_true() {
        let (ipc, control) = pair();
        let mut ctl = IpcControl {
            ipc: &ipc,
            stop: None,
        };
        assert!(!ctl.poll_stop());
        let stop = StopInfo::Stop {
            stop_time_ntp: 7,
            next_seqno: Some(3),
            skips: vec![],
        };
        control
            .send(&ControlToTester::Stop(stop.clone()), &[])
            .unwrap();
        assert!(ctl.poll_stop());
        assert!(ctl.poll_stop());
        assert_eq!(ctl.stop, Some(stop));
    }

    #[test]
    fn control_gone_means_stop_without_information() {
        let (ipc, control) = pair();
        drop(control);
        let mut ctl = IpcControl {
            ipc: &ipc,
            stop: None,
        };
        assert!(ctl.poll_stop());
        assert!(matches!(
            ctl.stop,
            Some(StopInfo::Stop {
                next_seqno: None,
                ..
            })
        ));
        // And a blocking read says the same.
        assert!(matches!(
            ipc.next(),
            Ok(ControlToTester::Stop(StopInfo::Stop {
                next_seqno: None,
                ..
            }))
        ));
    }

    #[test]
    fn anything_but_stop_while_running_aborts() {
        let (ipc, control) = pair();
        control.send(&ControlToTester::Start, &[]).unwrap();
        let mut ctl = IpcControl {
            ipc: &ipc,
            stop: None,
        };
        assert!(ctl.poll_stop());
        assert_eq!(ctl.stop, Some(StopInfo::Abort));
    }

    #[test]
    fn failure_is_reported_to_control() {
        let (ipc, control) = pair();
        let code = ipc.failed("no");
        assert_eq!(code, ExitCode::FAILURE);
        let got = control.recv::<TesterToControl>().unwrap().msg;
        assert_eq!(
            got,
            TesterToControl::Finished(TesterReport {
                outcome: TesterOutcome::Failed {
                    reason: "no".into()
                },
                drops: vec![],
            })
        );
    }
}
