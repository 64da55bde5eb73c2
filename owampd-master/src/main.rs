//! `owampd`, the master: the small privileged listener (docs/processes.md).
//!
//! Order: command line → config files → validate everything → bind → lock the pid file
//! → daemonize (unless -Z) → pid and info files → listen → signals → start owampd-control →
//! enter the sandbox → tell the launcher (or systemd, `NOTIFY_SOCKET`) we are ready →
//! accept/pass/supervise until TERM/INT/HUP. Any bad value stops it at start with one line and exit status 1. It
//! never links the protocol crate.
#![forbid(unsafe_code)]

mod cli;
mod listen;
mod logging;
mod notify;
mod pidfile;
mod setup;
mod supervisor;

use std::process::ExitCode;

use config::LogLevel;

use crate::logging::Log;

/// What ends the master before it runs. Before daemonizing it is printed on stderr as
/// `owampd: <error>`; after, it has been logged (`Logged`).
#[derive(Debug, thiserror::Error)]
enum MasterError {
    #[error("{0}")]
    Setup(#[from] setup::SetupError),
    #[error("{0}")]
    Listen(#[from] listen::ListenError),
    #[error("{0}")]
    Pid(#[from] pidfile::PidError),
    #[error("cannot daemonize: {0}")]
    Daemon(std::io::Error),
    #[error("{0}")]
    Supervise(#[from] supervisor::SuperviseError),
    #[error("{0}")]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("{0}")]
    Notify(#[from] notify::NotifyError),
    /// Already logged; the text is for the launcher, if one still waits.
    #[error("{0}")]
    Logged(String),
}

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("owampd: {}", e.line());
            return match e {
                cli::CliError::Usage(_) => {
                    eprint!("{}", cli::usage());
                    ExitCode::from(2)
                }
                cli::CliError::Operand(_) => ExitCode::from(1),
            };
        }
    };
    if cli.help {
        print!("{}", cli::usage());
        return ExitCode::SUCCESS;
    }
    if cli.version {
        print!("{}", buildinfo::version_output("owampd"));
        return ExitCode::SUCCESS;
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(MasterError::Logged(_)) => ExitCode::from(1),
        Err(e) => {
            eprintln!("owampd: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &cli::Cli) -> Result<(), MasterError> {
    // Whatever our parent leaked to us goes first, so that the sweep in
    // sandbox::enter later keeps exactly what we opened.
    sandbox::close_fds_above(2)?;
    let plan = setup::plan(cli)?;
    let listeners = listen::bind_srcnode(&plan.srcnode)?;
    let pid_file = pidfile::PidFile::lock(&plan.vardir)?;
    let mut log = Log::open(plan.facility, plan.foreground, plan.loglevel);
    for w in &plan.conf_warnings {
        log.master(LogLevel::Warning, w);
    }
    let notifier = notify::Notifier::from_env()?;

    // Without -Z, the launcher waits until we are ready, or prints why we are not.
    let mut launcher = if plan.foreground {
        None
    } else {
        Some(ipc::daemon::daemonize("owampd").map_err(MasterError::Daemon)?)
    };
    let result = serve(plan, listeners, pid_file, log, &mut launcher, notifier);
    // A failed start is told only now: with the listeners closed, control stopped and
    // the pid file removed, the launcher's exit status 1 means nothing is left running.
    if let (Some(l), Err(MasterError::Logged(reason))) = (launcher, &result) {
        l.failed(reason);
    }
    result
}

/// The daemon proper, from the pid file to the end; everything it is given is closed
/// or removed when it returns. `launcher` and `notifier` are told `ready` once the
/// master listens and is confined.
fn serve(
    plan: setup::Plan,
    listeners: Vec<std::net::TcpListener>,
    mut pid_file: pidfile::PidFile,
    mut log: Log,
    launcher: &mut Option<ipc::daemon::Readiness>,
    notifier: Option<notify::Notifier>,
) -> Result<(), MasterError> {
    let pid = std::process::id();
    log.set_pid(pid);
    log.master(
        LogLevel::Info,
        format!("owampd {} starting", buildinfo::version()),
    );
    if let Some(w) = sandbox::clock_warning() {
        log.master(LogLevel::Warning, w);
    }
    // From here on, errors go to the log (stderr is /dev/null unless -Z), and on to the
    // launcher's stderr while it still waits.
    let fatal = |log: &mut Log, e: MasterError| {
        log.master(LogLevel::Fatal, &e);
        MasterError::Logged(e.to_string())
    };
    if let Err(e) = sandbox::set_process_name("owampd [master]") {
        log.master(LogLevel::Warning, format!("process name: {e}"));
    }
    pid_file
        .write_pid(pid)
        .map_err(|e| fatal(&mut log, e.into()))?;
    pidfile::write_info(&plan.vardir, plan.settings.start_time_ntp, pid)
        .map_err(|e| fatal(&mut log, e.into()))?;
    listen::start_listening(&listeners).map_err(|e| fatal(&mut log, e.into()))?;
    if !plan.settings.tester_path.is_file() {
        log.master(
            LogLevel::Warning,
            format!(
                "{} not found: test sessions will fail",
                plan.settings.tester_path.display()
            ),
        );
    }
    for l in &listeners {
        if let Ok(a) = l.local_addr() {
            log.master(LogLevel::Info, format!("listening on {a}"));
        }
    }

    let sigfd = supervisor::signal_fd().map_err(|e| fatal(&mut log, e.into()))?;
    let seccomp = if plan.settings.seccomp_log_only {
        sandbox::SeccompMode::Log
    } else {
        sandbox::SeccompMode::Enforce
    };
    let mut master =
        supervisor::Master::new(log, listeners, sigfd, plan.control_path, plan.settings);
    master.spawn_control();
    // Keep every fd we hold; they were all opened after the first sweep, so they are
    // the lowest numbers above stdio.
    let mut held = master.raw_fds();
    held.push(pid_file.raw_fd());
    held.extend(master.log.raw_fd());
    held.extend(launcher.as_ref().map(ipc::daemon::Readiness::raw_fd));
    held.extend(notifier.as_ref().map(notify::Notifier::raw_fd));
    let opts = sandbox::SandboxOptions {
        keep_fds: held.into_iter().max().unwrap_or(2),
        seccomp,
        ..sandbox::SandboxOptions::default()
    };
    let entered = sandbox::enter(sandbox::Role::Master, &opts).map_err(MasterError::from);
    // Ready once listening, with the pid file written, confined, and the first control
    // ready with its data store open: a datadir the run-as user cannot write fails the
    // start here, rather than every connection later. The service manager hears it too
    // (sd_notify READY=1) when it asked to.
    let mut ready = false;
    let result = entered.and_then(|()| {
        master
            .run(|log| {
                ready = true;
                if let Some(l) = launcher.take() {
                    l.ready();
                }
                if let Some(n) = &notifier
                    && let Err(e) = n.ready(pid)
                {
                    log.master(LogLevel::Warning, e);
                }
            })
            .map_err(MasterError::from)
    });
    // A start that failed was never ready: its exit status says it all.
    if ready
        && let Some(n) = &notifier
        && let Err(e) = n.stopping()
    {
        master.log.master(LogLevel::Warning, e);
    }
    master.finish();
    if let Err(e) = &result {
        master.log.master(LogLevel::Fatal, e);
    }
    if let Err(e) = pid_file.remove() {
        master.log.master(LogLevel::Warning, e);
    }
    master.log.master(LogLevel::Info, "exiting");
    result.map_err(|e| MasterError::Logged(e.to_string()))
}
