//! Control-session setup time (issue item 6): from `connect()` to a received
//! Accept-Session, through owping's own control client (protocol.md §1.1–1.4, §2.1, §2.2).
//!
//! Each repetition opens a new connection, does the handshake in the requested mode,
//! asks for one small session with the server as receiver (so the server allocates a
//! port and starts a tester before it answers, protocol.md §7.3), and closes the connection
//! before Start-Sessions, which makes the server discard the session.

use crate::summary::Summary;
use owamp::time::{Clock, duration_to_num64};
use owamp::types::{Mode, ModeSet, Num64, Sid, Slot, SlotKind};
use owamp::wire::RequestSession;
use owping::control::{ConnectParams, Control, ControlError};
use owping::net::Family;
use owping::passphrase::{PassError, from_pffile};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("control connection to {server}: {source}")]
    Control {
        server: String,
        // Boxed: owping's error is large and this one travels through every `?`.
        #[source]
        source: Box<ControlError>,
    },
    #[error("pass-phrase for {user} from {path}: {source}")]
    Pass {
        user: String,
        path: String,
        #[source]
        source: Box<PassError>,
    },
}

/// Who to talk to and how.
pub struct SetupSpec<'a> {
    pub server: &'a str,
    pub mode: Mode,
    pub user: Option<&'a str>,
    pub pfs: Option<&'a Path>,
    pub reps: u32,
}

fn letter_set(m: Mode) -> ModeSet {
    ModeSet(0).with(m)
}

/// Times `reps` setups; JSON with the summary in microseconds.
pub fn measure(spec: &SetupSpec<'_>) -> Result<Value, SetupError> {
    let passphrase = match (spec.user, spec.pfs) {
        (Some(user), Some(path)) => {
            Some(from_pffile(path, user).map_err(|source| SetupError::Pass {
                user: user.to_string(),
                path: path.display().to_string(),
                source: Box::new(source),
            })?)
        }
        _ => None,
    };
    let params = ConnectParams {
        server: spec.server.to_string(),
        src: None,
        family: Family::Any,
        bind_device: None,
        requested: letter_set(spec.mode),
        identity: spec.user.map(str::to_string),
        passphrase,
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(10),
    };
    let err = |source| SetupError::Control {
        server: spec.server.to_string(),
        source: Box::new(source),
    };
    let clock = Clock::new(None, 0.0);
    let mut times = Vec::with_capacity(spec.reps as usize);
    let mut handshake = Vec::with_capacity(spec.reps as usize);
    for _ in 0..spec.reps.max(1) {
        let t0 = Instant::now();
        let mut c = Control::connect(&params).map_err(err)?;
        let t1 = t0.elapsed();
        let req = RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets: 10,
            sender_port: c.local.port(),
            receiver_port: 0,
            sender_addr: c.local.ip(),
            receiver_addr: c.peer.ip(),
            sid: Sid([0; 16]),
            padding: 0,
            start_time: clock
                .now()
                .0
                .wrapping_add(duration_to_num64(Duration::from_secs(30))),
            timeout: duration_to_num64(Duration::from_secs(2)),
            type_p: 0,
            slots: vec![Slot {
                kind: SlotKind::Fixed,
                param: Num64(1 << 30),
            }],
        };
        c.request_session(&req).map_err(err)?;
        let t2 = t0.elapsed();
        drop(c);
        times.push(t2.as_nanos() as i64);
        handshake.push(t1.as_nanos() as i64);
    }
    let s = Summary::of(&mut times);
    let h = Summary::of(&mut handshake);
    let us = |ns: i64| ns as f64 / 1000.0;
    Ok(json!({
        "mode": crate::session::mode_name(spec.mode),
        "reps": s.n,
        "min_us": us(s.min), "p50_us": us(s.p50), "p99_us": us(s.p99), "max_us": us(s.max),
        "handshake_p50_us": us(h.p50),
    }))
}
