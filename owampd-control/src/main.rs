//! `owampd-control`: started by `owampd` with fd 3 (docs/processes.md). It takes `Hello`
//! and `Configure` from the master, forks its spawner (which starts every tester, and
//! enters a sandbox of its own), enters its sandbox, rebuilds the data store, and only
//! then starts its single-threaded async runtime, which serves every control connection
//! the master passes over fd 3.
#![forbid(unsafe_code)]

use config::LogLevel;
use ipc::Channel;
use ipc::fds::{IPC_FD, SPAWNER_FD};
use ipc::master::{ControlSettings, ControlToMaster, LogRecord, MasterToControl, PROTOCOL_VERSION};
use owamp::{ModeSet, Num64};
use owampd_control::confdir::ConfigDirectory;
use owampd_control::log::{LogSink, Logger};
use owampd_control::policy::{ClassTree, Policy};
use owampd_control::ports::PortAllocator;
use owampd_control::session::{ServerConfig, ServerCtx, serve_connection_until};
use owampd_control::shutdown::{Deadlines, ShutdownTrigger};
use owampd_control::store::Store;
use owampd_control::testers::{ProcessLauncher, SpawnerClient, async_channel, recv_any};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// Log lines go to the master, the only process that writes syslog/stderr.
struct MasterSink {
    chan: Arc<AsyncFd<Channel>>,
}

impl LogSink for MasterSink {
    fn log(&self, level: LogLevel, message: String) {
        // A full socket buffer drops the line rather than stalling every connection.
        let _ = self
            .chan
            .get_ref()
            .send(&ControlToMaster::Log(LogRecord { level, message }), &[]);
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    // The master may already be gone; stderr is what is left.
    eprintln!("owampd-control: {msg}");
    ExitCode::FAILURE
}

/// A failure between the handshake and `Ready`: the master is told why (a daemon's
/// stderr is /dev/null, and its launcher prints this line), then we exit.
fn start_failed(chan: &Channel, msg: impl std::fmt::Display) -> ExitCode {
    let reason = format!("owampd-control: {msg}");
    let _ = chan.send(
        &ControlToMaster::StartFailed {
            reason: reason.clone(),
        },
        &[],
    );
    eprintln!("{reason}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    // Only the master acts on a stop signal (ipc::stop): one sent to every process at
    // once must not end sessions before their Stop-Sessions. The spawner forked below,
    // and every thread of the runtime, inherit the mask.
    if let Err(e) = ipc::stop::hold_stop_signals() {
        return fail(format!("blocking the stop signals: {e}"));
    }
    let fd = match ipc::fds::take_inherited(IPC_FD) {
        Ok(fd) => fd,
        Err(_) => {
            eprintln!(
                "{}",
                ipc::fds::started_by_hand_line("owampd-control", "owampd", IPC_FD)
            );
            return ExitCode::FAILURE;
        }
    };
    let chan = Channel::from_owned(fd);
    let settings = match handshake(&chan) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let run_as = settings
        .run_as
        .map(|(uid, gid)| sandbox::RunAs { uid, gid });
    let seccomp = if settings.seccomp_log_only {
        sandbox::SeccompMode::Log
    } else {
        sandbox::SeccompMode::Enforce
    };
    let _ = sandbox::set_process_name("owampd-control");
    // The spawner, forked while this process holds nothing but its master channel and
    // is single-threaded: it may execute the tester binary and nothing else, and this
    // process, once confined, may execute nothing at all.
    let spawner_opts = sandbox::SandboxOptions {
        run_as,
        exec_paths: vec![settings.tester_path.clone()],
        keep_fds: IPC_FD,
        seccomp,
        ..sandbox::SandboxOptions::default()
    };
    let tester = settings.tester_path.clone();
    let spawner = ipc::spawner::fork_spawner(IPC_FD, SPAWNER_FD, move |chan| {
        let _ = sandbox::set_process_name("owampd-spawner");
        if let Err(e) = sandbox::enter(sandbox::Role::Spawner, &spawner_opts) {
            eprintln!("owampd-spawner: sandbox: {e}");
            return 1;
        }
        match ipc::spawner::serve(&chan, &tester) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("owampd-spawner: {e}");
                1
            }
        }
    });
    let spawner = match spawner {
        Ok((chan, _pid)) => chan,
        Err(e) => return fail(format!("spawner: {e}")),
    };
    // Confined before anything reads untrusted input, and while still single-threaded:
    // the data dir rw, nothing else; no exec, no fork.
    let opts = sandbox::SandboxOptions {
        run_as,
        data_dir: Some(settings.datadir.clone()),
        keep_fds: SPAWNER_FD,
        seccomp,
        ..sandbox::SandboxOptions::default()
    };
    if let Err(e) = sandbox::enter(sandbox::Role::Control, &opts) {
        return start_failed(&chan, format!("sandbox: {e}"));
    }
    let tree = match ClassTree::from_limits(&settings.limits) {
        Ok(t) => t,
        Err(e) => return start_failed(&chan, e),
    };
    // Opened before `Ready`, so that a datadir the run-as user cannot write fails the
    // daemon's start (its launcher exits 1 with this line) instead of every session.
    let (store, found, removed) = match Store::open_reporting(&settings.datadir, &tree) {
        Ok(x) => x,
        Err(e) => return start_failed(&chan, e),
    };
    let policy = Policy::new(tree, settings.diskfudge);
    for (_, class, size) in &found {
        let _ = policy.add_existing_disk(*class, *size);
    }
    if let Err(e) = chan.set_nonblocking(true) {
        return start_failed(&chan, e);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return start_failed(&chan, format!("runtime: {e}")),
    };
    let directory = ConfigDirectory {
        limits: settings.limits.clone(),
        pfs: settings.pfs.clone(),
    };
    rt.block_on(serve(
        chan,
        spawner,
        settings,
        directory,
        store,
        policy,
        found.len(),
        removed,
    ))
}

/// `Hello` both ways, then `Configure` (blocking: nothing else is running yet).
fn handshake(chan: &Channel) -> Result<ControlSettings, String> {
    match chan
        .recv::<MasterToControl>()
        .map_err(|e| e.to_string())?
        .msg
    {
        MasterToControl::Hello { version } => {
            ipc::master::check_hello(version).map_err(|e| e.to_string())?
        }
        other => return Err(format!("expected Hello from the master, got {other:?}")),
    }
    chan.send(
        &ControlToMaster::Hello {
            version: PROTOCOL_VERSION,
        },
        &[],
    )
    .map_err(|e| e.to_string())?;
    match chan
        .recv::<MasterToControl>()
        .map_err(|e| e.to_string())?
        .msg
    {
        MasterToControl::Configure(s) => Ok(*s),
        other => Err(format!("expected Configure from the master, got {other:?}")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    chan: Channel,
    spawner: Channel,
    settings: ControlSettings,
    directory: ConfigDirectory,
    store: Store,
    policy: Policy,
    nfiles: usize,
    removed: Vec<std::path::PathBuf>,
) -> ExitCode {
    let chan = match async_channel(chan) {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(e),
    };
    let log = Logger::new(
        Arc::new(MasterSink { chan: chan.clone() }),
        settings.loglevel,
    );
    // Without its spawner control cannot start a test: it exits, and the master starts
    // a new control (and with it a new spawner); running testers finalise what they have
    // when they see control's end of their channel close.
    let on_loss = {
        let log = log.clone();
        move |why: String| {
            log.error(format!("the tester spawner is gone ({why}): restarting"));
            std::process::exit(1);
        }
    };
    let spawner = match SpawnerClient::start(spawner, on_loss) {
        Ok(s) => s,
        Err(e) => return fail(format!("spawner: {e}")),
    };
    for path in &removed {
        log.info(format!(
            "removed {}: empty (a session accepted but never started)",
            path.display()
        ));
    }
    let ctx = Arc::new(ServerCtx {
        config: ServerConfig {
            authmodes: ModeSet(settings.authmodes),
            control_timeout: (settings.controltimeout_s > 0)
                .then(|| Duration::from_secs(u64::from(settings.controltimeout_s))),
            pbkdf2_count: settings.pbkdf2_count,
            end_delay_s: settings.enddelay_s,
            start_time: Num64(settings.start_time_ntp),
            debug_time_offset: settings.debug_time_offset,
        },
        directory: Arc::new(directory),
        policy,
        store,
        ports: PortAllocator::new(settings.testports.map(|r| (r.low, r.high))),
        log: log.clone(),
        testers: Arc::new(ProcessLauncher {
            spawner,
            seccomp_log_only: settings.seccomp_log_only,
            starting: owampd_control::admission::StartingTesters::for_this_host(),
        }),
    });
    log.info(format!(
        "ready: datadir {}, {nfiles} stored session(s)",
        settings.datadir.display()
    ));
    if let Err(e) = chan.get_ref().send(&ControlToMaster::Ready, &[]) {
        return fail(e);
    }
    let (trigger, shutdown) = ShutdownTrigger::new();
    // Every connection task holds a clone; `recv` returns `None` once all are gone.
    let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let r = match recv_any::<MasterToControl>(&chan).await {
            Ok(r) => r,
            Err(ipc::IpcError::Closed) => return ExitCode::SUCCESS,
            Err(e) => {
                log.error(format!("master channel: {e}"));
                return ExitCode::FAILURE;
            }
        };
        match r.msg {
            MasterToControl::Connection { peer, local: _ } => {
                let Some(fd) = r.fds.into_iter().next() else {
                    log.warn(format!("connection from {peer} came without its socket"));
                    continue;
                };
                let (stream, peer) = match owampd_control::handover::adopt(fd, peer) {
                    Ok(x) => x,
                    Err(e) => {
                        log.warn(e.to_string());
                        continue;
                    }
                };
                let alive = alive.clone();
                let ctx = ctx.clone();
                let chan = chan.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    serve_connection_until(stream, peer, ctx, shutdown).await;
                    let _ = chan.get_ref().send(&ControlToMaster::ConnectionDone, &[]);
                    drop(alive);
                });
            }
            MasterToControl::Shutdown => {
                // The master kills us `dieby` seconds after it sent this: running test
                // sessions end with Stop-Sessions within that time (crate::shutdown).
                let dieby = Duration::from_secs(u64::from(settings.dieby_s));
                let deadlines = Deadlines::from_dieby(tokio::time::Instant::now(), dieby);
                log.info(format!(
                    "shutting down: running sessions end with Stop-Sessions within {} s",
                    settings.dieby_s
                ));
                trigger.begin(deadlines);
                drop(alive);
                if tokio::time::timeout_at(deadlines.exit, all_ended.recv())
                    .await
                    .is_err()
                {
                    log.warn("connections still open at the end of dieby: closed");
                }
                return ExitCode::SUCCESS;
            }
            other => {
                log.warn(format!("unexpected message from the master: {other:?}"));
            }
        }
    }
}
