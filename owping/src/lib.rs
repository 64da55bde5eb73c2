//! Shared code of the OWAMP clients (owping, owstats, owfetch, owup; spec §8).
#![forbid(unsafe_code)]

pub mod control;
pub mod endpoints;
pub mod getopt;
pub mod net;
pub mod opts;
pub mod output;
pub mod parse;
pub mod passphrase;
pub mod ping;
pub mod recvdata;
pub mod signals;
pub mod tools;

use control::ConnectParams;
use opts::{CommandLine, Program};
use owamp::ModeSet;
use std::time::Duration;

/// Deadline for the TCP connect of the control connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline for each reply of the server during the handshake and commands.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// One line on stderr, `prog: message`, as the reference's error log prints.
pub fn log(prog: Program, msg: &str) {
    eprintln!("{}: {msg}", prog.name());
}

/// The connection parameters of `cl`, with the pass-phrase looked up or prompted for
/// when `-u` is given (owping.c `owp_set_auth`). A pass-phrase that cannot be had is
/// reported and the identity dropped: the connection then falls back to open mode if
/// the server and `-A` allow it (spec §1.8, §10).
pub fn connect_params(prog: Program, cl: &CommandLine, server: &str) -> Result<ConnectParams, i32> {
    let mut identity = cl.conn.identity.clone();
    let mut passphrase = None;
    if let Some(id) = &identity {
        let got = match &cl.conn.pffile {
            Some(path) => passphrase::from_pffile(path, id),
            None => passphrase::prompt(id),
        };
        match got {
            Ok(pf) => passphrase = Some(pf),
            Err(e) => log(prog, &e.to_string()),
        }
    }
    if passphrase.is_none() {
        identity = None;
    }
    let family = match (cl.conn.v4only, cl.conn.v6only) {
        (true, _) => net::Family::V4,
        (_, true) => net::Family::V6,
        _ => net::Family::Any,
    };
    let (src, bind_device) = source(cl);
    Ok(ConnectParams {
        server: server.to_string(),
        src,
        family,
        bind_device,
        requested: cl.conn.auth_modes.unwrap_or(ModeSet::ALL),
        identity,
        passphrase,
        connect_timeout: CONNECT_TIMEOUT,
        io_timeout: IO_TIMEOUT,
    })
}

/// `-S` takes "the local address or interface": a value that is the name of a network
/// interface (and not an address) binds to that device instead. Returns (source
/// address, device), `-B` winning over an interface named by `-S`.
pub fn source(cl: &CommandLine) -> (Option<String>, Option<String>) {
    let is_ifname = |s: &str| {
        !s.is_empty()
            && s.parse::<std::net::IpAddr>().is_err()
            && !s.contains(['/', ':', '['])
            && std::path::Path::new("/sys/class/net").join(s).exists()
    };
    match &cl.conn.srcaddr {
        Some(s) if is_ifname(s) => (
            None,
            cl.conn.bind_device.clone().or_else(|| Some(s.clone())),
        ),
        other => (other.clone(), cl.conn.bind_device.clone()),
    }
}
