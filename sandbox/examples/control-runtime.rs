//! Runs the kind of work `owampd-control` does, with the libraries it uses, under the
//! control sandbox: a tokio current_thread runtime (epoll, eventfd, timers, the blocking
//! pool's threads), UDP test sockets and a Unix socketpair through tokio, data-store file
//! operations, and a tester started with std::process::Command with a `pre_exec` that
//! moves descriptors into place (the fork path, as control will use for fds 3/4/5).
//!
//! Usage: `control-runtime DATA_DIR TESTER_PATH UID:GID`. Exit 0 when all of it worked;
//! a missing syscall in the control policy ends it by SIGSYS. Driven by tests/probe.rs.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

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
    let opts = SandboxOptions {
        run_as,
        data_dir: Some(PathBuf::from(dir)),
        exec_paths: vec![PathBuf::from(tester)],
        keep_fds: 2,
        max_file_size: None,
        seccomp: sandbox::SeccompMode::Enforce,
    };
    if let Err(e) = sandbox::enter(Role::Control, &opts) {
        eprintln!("control-runtime: enter: {e}");
        return ExitCode::from(3);
    }
    // As control does: the runtime only after the sandbox (design.md "Processes").
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
    match rt.block_on(work(PathBuf::from(dir), PathBuf::from(tester))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("control-runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn work(dir: PathBuf, tester: PathBuf) -> Result<(), String> {
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
    spawn_tester(&tester, &dir)?;
    stop_tester(&tester, &dir)
}

/// Starts a tester that would run for 30 s and stops it with SIGKILL, as control does
/// when a session is aborted: seccomp pins kill(2) to TERM/KILL/0, and Landlock's signal
/// scope must still let control reach its own child.
fn stop_tester(tester: &std::path::Path, dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(tester)
        .args(["tester", "sleep", "--data-dir"])
        .arg(dir)
        .env_clear()
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    std::thread::sleep(Duration::from_millis(50));
    child.kill().map_err(|e| format!("kill: {e}"))?;
    let st = child.wait().map_err(|e| format!("wait: {e}"))?;
    (st.signal() == Some(libc::SIGKILL))
        .then_some(())
        .ok_or_else(|| format!("stopped tester ended {st:?}"))
}

/// The data store's operations (hierarchy, catalog symlinks, atomic rename, listing).
fn store_ops(dir: &std::path::Path) -> Result<(), String> {
    let class = dir.join("hierarchy").join("regular");
    std::fs::create_dir_all(&class).map_err(|e| format!("mkdir: {e}"))?;
    let catalog = dir.join("catalog");
    std::fs::create_dir_all(&catalog).map_err(|e| format!("mkdir: {e}"))?;
    let tmp = class.join("abcd.owp.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("create: {e}"))?;
    f.write_all(b"OwA\0").map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    let fin = class.join("abcd.owp");
    std::fs::rename(&tmp, &fin).map_err(|e| format!("rename: {e}"))?;
    let link = catalog.join("abcd.owp");
    std::os::unix::fs::symlink(&fin, &link).map_err(|e| format!("symlink: {e}"))?;
    let target = std::fs::read_link(&link).map_err(|e| format!("readlink: {e}"))?;
    let mut back = Vec::new();
    std::fs::File::open(&target)
        .and_then(|mut f| f.read_to_end(&mut back))
        .map_err(|e| format!("read: {e}"))?;
    let n = std::fs::read_dir(&catalog)
        .map_err(|e| e.to_string())?
        .count();
    let size = std::fs::symlink_metadata(&link)
        .map_err(|e| e.to_string())?
        .len();
    std::fs::remove_file(&link).map_err(|e| format!("unlink: {e}"))?;
    (back == b"OwA\0" && n == 1 && size > 0)
        .then_some(())
        .ok_or_else(|| "store read back differs".to_owned())
}

/// Starts the tester (here: sandbox-probe as a tester) via the fork path, with a
/// pre_exec hook as control uses to set up fds, and waits for it.
fn spawn_tester(tester: &std::path::Path, dir: &std::path::Path) -> Result<(), String> {
    let mut cmd = Command::new(tester);
    // The probe's scratch file (its fd 5 stand-in) can only be created in the data dir.
    cmd.args(["tester", "udp", "--data-dir"])
        .arg(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: the hook runs in the forked child before exec and only calls
    // async-signal-safe functions (dup2 of stderr onto itself, i.e. a no-op layout step).
    unsafe {
        cmd.pre_exec(|| {
            if libc::dup2(2, 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let st = cmd.status().map_err(|e| format!("spawn: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("tester ended {st:?}"))
}
