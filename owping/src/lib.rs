//! Shared code of the OWAMP clients (owping, owstats, owfetch, owup, powstream; protocol.md §8).
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
pub mod powstream;
pub mod recvdata;
pub mod signals;
pub mod tools;

use control::ConnectParams;
use opts::{CommandLine, ConnOpts, Program};
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
/// the server and `-A` allow it (protocol.md §1.8, §10).
pub fn connect_params(prog: Program, cl: &CommandLine, server: &str) -> Result<ConnectParams, i32> {
    Ok(connect_params_for(prog.name(), &cl.conn, server))
}

/// [`connect_params`] from the connection options alone; `prog` names the program in
/// the message about a pass-phrase that cannot be had.
pub fn connect_params_for(prog: &str, conn: &ConnOpts, server: &str) -> ConnectParams {
    let mut identity = conn.identity.clone();
    let mut passphrase = None;
    if let Some(id) = &identity {
        let got = match &conn.pffile {
            Some(path) => passphrase::from_pffile(path, id),
            None => passphrase::prompt(id),
        };
        match got {
            Ok(pf) => passphrase = Some(pf),
            Err(e) => eprintln_safe(&format!("{prog}: {e}")),
        }
    }
    if passphrase.is_none() {
        identity = None;
    }
    let family = match (conn.v4only, conn.v6only) {
        (true, _) => net::Family::V4,
        (_, true) => net::Family::V6,
        _ => net::Family::Any,
    };
    let (src, bind_device) = source_of(conn);
    ConnectParams {
        server: server.to_string(),
        src,
        family,
        bind_device,
        requested: conn.auth_modes.unwrap_or(ModeSet::ALL),
        identity,
        passphrase,
        connect_timeout: CONNECT_TIMEOUT,
        io_timeout: IO_TIMEOUT,
    }
}

/// One line on stderr that never panics (a closed stderr is ignored).
fn eprintln_safe(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `-S` takes "the local address or interface": a value that is the name of a network
/// interface (and not an address) binds to that device instead. Returns (source
/// address, device), `-B` winning over an interface named by `-S`.
pub fn source(cl: &CommandLine) -> (Option<String>, Option<String>) {
    source_of(&cl.conn)
}

/// [`source`] from the connection options alone.
pub fn source_of(conn: &ConnOpts) -> (Option<String>, Option<String>) {
    let is_ifname = |s: &str| {
        !s.is_empty()
            && s.parse::<std::net::IpAddr>().is_err()
            && !s.contains(['/', ':', '['])
            && std::path::Path::new("/sys/class/net").join(s).exists()
    };
    match &conn.srcaddr {
        Some(s) if is_ifname(s) => (None, conn.bind_device.clone().or_else(|| Some(s.clone()))),
        other => (other.clone(), conn.bind_device.clone()),
    }
}
