//! owping itself (protocol.md §8.2): open the control connection, request the "to" and/or
//! "from" sessions, run the local sender/receiver in threads with the engine, exchange
//! Stop-Sessions, fetch the "to" session and print both.

use crate::control::{Control, ControlError};
use crate::endpoints::{
    CLOCK_STATUS, RecvResult, SessionSetup, join_sender, make_sid, spawn_receiver, spawn_sender,
    start_time, unrecorded_duplicates,
};
use crate::net::{Family, bind_test_socket, resolve};
use crate::opts::{CommandLine, Program};
use crate::output::{Names, SessionData, local_host_name, print_session, typed_host_name};
use crate::recvdata::finish_from;
use crate::signals::Interrupt;
use crate::tools::{command_line, fetch_to_file};
use crate::{connect_params, log};
use owamp::addr::{link_scope, with_scope};
use owamp::engine::{SenderReport, StopFlag};
use owamp::packet::TestKeys;
use owamp::time::Clock;
use owamp::wire::{RequestSession, SessionStop, StopLimits, StopSessions};
use owamp::{AcceptCode, Num64, Sid, Timestamp};
use std::io::Cursor;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

const PROG: Program = Program::Owping;

/// The "to" and "from" sessions once requested.
struct Planned {
    to: Option<(Sid, UdpSocket, SocketAddr)>,
    from: Option<(Sid, UdpSocket, SocketAddr, RequestSession)>,
}

/// Seconds from the command line (-E, -L: finite and non-negative, but unbounded) as a
/// `Duration`, saturating: `Duration::from_secs_f64` panics past 2^64 s, and `-L 1e300`
/// must not abort owping.
pub(crate) fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
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
    let clock = match config::debug_time_offset() {
        Ok(offset) => Clock::new(CLOCK_STATUS, offset),
        Err(e) => return fail(&e.to_string()),
    };
    if intr.is_set() {
        return 2;
    }
    let ctl = match Control::connect(&params) {
        Ok(c) => c,
        // The connect error already names the server: not said twice.
        Err(ControlError::Net(crate::net::NetError::Connect { detail, .. })) => {
            return fail(&format!(
                "Unable to open control connection to {server}: {detail}"
            ));
        }
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
    // Link-local test addresses go through the control connection's interface.
    let scope = link_scope(&ctl.local);
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
        let udp = match bind_test_socket(local_ip, scope, t.ports, device) {
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
            Ok(acc) => {
                let peer = with_scope(SocketAddr::new(peer_ip, acc.port), scope);
                plan.to = Some((acc.sid, udp, peer));
            }
            Err(e) => return fail(&e.to_string()),
        }
    }
    if intr.is_set() {
        return 2;
    }
    if t.from {
        let udp = match bind_test_socket(local_ip, scope, t.ports, device) {
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
                let peer = with_scope(SocketAddr::new(peer_ip, acc.port), scope);
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
    // (protocol.md §2.3).
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
        let end_delay = secs(t.end_delay.unwrap_or(1.0));
        match spawn_sender(
            setup(sid, to_keys.clone()),
            udp,
            peer,
            end_delay,
            stop.clone(),
            None,
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
        let rate = owamp::schedule::packets_per_second(&t.slots);
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
    let ex = match exchange_stop(
        &mut ctl,
        clock,
        server_first,
        interrupted,
        &stop,
        tx,
        to_sid,
        limits,
        loss,
    ) {
        Ok(ex) => ex,
        Err(e) => return fail(&e.to_string()),
    };
    if let Some(e) = &ex.send_error {
        log(PROG, &e.to_string());
    }
    let StopExchange {
        theirs: their_stop,
        stoptime,
        tx_report,
        ..
    } = ex;
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
    // A first signal only cuts the sessions short: like owping.c we still fetch and
    // print the partial results. The exit status then says the run was interrupted
    // (2, owping's documented meaning), where owping.c exits 0; a second signal exits 2
    // at once (signals.rs).

    // The "from" session: our own records, cut per the server's Stop-Sessions.
    let mut status = 0;
    let mut from_data = None;
    if let Some((sid, req)) = from_info {
        if let Some(m) = unrecorded_duplicates(rx_result.as_ref()) {
            log(PROG, &m);
        }
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
    // As owping.c names the ends in its summaries: this host by its resolved name, the
    // test peer as typed. Only when names are printed: no resolver query for -Q or -R.
    let (local, remote) = if !cl.out.quiet || cl.out.json {
        (local_host_name(ctl.local), Some(typed_host_name(testpeer)))
    } else {
        (None, None)
    };
    let mut out = std::io::stdout().lock();
    if let Some(sid) = to_sid
        && (t.save_to.is_some() || cl.out.wants_data())
    {
        match fetch_to(&mut ctl, sid, t.save_to.as_deref()) {
            Ok(data) => {
                if cl.out.wants_data() {
                    let names = Names {
                        from: local.clone(),
                        to: remote.clone(),
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
            from: remote,
            to: local,
        };
        if let Err(e) = print_session(&mut out, &data, &names, &cl.out) {
            status = fail(&format!("\"from\" session: {e}"));
        }
    }
    if status == 0 && interrupted {
        2
    } else {
        status
    }
}

/// The end of the Stop-Sessions exchange (protocol.md §2.5).
pub(crate) struct StopExchange {
    /// The server's Stop-Sessions.
    pub(crate) theirs: Result<StopSessions, ControlError>,
    /// When the sessions were stopped: the §7.8 rule keeps receive records sent by
    /// `stoptime − Timeout`.
    pub(crate) stoptime: Timestamp,
    /// Our sender's outcome, when we sent.
    pub(crate) tx_report: Option<std::io::Result<SenderReport>>,
    /// Our Stop-Sessions could not be sent after the server's (worth a message only:
    /// the server's already says how the sessions ended).
    pub(crate) send_error: Option<ControlError>,
}

/// The Stop-Sessions exchange once the sessions are over, whichever side goes first
/// (RFC 4656 §3.8 lets either): with `server_first` the server's Stop-Sessions is
/// waiting on the connection, so it is read, our sender stopped and ours sent;
/// otherwise our sessions are done (or `interrupted` cuts them short) and ours goes
/// first, then the server's is awaited for up to the I/O timeout plus the loss
/// timeout. Every local endpoint is stopped on return. An error means our own
/// Stop-Sessions could not be sent first: the sessions' outcome is then unknown.
#[allow(clippy::too_many_arguments)]
pub(crate) fn exchange_stop(
    ctl: &mut Control,
    clock: &Clock,
    server_first: bool,
    interrupted: bool,
    stop: &StopFlag,
    tx: Option<JoinHandle<std::io::Result<SenderReport>>>,
    to_sid: Option<Sid>,
    limits: StopLimits,
    loss: f64,
) -> Result<StopExchange, ControlError> {
    let ex = if server_first {
        let theirs = ctl.read_stop(limits, crate::IO_TIMEOUT);
        let stoptime = clock.now().0;
        stop.stop();
        let tx_report = join_sender(tx);
        let ours = our_stop(to_sid, &tx_report, theirs.as_ref().ok().map(|s| s.accept));
        let send_error = ctl.send_stop(ours.0, ours.1).err();
        StopExchange {
            theirs,
            stoptime,
            tx_report,
            send_error,
        }
    } else {
        if interrupted {
            stop.stop();
        }
        let tx_report = join_sender(tx);
        let ours = our_stop(to_sid, &tx_report, None);
        if let Err(e) = ctl.send_stop(ours.0, ours.1) {
            stop.stop();
            return Err(e);
        }
        let wait = crate::IO_TIMEOUT.saturating_add(secs(loss));
        let theirs = ctl.read_stop(limits, wait);
        StopExchange {
            theirs,
            stoptime: clock.now().0,
            tx_report,
            send_error: None,
        }
    };
    stop.stop();
    Ok(ex)
}

/// Our Stop-Sessions: one record for the session we sent (protocol.md §2.5).
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

    #[test]
    fn huge_seconds_saturate() {
        assert_eq!(secs(1.5), Duration::from_millis(1500));
        assert_eq!(secs(1e300), Duration::MAX);
        // The Stop-Sessions wait of `-L 1e300`: no overflow in the addition either.
        assert_eq!(crate::IO_TIMEOUT.saturating_add(secs(1e300)), Duration::MAX);
    }
}
