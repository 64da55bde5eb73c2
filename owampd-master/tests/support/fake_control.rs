//! A stand-in for owampd-control, for the master's tests only (an [[example]], never
//! installed). It speaks the master ⇄ control protocol over fd 3. Its behaviour is
//! chosen by marker files in the datadir it is configured with (the master clears the
//! environment):
//! - `fake-bad-version`: answer Hello with another version;
//! - `fake-crash`: exit 3 right after Ready (the master must restart it);
//! - `fake-ignore-shutdown`: do not exit on Shutdown (the master must SIGKILL it).
//!
//! Each passed connection gets `fake-control <peer> <local>\n` and is closed.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::TcpStream;
use std::process::ExitCode;

use ipc::master::{ControlToMaster, LogLevel, LogRecord, MasterToControl, PROTOCOL_VERSION};
use ipc::{Channel, IpcError};

fn log(ch: &Channel, message: String) -> Result<(), IpcError> {
    ch.send(
        &ControlToMaster::Log(LogRecord {
            level: LogLevel::Info,
            message: format!("[control] {message}"),
        }),
        &[],
    )
}

fn run() -> Result<(), IpcError> {
    let fd = ipc::fds::take_inherited(ipc::fds::IPC_FD)?;
    let ch = Channel::from_owned(fd);
    let MasterToControl::Hello { version } = ch.recv::<MasterToControl>()?.msg else {
        return Err(IpcError::Closed);
    };
    ipc::master::check_hello(version)?;
    let MasterToControl::Configure(settings) = ch.recv::<MasterToControl>()?.msg else {
        return Err(IpcError::Closed);
    };
    let marker = |name: &str| settings.datadir.join(name).exists();
    let version = if marker("fake-bad-version") {
        PROTOCOL_VERSION + 100
    } else {
        PROTOCOL_VERSION
    };
    ch.send(&ControlToMaster::Hello { version }, &[])?;
    ch.send(&ControlToMaster::Ready, &[])?;
    log(
        &ch,
        format!("configured, datadir {}", settings.datadir.display()),
    )?;
    if marker("fake-crash") {
        std::process::exit(3);
    }
    loop {
        let r = match ch.recv::<MasterToControl>() {
            Ok(r) => r,
            Err(IpcError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        match r.msg {
            MasterToControl::Connection { peer, local } => {
                let mut fds = r.fds;
                if let Some(fd) = fds.pop() {
                    let mut s = TcpStream::from(fd);
                    let _ = writeln!(s, "fake-control {peer} {local}");
                }
                log(&ch, format!("{peer}: connection on {local}"))?;
                ch.send(&ControlToMaster::ConnectionDone, &[])?;
            }
            MasterToControl::Shutdown => {
                log(&ch, "shutdown".into())?;
                if !marker("fake-ignore-shutdown") {
                    return Ok(());
                }
            }
            other => log(&ch, format!("unexpected {other:?}"))?,
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(IpcError::MissingFd { fd }) => {
            eprintln!(
                "{}",
                ipc::fds::started_by_hand_line("owampd-control", "owampd", fd)
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("fake-control: {e}");
            ExitCode::from(1)
        }
    }
}
