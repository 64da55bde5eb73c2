//! owping itself (spec §8.2): open the control connection, request the "to" and/or
//! "from" sessions, run the local sender/receiver in threads with the engine, exchange
//! Stop-Sessions, fetch the "to" session and print both.

use crate::control::{Control, ControlError};
use crate::net::{Family, bind_test_socket, resolve, split_host};
use crate::opts::{CommandLine, Program};
use crate::output::{Names, SessionData, print_session};
use crate::signals::Interrupt;
use crate::tools::{command_line, fetch_to_file};
use crate::{connect_params, log};
use owamp::engine::{
    ReceiverParams, ReceiverReport, SenderParams, SenderReport, SocketOptions, StopFlag,
    UdpTestSocket, run_receiver, run_sender,
};
use owamp::owp::{FetchInfo, FetchedFileWriter, SessionFields, SessionHeader};
use owamp::packet::{PacketFormat, TestKeys};
use owamp::schedule::Schedule;
use owamp::time::{Clock, KernelClockStatus, StatusProvider};
use owamp::wire::{RequestSession, SessionStop, StopLimits, StopSessions};
use owamp::{AcceptCode, Mode, Num64, PacketRecord, Sid, Slot, Timestamp};
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

const PROG: Program = Program::Owping;

/// The kernel's NTP status (adjtimex, read only) for the S bit and the error estimates
/// (spec §4.3); `sandbox` holds the `unsafe` call.
fn kernel_status() -> Option<KernelClockStatus> {
    sandbox::kernel_clock().map(|k| KernelClockStatus {
        synchronized: k.synchronized,
        esterror_us: k.esterror_us,
        offset_ns: k.offset_ns,
    })
}

pub const CLOCK_STATUS: Option<StatusProvider> = Some(kernel_status);

/// Mean packets per second of a schedule (the reference's `OWPTestPacketRate`).
pub fn packet_rate(slots: &[Slot]) -> f64 {
    let total: f64 = slots.iter().map(|s| s.param.as_secs_f64()).sum();
    if total > 0.0 {
        slots.len() as f64 / total
    } else {
        0.0
    }
}

/// A receiver-generated SID (spec §2.1.4): the receiver's IPv4 address (or the last 4
/// bytes of its IPv6 address), the current timestamp, 4 random bytes.
pub fn make_sid(receiver: IpAddr, now: Timestamp) -> Sid {
    let mut s = [0u8; 16];
    match receiver {
        IpAddr::V4(a) => s[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => s[..4].copy_from_slice(&a.octets()[12..]),
    }
    s[4..12].copy_from_slice(&now.to_be_bytes());
    let r = owamp::crypto::random_bytes::<4>("SID").unwrap_or([0x5a; 4]);
    s[12..].copy_from_slice(&r);
    Sid(s)
}

/// Start time (spec §8.2): now + max(rtt_bound·(1 + directions) + 1 s, -z).
pub fn start_time(
    now: Timestamp,
    rtt_bound: Num64,
    directions: u32,
    delay_start: f64,
) -> Timestamp {
    let min = rtt_bound
        .fixed_mul(Num64(u64::from(1 + directions) << 32))
        .wrapping_add(Num64(1 << 32));
    let z = Num64::from_secs_f64(delay_start);
    now.wrapping_add(if z > min { z } else { min })
}

/// What a session thread needs to build its format and schedule.
#[derive(Clone)]
struct SessionSetup {
    sid: Sid,
    mode: Mode,
    keys: Option<TestKeys>,
    padding: u32,
    start: Timestamp,
    slots: Vec<Slot>,
    count: u32,
    timeout: Num64,
    debug_offset: f64,
    dscp: Option<u8>,
}

impl SessionSetup {
    fn socket(&self, udp: UdpSocket, peer: SocketAddr) -> std::io::Result<UdpTestSocket> {
        let len = PacketFormat::new(self.mode, self.keys.as_ref(), self.padding)
            .map(|f| f.len())
            .unwrap_or(0);
        UdpTestSocket::new(
            udp,
            peer,
            SocketOptions {
                dscp: self.dscp,
                packet_len: len,
                packets_per_second: packet_rate(&self.slots),
            },
        )
    }

    fn format(&self) -> std::io::Result<PacketFormat> {
        PacketFormat::new(self.mode, self.keys.as_ref(), self.padding)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

type RecvResult = std::io::Result<(ReceiverReport, Vec<PacketRecord>)>;

fn spawn_receiver(
    s: SessionSetup,
    udp: UdpSocket,
    peer: SocketAddr,
    stop: StopFlag,
) -> std::io::Result<JoinHandle<RecvResult>> {
    std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let clock = Clock::new(CLOCK_STATUS, s.debug_offset);
            let mut sock = s.socket(udp, peer)?;
            let fmt = s.format()?;
            let mut sched = Schedule::new(s.sid, s.start, &s.slots, s.count);
            let mut recs = Vec::new();
            let mut ctl = stop;
            let rep = run_receiver(
                &mut sock,
                &clock,
                &fmt,
                &mut sched,
                ReceiverParams {
                    num_packets: s.count,
                    timeout: s.timeout,
                    expected_src: peer,
                },
                &mut recs,
                &mut ctl,
            )?;
            Ok((rep, recs))
        })
}

fn spawn_sender(
    s: SessionSetup,
    udp: UdpSocket,
    peer: SocketAddr,
    end_delay: Duration,
    stop: StopFlag,
) -> std::io::Result<JoinHandle<std::io::Result<SenderReport>>> {
    std::thread::Builder::new()
        .name("sender".into())
        .spawn(move || {
            let clock = Clock::new(CLOCK_STATUS, s.debug_offset);
            let mut sock = s.socket(udp, peer)?;
            let mut fmt = s.format()?;
            let mut sched = Schedule::new(s.sid, s.start, &s.slots, s.count);
            let mut ctl = stop;
            run_sender(
                &mut sock,
                &clock,
                &mut fmt,
                &mut sched,
                SenderParams {
                    num_packets: s.count,
                    timeout: s.timeout,
                    end_delay,
                },
                &mut ctl,
            )
        })
}

/// Keeps the receive records that the Stop-Sessions rule of spec §7.8 keeps: seq <
/// next and send time ≤ stoptime − Timeout. A *received* record with seq ≥ next means
/// the sender lied or the data is corrupt: the session is invalid.
pub fn apply_stop(
    records: Vec<PacketRecord>,
    next: u32,
    stoptime: Timestamp,
    timeout: Num64,
) -> Result<Vec<PacketRecord>, u32> {
    let limit = stoptime.saturating_sub(timeout);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        if r.seq >= next {
            if !r.is_lost() {
                return Err(r.seq);
            }
            continue;
        }
        if r.send_ts <= limit {
            out.push(r);
        }
    }
    Ok(out)
}

/// The "to" and "from" sessions once requested.
struct Planned {
    to: Option<(Sid, UdpSocket, SocketAddr)>,
    from: Option<(Sid, UdpSocket, SocketAddr, RequestSession)>,
}

fn fail(msg: &str) -> i32 {
    log(PROG, msg);
    1
}

/// owping's `main`.
pub fn owping_main(args: &[String], intr: &Interrupt) -> i32 {
    let cl = match command_line(PROG, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(testpeer) = cl.operands.first().cloned() else {
        return 1;
    };
    let server = cl
        .operands
        .get(1)
        .cloned()
        .unwrap_or_else(|| testpeer.clone());
    let params = match connect_params(PROG, &cl, &server) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let clock = match Clock::from_env(CLOCK_STATUS) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    if intr.is_set() {
        return 2;
    }
    let ctl = match Control::connect(&params) {
        Ok(c) => c,
        Err(e) => {
            return fail(&format!(
                "Unable to open control connection to {server}: {e}"
            ));
        }
    };
    run(&cl, ctl, &clock, &testpeer, &server, intr)
}

fn run(
    cl: &CommandLine,
    mut ctl: Control,
    clock: &Clock,
    testpeer: &str,
    server: &str,
    intr: &Interrupt,
) -> i32 {
    let t = &cl.test;
    let rtt = ctl.rtt_bound;
    let loss = t.loss_threshold.unwrap_or(rtt.as_secs_f64() + 2.0);
    if loss < cl.out.bucket_width {
        return fail(&format!(
            "Invalid test specification: LossThreshold({loss:.6}) '-L' < BucketWidth ({:.6}) '-b'",
            cl.out.bucket_width
        ));
    }
    let timeout = Num64::from_secs_f64(loss);
    let directions = u32::from(t.to) + u32::from(t.from);
    let start = start_time(clock.now().0, rtt, directions, t.delay_start);
    let local_ip = ctl.local.ip();
    let peer_ip = if testpeer == server {
        ctl.peer.ip()
    } else {
        let fam = if local_ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        match resolve(testpeer, 0, fam) {
            Ok(a) => a.first().map(|a| a.ip()).unwrap_or(ctl.peer.ip()),
            Err(e) => return fail(&e.to_string()),
        }
    };
    let type_p = t.dscp.map_or(0, |d| u32::from(d) << 24);
    let base = RequestSession {
        conf_sender: false,
        conf_receiver: false,
        num_packets: t.count,
        sender_port: 0,
        receiver_port: 0,
        sender_addr: local_ip,
        receiver_addr: peer_ip,
        sid: Sid([0; 16]),
        padding: t.padding,
        start_time: start,
        timeout,
        type_p,
        slots: t.slots.clone(),
    };
    // Checked as a "to" request: the direction does not change what can be wrong.
    let probe = RequestSession {
        conf_receiver: true,
        ..base.clone()
    };
    if let Err(p) = probe.validate_in_mode(Some(ctl.mode)) {
        return fail(&format!("Invalid test specification: {p}"));
    }
    let (_, device) = crate::source(cl);
    let device = device.as_deref();
    let mut plan = Planned {
        to: None,
        from: None,
    };
    if t.to {
        let udp = match bind_test_socket(local_ip, t.ports, device) {
            Ok(u) => u,
            Err(e) => return fail(&e.to_string()),
        };
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
        let req = RequestSession {
            conf_receiver: true,
            sender_port: port,
            ..base.clone()
        };
        match ctl.request_session(&req) {
            Ok(acc) => plan.to = Some((acc.sid, udp, SocketAddr::new(peer_ip, acc.port))),
            Err(e) => return fail(&e.to_string()),
        }
    }
    if intr.is_set() {
        return 2;
    }
    if t.from {
        let udp = match bind_test_socket(local_ip, t.ports, device) {
            Ok(u) => u,
            Err(e) => return fail(&e.to_string()),
        };
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
        let sid = make_sid(local_ip, clock.now().0);
        let req = RequestSession {
            conf_sender: true,
            receiver_port: port,
            sender_addr: peer_ip,
            receiver_addr: local_ip,
            sid,
            ..base.clone()
        };
        match ctl.request_session(&req) {
            Ok(acc) => {
                let peer = SocketAddr::new(peer_ip, acc.port);
                let req = RequestSession {
                    sender_port: acc.port,
                    ..req
                };
                plan.from = Some((sid, udp, peer, req));
            }
            Err(e) => return fail(&e.to_string()),
        }
    }
    if intr.is_set() {
        return 2;
    }
    let mode = ctl.mode;
    let to_keys = plan.to.as_ref().and_then(|(sid, ..)| ctl.test_keys(*sid));
    let from_keys = plan.from.as_ref().and_then(|(sid, ..)| ctl.test_keys(*sid));
    let setup = |sid: Sid, keys: Option<TestKeys>| SessionSetup {
        sid,
        mode,
        keys,
        padding: t.padding,
        start,
        slots: t.slots.clone(),
        count: t.count,
        timeout,
        debug_offset: clock.debug_offset(),
        dscp: t.dscp,
    };
    let stop = StopFlag::new();
    // Our receiver is ready before Start-Sessions; our sender starts after Start-Ack
    // (spec §2.3).
    let mut from_info = None;
    let mut rx = None;
    if let Some((sid, udp, peer, req)) = plan.from.take() {
        match spawn_receiver(setup(sid, from_keys.clone()), udp, peer, stop.clone()) {
            Ok(h) => rx = Some(h),
            Err(e) => return fail(&format!("starting the receiver thread: {e}")),
        }
        from_info = Some((sid, req));
    }
    if let Err(e) = ctl.start_sessions() {
        stop.stop();
        return fail(&e.to_string());
    }
    let mut tx = None;
    let mut to_sid = None;
    if let Some((sid, udp, peer)) = plan.to.take() {
        let end_delay = Duration::from_secs_f64(t.end_delay.unwrap_or(1.0));
        match spawn_sender(
            setup(sid, to_keys.clone()),
            udp,
            peer,
            end_delay,
            stop.clone(),
        ) {
            Ok(h) => tx = Some(h),
            Err(e) => {
                stop.stop();
                return fail(&format!("starting the sender thread: {e}"));
            }
        }
        to_sid = Some(sid);
    }
    if !cl.out.quiet && !cl.out.json {
        let rate = packet_rate(&t.slots);
        let mut duration = if rate > 0.0 {
            f64::from(t.count) / rate
        } else {
            0.0
        };
        duration += loss + rtt.as_secs_f64();
        let end = start.as_secs_f64() + duration - clock.now().0.as_secs_f64();
        println!("Approximately {end:.1} seconds until results available");
    }

    // Wait for the first of: our sessions done, the server's Stop-Sessions, a signal.
    let local_done = |rx: &Option<JoinHandle<RecvResult>>, tx: &Option<JoinHandle<_>>| {
        rx.as_ref().is_none_or(|h| h.is_finished())
            && tx
                .as_ref()
                .is_none_or(|h: &JoinHandle<std::io::Result<SenderReport>>| h.is_finished())
    };
    let server_first = loop {
        if intr.is_set() || local_done(&rx, &tx) {
            break false;
        }
        let mut fds = [nix::poll::PollFd::new(
            ctl.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
            Ok(n) if n > 0 => break true,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return fail(&format!("waiting on the control connection: {e}")),
        }
    };
    let limits = StopLimits {
        max_sessions: u32::from(from_info.is_some()),
        max_skips: t.count,
    };
    let interrupted = intr.is_set();
    let (their_stop, stoptime, tx_report) = if server_first {
        let theirs = ctl.read_stop(limits, crate::IO_TIMEOUT);
        let stoptime = clock.now().0;
        stop.stop();
        let tx_report = join_sender(tx);
        let ours = our_stop(to_sid, &tx_report, theirs.as_ref().ok().map(|s| s.accept));
        if let Err(e) = ctl.send_stop(ours.0, ours.1) {
            log(PROG, &e.to_string());
        }
        (theirs, stoptime, tx_report)
    } else {
        if interrupted {
            stop.stop();
        }
        let tx_report = join_sender(tx);
        let ours = our_stop(to_sid, &tx_report, None);
        if let Err(e) = ctl.send_stop(ours.0, ours.1) {
            return fail(&e.to_string());
        }
        let wait = crate::IO_TIMEOUT + Duration::from_secs_f64(loss);
        let theirs = ctl.read_stop(limits, wait);
        (theirs, clock.now().0, tx_report)
    };
    stop.stop();
    let rx_result = rx.map(|h| h.join());
    let theirs = match their_stop {
        Ok(s) => s,
        Err(e) => {
            log(PROG, &e.to_string());
            return fail("Test session(s) Failed...");
        }
    };
    if theirs.accept != AcceptCode::Ok || tx_report.as_ref().is_some_and(|r| r.is_err()) {
        if let Some(Err(e)) = &tx_report {
            log(PROG, &format!("local sender: {e}"));
        }
        if theirs.accept != AcceptCode::Ok {
            log(
                PROG,
                &format!("the server reports the sessions failed: {}", theirs.accept),
            );
        }
        if let Some(p) = &t.save_from {
            let _ = std::fs::remove_file(p);
        }
        return fail("Test session(s) Failed...");
    }
    if interrupted {
        return 2;
    }

    // The "from" session: our own records, cut per the server's Stop-Sessions.
    let mut status = 0;
    let mut from_data = None;
    if let Some((sid, req)) = from_info {
        match finish_from(
            &theirs,
            sid,
            &req,
            rx_result,
            stoptime,
            timeout,
            t.save_from.as_deref(),
        ) {
            Ok(d) => from_data = Some(d),
            Err(e) => {
                status = fail(&e);
            }
        }
    }
    let remote = split_host(testpeer, 0)
        .map(|h| h.0)
        .unwrap_or_else(|_| testpeer.to_string());
    let local = local_ip.to_string();
    let mut out = std::io::stdout().lock();
    if let Some(sid) = to_sid
        && (t.save_to.is_some() || cl.out.wants_data())
    {
        match fetch_to(&mut ctl, sid, t.save_to.as_deref()) {
            Ok(data) => {
                if cl.out.wants_data() {
                    let names = Names {
                        from: Some(local.clone()),
                        to: Some(remote.clone()),
                    };
                    if let Err(e) = print_session(&mut out, &data, &names, &cl.out) {
                        status = fail(&format!("\"to\" session: {e}"));
                    }
                }
            }
            Err(e) => {
                log(
                    PROG,
                    &format!("Unable to fetch data for sid({})", sid.to_hex()),
                );
                status = fail(&e.to_string());
            }
        }
    }
    if let Some(data) = from_data
        && cl.out.wants_data()
    {
        let names = Names {
            from: Some(remote),
            to: Some(local),
        };
        if let Err(e) = print_session(&mut out, &data, &names, &cl.out) {
            status = fail(&format!("\"from\" session: {e}"));
        }
    }
    status
}

fn join_sender(
    tx: Option<JoinHandle<std::io::Result<SenderReport>>>,
) -> Option<std::io::Result<SenderReport>> {
    tx.map(|h| {
        h.join()
            .unwrap_or_else(|_| Err(std::io::Error::other("sender thread panicked")))
    })
}

/// Our Stop-Sessions: one record for the session we sent (spec §2.5).
fn our_stop(
    to_sid: Option<Sid>,
    tx: &Option<std::io::Result<SenderReport>>,
    peer_accept: Option<AcceptCode>,
) -> (AcceptCode, Vec<SessionStop>) {
    let mut accept = peer_accept.unwrap_or(AcceptCode::Ok);
    let mut sessions = Vec::new();
    if let Some(sid) = to_sid {
        match tx {
            Some(Ok(r)) => sessions.push(SessionStop {
                sid,
                next_seqno: r.next_seqno,
                skips: r.skips.clone(),
            }),
            _ => {
                accept = AcceptCode::InternalError;
                sessions.push(SessionStop {
                    sid,
                    next_seqno: 0,
                    skips: Vec::new(),
                });
            }
        }
    }
    (accept, sessions)
}

fn finish_from(
    theirs: &StopSessions,
    sid: Sid,
    req: &RequestSession,
    rx: Option<std::thread::Result<RecvResult>>,
    stoptime: Timestamp,
    timeout: Num64,
    save: Option<&Path>,
) -> Result<SessionData, String> {
    let records = match rx {
        Some(Ok(Ok((_, recs)))) => recs,
        Some(Ok(Err(e))) => return Err(format!("local receiver: {e}")),
        _ => return Err("local receiver thread failed".into()),
    };
    let Some(st) = theirs.sessions.iter().find(|s| s.sid == sid) else {
        return Err(format!(
            "the server's Stop-Sessions has no record for the \"from\" session {}",
            sid.to_hex()
        ));
    };
    let next = if st.next_seqno == u32::MAX {
        req.num_packets
    } else {
        st.next_seqno
    };
    if next > req.num_packets {
        return Err(format!(
            "the server's Stop-Sessions claims Next Seqno {next} for {} packets",
            req.num_packets
        ));
    }
    let records = apply_stop(records, next, stoptime, timeout).map_err(|seq| {
        format!("session invalid: packet {seq} received but the sender stopped at {next}")
    })?;
    let fields = SessionFields {
        ipvn: req.ipvn(),
        conf_sender: req.conf_sender,
        conf_receiver: req.conf_receiver,
        npackets: req.num_packets,
        sender_port: req.sender_port,
        receiver_port: req.receiver_port,
        sender_addr: req.sender_addr,
        receiver_addr: req.receiver_addr,
        sid,
        padding: req.padding,
        start_time: req.start_time,
        timeout: req.timeout,
        type_p: req.type_p,
        slots: req.slots.clone(),
    };
    let session = SessionHeader::from_fields(&fields).map_err(|e| e.to_string())?;
    let label = save.map_or_else(|| PathBuf::from("\"from\" session"), Path::to_path_buf);
    if let Some(path) = save {
        let write = || -> Result<(), String> {
            let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let info = FetchInfo {
                finished: owamp::owp::FINISHED_NORMAL,
                next_seqno: next,
                num_records: u32::try_from(records.len()).map_err(|_| "too many records")?,
            };
            let mut w = FetchedFileWriter::begin(
                std::io::BufWriter::new(f),
                path,
                &session,
                info,
                &st.skips,
            )
            .map_err(|e| e.to_string())?;
            for r in &records {
                w.record(r).map_err(|e| e.to_string())?;
            }
            let mut inner = w.finish().map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut inner).map_err(|e| format!("{}: {e}", path.display()))
        };
        write()?;
    }
    Ok(SessionData {
        label: label.display().to_string(),
        session,
        finished: owamp::owp::FINISHED_NORMAL,
        records,
        skips: st.skips.clone(),
    })
}

/// Fetches the "to" session into `save` or into memory.
fn fetch_to(ctl: &mut Control, sid: Sid, save: Option<&Path>) -> Result<SessionData, ControlError> {
    match save {
        Some(path) => {
            fetch_to_file(ctl, sid, path)?;
            Ok(SessionData::open(path)?)
        }
        None => {
            let mut buf = Vec::new();
            let label = Path::new("\"to\" session");
            ctl.fetch_to(sid, &mut buf, label)?;
            Ok(SessionData::read(Cursor::new(buf), label)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::ErrorEstimate;

    fn rec(seq: u32, send: u64, lost: bool) -> PacketRecord {
        PacketRecord {
            seq,
            send_err: ErrorEstimate::UNSYNC,
            recv_err: ErrorEstimate::UNSYNC,
            send_ts: Num64(send << 32),
            recv_ts: if lost {
                Num64::ZERO
            } else {
                Num64((send << 32) + 1000)
            },
            ttl: 255,
        }
    }

    #[test]
    fn stop_rule() {
        let recs = vec![
            rec(0, 100, false),
            rec(1, 101, true),
            rec(2, 105, true),
            rec(3, 106, true),
        ];
        // next = 3: lost record 3 dropped; stoptime 107, T = 3: send ≤ 104 kept.
        let kept = apply_stop(recs.clone(), 3, Num64(107 << 32), Num64(3 << 32)).unwrap();
        assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![0, 1]);
        // A received record at or beyond next invalidates the session.
        assert_eq!(
            apply_stop(recs, 0, Num64(200 << 32), Num64(1 << 32)),
            Err(0)
        );
    }

    #[test]
    fn sid_layout() {
        let sid = make_sid("127.0.0.1".parse().unwrap(), Num64(0xdd12_e59f_f0d3_41db));
        assert_eq!(
            &sid.0[..12],
            &[127, 0, 0, 1, 0xdd, 0x12, 0xe5, 0x9f, 0xf0, 0xd3, 0x41, 0xdb]
        );
        let v6 = make_sid("::1".parse().unwrap(), Num64(0));
        assert_eq!(&v6.0[..4], &[0, 0, 0, 1]);
    }

    #[test]
    fn start_and_rate() {
        let now = Num64(1000 << 32);
        // rtt 0.5 s, two directions: 1.5 s + 1 s.
        assert_eq!(
            start_time(now, Num64(1 << 31), 2, 0.0),
            Num64((1002 << 32) + (1 << 31))
        );
        assert_eq!(start_time(now, Num64(1 << 31), 2, 10.0), Num64(1010 << 32));
        assert!((packet_rate(&crate::parse::default_slots()) - 10.0).abs() < 1e-6);
    }
}
