//! Helpers for the end-to-end tests in `tests/tests/`: find the workspace's binaries,
//! start `owampd` on loopback, run clients, and gate the tests that need root.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the workspace's binaries: the test executable lives in
/// `target/<profile>/deps/`, the binaries one level up.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let deps = exe.parent().expect("test binary has a parent directory");
    deps.parent()
        .expect("deps has a parent directory")
        .to_path_buf()
}

/// The path of one of the workspace's binaries; fails with the command to run when the
/// workspace has not been built (`cargo test` only builds the test's own package).
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not found: build the workspace first (cargo build --workspace --all-targets)",
        p.display()
    );
    p
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Gate for tests that need root. Returns false (after saying why) when the test should
/// be skipped; under `CI=true` a missing root is a failure, never a silent pass.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and CI=true: refusing to skip");
    }
    eprintln!("{test}: SKIPPED: needs root (run the suite as root to include it)");
    false
}

/// Moves the calling thread (and the processes it starts) into a fresh network namespace
/// with only loopback, brought up. Needs root. Each test runs on its own thread, so this
/// isolates just that test.
pub fn enter_private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip link set lo up");
    assert!(st.success(), "ip link set lo up failed");
}

/// A running `owampd` for one test; killed (and its process group with it) on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl Server {
    /// Starts `owampd -Z -S 127.0.0.1:<port> -d <tmp>/data -R <tmp>` plus `extra` args and
    /// waits until it accepts connections.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Server::start_in(dir, "127.0.0.1", free_port(), extra)
    }

    /// Like [`Server::start`], with a given directory, host and port.
    pub fn start_in(dir: tempfile::TempDir, host: &str, port: u16, extra: &[&str]) -> Server {
        Server::start_env(dir, host, port, extra, &[])
    }

    /// Like [`Server::start_in`], with extra environment variables for owampd.
    pub fn start_env(
        dir: tempfile::TempDir,
        host: &str,
        port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("create datadir");
        let stderr_path = dir.path().join("owampd.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let node = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut cmd = Command::new(bin("owampd"));
        cmd.arg("-Z")
            .args(["-S", &node])
            .arg("-d")
            .arg(&data)
            .arg("-R")
            .arg(dir.path())
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // As root (CI), owampd refuses to run without -U unless told -f (owampd(8)).
        if is_root() && !extra.contains(&"-U") {
            cmd.arg("-f");
        }
        let child = cmd.spawn().expect("spawn owampd");
        let addr: SocketAddr = node.parse().expect("socket address");
        let mut server = Server {
            child,
            addr,
            dir,
            stderr_path,
        };
        server.wait_ready(Duration::from_secs(20));
        server
    }

    fn wait_ready(&mut self, limit: Duration) {
        let (child, addr) = (&mut self.child, self.addr);
        let mut exited = None;
        let ready = wait_for(limit, || {
            exited = child.try_wait().ok().flatten();
            exited.is_some()
                || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if let Some(st) = exited {
            panic!("owampd exited early with {st}: {}", self.stderr());
        }
        assert!(
            ready,
            "owampd did not accept connections within {limit:?}: {}",
            self.stderr()
        );
    }

    /// The pid of the control process (the master's only child), waiting for it to be
    /// started: the master listens before it spawns control.
    pub fn control_pid(&self) -> u32 {
        let mut kids = Vec::new();
        let found = wait_for(Duration::from_secs(10), || {
            kids = child_pids(self.child.id());
            kids.len() == 1
        });
        assert!(
            found,
            "the master has children {kids:?}, want 1 (control): {}",
            self.stderr()
        );
        kids[0]
    }

    /// The spawner: control's one child, which starts every tester.
    pub fn spawner_pid(&self) -> u32 {
        let control = self.control_pid();
        let mut kids = Vec::new();
        let found = wait_for(Duration::from_secs(10), || {
            kids = child_pids(control);
            kids.len() == 1
        });
        assert!(found, "control has children {kids:?}, want 1 (the spawner)");
        kids[0]
    }

    /// The testers running now (the spawner's children).
    pub fn tester_pids(&self) -> Vec<u32> {
        child_pids(self.spawner_pid())
    }

    /// `host:port` for owping's command line.
    pub fn target(&self) -> String {
        match self.addr {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        }
    }

    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The stored file of session `sid_hex` (32 hex digits), found under the data
    /// store's `hierarchy/`, whichever class directory holds it.
    pub fn session_file(&self, sid_hex: &str) -> Option<PathBuf> {
        let name = format!("{sid_hex}.owp");
        files_under(&self.datadir().join("hierarchy"))
            .into_iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_str() == Some(name.as_str()))
            })
    }

    /// What the server has written to stderr so far (with -Z its log lines go there).
    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Sends SIGTERM and waits for the exit, at most `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut status = None;
        wait_for(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.terminate(Duration::from_secs(10));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a client binary with a deadline; returns its output. A client that overruns
/// is killed and the test fails with what it had printed.
pub fn run_client(name: &str, args: &[&str], limit: Duration) -> Output {
    run_client_in(None, name, args, limit)
}

/// Like [`run_client`], in a working directory.
pub fn run_client_in(cwd: Option<&Path>, name: &str, args: &[&str], limit: Duration) -> Output {
    let mut cmd = Command::new(bin(name));
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    run_with_deadline(cmd.args(args), &format!("{name} {args:?}"), limit)
}

/// Runs `cmd` with stdin from /dev/null, collecting both output streams as it runs: a
/// thread reads each pipe, so a child that prints more than a pipe holds (64 KiB) is
/// never blocked on a full pipe while we wait for it to exit. Past `limit` the child is
/// killed and the test fails with what it had printed.
pub fn run_with_deadline(cmd: &mut Command, what: &str, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let mut status = None;
    let exited = wait_for(limit, || {
        status = child
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for {what}: {e}"));
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The pipes close when the child (and anything it left holding them) is gone.
    let out = Output {
        status: status.unwrap_or_else(|| child.wait().expect("reap the killed child")),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(
        exited,
        "{what} overran {limit:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Poll `f` every 50 ms until it holds or `limit` passes; one last try at the end.
/// For state another process reaches in its own time (a sandbox entered, a descriptor
/// closed): a fixed sleep would be too short on a loaded machine.
pub fn wait_for<F: FnMut() -> bool>(limit: Duration, mut f: F) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Open file descriptors of a process, from /proc (for leak checks).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Children (direct) of a process, from /proc.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                // Field 4 (ppid) follows the parenthesised command name.
                if let Some(rest) = stat.rsplit_once(") ").map(|x| x.1) {
                    let mut it = rest.split_whitespace();
                    let _state = it.next();
                    if it.next().and_then(|v| v.parse::<u32>().ok()) == Some(pid) {
                        out.push(p);
                    }
                }
            }
        }
    }
    out
}
pub mod raw;

/// The values of one key in `owping -M` output, in order (one per session).
pub fn machine_values(stdout: &str, key: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}\t")).map(str::to_string))
        .collect()
}

/// Runs owping with `args` (at most `limit`), asserts that it succeeded, and returns its
/// stdout; a failure shows both streams.
pub fn owping_ok(args: &[&str], limit: Duration) -> String {
    let out = run_client("owping", args, limit);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "owping {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every `.owp` file under `dir`, recursively (a data directory's hierarchy).
pub fn owp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(owp_files(&p));
        } else if p.extension().is_some_and(|x| x == "owp") {
            out.push(p);
        }
    }
    out
}

/// Regular files under `dir`, recursively, never following a symbolic link.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            match p.symlink_metadata() {
                Ok(m) if m.is_dir() => out.extend(files_under(&p)),
                Ok(m) if m.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}
