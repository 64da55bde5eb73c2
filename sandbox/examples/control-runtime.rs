//! Runs the kind of work `owampd-control` does, with the libraries it uses, in the
//! process layout control uses: it forks the spawner first (which enters the spawner's
//! sandbox and serves requests, `ipc::spawner`), then enters the control sandbox and
//! runs a tokio current_thread runtime (epoll, eventfd, timers, the blocking pool's
//! threads), UDP test sockets and a Unix socketpair through tokio, data-store file
//! operations, and asks the spawner to start testers (here: sandbox-probe as a tester,
//! with its descriptors passed as control passes a tester's), one of which it kills
//! through its pidfd.
//!
//! Usage: `control-runtime DATA_DIR TESTER_PATH UID:GID`. Exit 0 when all of it worked;
//! a syscall missing from a policy ends a process by SIGSYS, which shows as a failure.
//! Driven by tests/probe.rs.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ipc::Channel;
use ipc::spawner::{Request, SpawnReply, fork_spawner, serve};
use sandbox::{Role, RunAs, SandboxOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(tester), Some(who)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: control-runtime DATA_DIR TESTER_PATH UID:GID");
        return ExitCode::from(2);
    };
    let run_as = who.split_once(':').and_then(|(u, g)| {
        Some(RunAs {
            uid: u.parse().ok()?,
            gid: g.parse().ok()?,
        })
    });
    let tester = PathBuf::from(tester);
    let spawner_opts = SandboxOptions {
        run_as,
        exec_paths: vec![tester.clone()],
        keep_fds: 3,
        ..SandboxOptions::default()
    };
    let program = tester.clone();
    let spawned = fork_spawner(3, 4, move |chan| {
        if let Err(e) = sandbox::enter(Role::Spawner, &spawner_opts) {
            eprintln!("control-runtime spawner: enter: {e}");
            return 3;
        }
        match serve(&chan, &program) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("control-runtime spawner: {e}");
                1
            }
        }
    });
    let (spawner, _pid) = match spawned {
        Ok(s) => s,
        Err(e) => {
            eprintln!("control-runtime: fork the spawner: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = SandboxOptions {
        run_as,
        data_dir: Some(PathBuf::from(dir)),
        // Fd 4: the channel to the spawner.
        keep_fds: 4,
        ..SandboxOptions::default()
    };
    if let Err(e) = sandbox::enter(Role::Control, &opts) {
        eprintln!("control-runtime: enter: {e}");
        return ExitCode::from(3);
    }
    // As control does: the runtime only after the sandbox.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("control-runtime: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(work(PathBuf::from(dir), spawner)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("control-runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn work(dir: PathBuf, spawner: Channel) -> Result<(), String> {
    // UDP test sockets, IPv4 and IPv6 (the latter only where ::1 exists).
    let a = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let b = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let to = b.local_addr().map_err(|e| e.to_string())?;
    a.send_to(b"owamp", to)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 8];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), b.recv_from(&mut buf))
        .await
        .map_err(|_| "recv timed out".to_owned())?
        .map_err(|e| format!("recv: {e}"))?;
    if buf.get(..n) != Some(b"owamp".as_slice()) {
        return Err("wrong datagram".into());
    }
    if let Ok(v6) = tokio::net::UdpSocket::bind("[::1]:0").await {
        v6.set_ttl(64).ok();
    }
    // An IPC-like socketpair through tokio.
    let (mut x, mut y) = tokio::net::UnixStream::pair().map_err(|e| format!("pair: {e}"))?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    x.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut got = [0u8; 5];
    y.read_exact(&mut got).await.map_err(|e| e.to_string())?;
    // Timers and the blocking pool (a new thread under the filter).
    tokio::time::sleep(Duration::from_millis(2)).await;
    let d = dir.clone();
    tokio::task::spawn_blocking(move || store_ops(&d))
        .await
        .map_err(|e| format!("join: {e}"))??;
    // Testers through the spawner, on the blocking pool (the channel is blocking here).
    let d = dir.clone();
    tokio::task::spawn_blocking(move || testers(&spawner, &d))
        .await
        .map_err(|e| format!("join: {e}"))?
}

/// Starts a tester probe doing `action` with the descriptors a tester gets: its report
/// stream at fd 3, UDP sockets at 4 and 6, a data file (in the data dir) at 5. Returns
/// our end of the report stream and the tester's pidfd.
fn start(
    spawner: &Channel,
    dir: &Path,
    action: &str,
) -> Result<(UnixStream, std::os::fd::OwnedFd), String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("pair: {e}"))?;
    let udp_a = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let udp_b = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let path = dir.join(format!("{action}.dat"));
    let data = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let req = Request::Spawn {
        argv0: "sandbox-probe".into(),
        env: vec![(
            "SANDBOX_PROBE".into(),
            format!("tester {action} --inherited"),
        )],
        targets: vec![3, 4, 5, 6],
    };
    spawner
        .send(
            &req,
            &[theirs.as_fd(), udp_a.as_fd(), data.as_fd(), udp_b.as_fd()],
        )
        .map_err(|e| format!("spawn request: {e}"))?;
    let reply = spawner
        .recv::<SpawnReply>()
        .map_err(|e| format!("spawn reply: {e}"))?;
    match reply.msg {
        SpawnReply::Spawned { .. } => {
            let pidfd = reply.fds.into_iter().next().ok_or("no pidfd")?;
            Ok((ours, pidfd))
        }
        SpawnReply::Failed { reason } => Err(format!("spawn: {reason}")),
    }
}

fn report(mut s: UnixStream) -> Result<String, String> {
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read report: {e}"))?;
    Ok(out)
}

fn testers(spawner: &Channel, dir: &Path) -> Result<(), String> {
    // A tester that runs its UDP exchange under the spawner's filter and its own.
    let (ours, _pidfd) = start(spawner, dir, "udp")?;
    let r = report(ours)?;
    if r != "ok\n" {
        return Err(format!("udp tester reported {r:?}"));
    }
    // A tester that would run 30 s, stopped with SIGKILL by the spawner through its
    // pidfd, as control stops one that does not end (control itself may not signal it:
    // Landlock's signal scope): the report stream closes without a word.
    let (ours, pidfd) = start(spawner, dir, "sleep")?;
    std::thread::sleep(Duration::from_millis(50));
    spawner
        .send(&Request::Kill, &[pidfd.as_fd()])
        .map_err(|e| format!("Kill: {e}"))?;
    let r = report(ours)?;
    if !r.is_empty() {
        return Err(format!("killed tester reported {r:?}"));
    }
    Ok(())
}

/// The data store's operations (hierarchy, emptying catalog/, atomic rename, listing).
fn store_ops(dir: &Path) -> Result<(), String> {
    let class = dir.join("hierarchy").join("regular");
    std::fs::create_dir_all(&class).map_err(|e| format!("mkdir: {e}"))?;
    let catalog = dir.join("catalog");
    std::fs::create_dir_all(catalog.join("left-behind")).map_err(|e| format!("mkdir: {e}"))?;
    std::fs::remove_dir_all(&catalog).map_err(|e| format!("rm -r: {e}"))?;
    std::fs::create_dir_all(&catalog).map_err(|e| format!("mkdir: {e}"))?;
    let tmp = class.join("abcd.owp.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("create: {e}"))?;
    f.write_all(b"OwA\0").map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    let fin = class.join("abcd.owp");
    std::fs::rename(&tmp, &fin).map_err(|e| format!("rename: {e}"))?;
    let mut back = Vec::new();
    std::fs::File::open(&fin)
        .and_then(|mut f| f.read_to_end(&mut back))
        .map_err(|e| format!("read: {e}"))?;
    let n = std::fs::read_dir(&class)
        .map_err(|e| e.to_string())?
        .count();
    let size = std::fs::symlink_metadata(&fin)
        .map_err(|e| e.to_string())?
        .len();
    std::fs::remove_file(&fin).map_err(|e| format!("unlink: {e}"))?;
    (back == b"OwA\0" && n == 1 && size == 4)
        .then_some(())
        .ok_or_else(|| "store read back differs".to_owned())
}
