//! A stand-in for owampd-control, for the master's tests only (an [[example]], never
//! installed). It speaks the master ⇄ control protocol over fd 3. Its behaviour is
//! chosen by marker files in the datadir it is configured with (the master clears the
//! environment):
//! - `fake-bad-version`: answer Hello with another version;
//! - `fake-crash`: exit 3 right after Ready (the master must restart it);
//! - `fake-ignore-shutdown`: do not exit on Shutdown (the master must SIGKILL it);
//! - `fake-hold`: keep connections open and never report them done;
//! - `fake-start-fail`: say StartFailed (as a datadir it cannot write makes the real
//!   control say) instead of Ready, and exit 1;
//! - `fake-silent-exit`: exit 1 after Hello without a word.
//!
//! Each passed connection gets `fake-control <peer> <local>\n` and is closed (unless
//! `fake-hold`).
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::TcpStream;
use std::process::ExitCode;

use config::LogLevel;
use ipc::master::{ControlToMaster, LogRecord, MasterToControl, PROTOCOL_VERSION};
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
    if marker("fake-start-fail") {
        let reason = format!(
            "owampd-control: data store: create {}: Permission denied (os error 13)",
            settings.datadir.join("hierarchy").display()
        );
        ch.send(&ControlToMaster::StartFailed { reason }, &[])?;
        std::process::exit(1);
    }
    if marker("fake-silent-exit") {
        std::process::exit(1);
    }
    ch.send(&ControlToMaster::Ready, &[])?;
    log(
        &ch,
        format!("configured, datadir {}", settings.datadir.display()),
    )?;
    log(
        &ch,
        format!(
            "settings authmodes={} testports={:?} dieby={} maxcontrolsessions={} run_as={:?} loglevel={} tester={} controltimeout={}",
            settings.authmodes,
            settings.testports.map(|r| (r.low, r.high)),
            settings.dieby_s,
            settings.maxcontrolsessions,
            settings.run_as,
            settings.loglevel.as_str(),
            settings.tester_path.display(),
            settings.controltimeout_s
        ),
    )?;
    if marker("fake-crash") {
        std::process::exit(3);
    }
    let mut held = Vec::new();
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
                    if marker("fake-hold") {
                        held.push(s);
                    }
                }
                log(&ch, format!("{peer}: connection on {local}"))?;
                if !marker("fake-hold") {
                    ch.send(&ControlToMaster::ConnectionDone, &[])?;
                }
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
