//! powstream: continuous one-way measurements (powstream(1) of perfSONAR owamp 5.x), as
//! perfSONAR and pScheduler's latencybg test run it: one OWAMP session after another
//! with no gap between them, a `.owp` file and a `.sum` summary per session, a `.sum`
//! per `-N` sub-session, each named after its start and end times and announced on
//! stdout with `-p` once complete.
//!
//! - [`opts`]: the command line.
//! - [`stream`]: the sessions in sequence (double buffering, retries, signals) and
//!   everything written.
//! - [`session`]: one session on its own control connection and thread, built on the
//!   same control client, endpoints and Stop-Sessions exchange as owping.
//! - [`summary`]: the `.sum` text and the `--json` documents.
//! - [`files`]: names, atomic writes, the directory lock.
//! - [`log`]: syslog and stderr.

pub mod files;
pub mod log;
pub mod opts;
pub mod session;
pub mod stream;
pub mod summary;

use std::io::Write;

/// powstream's `main`: the exit status.
pub fn powstream_main(args: &[String]) -> i32 {
    match opts::parse(args) {
        Ok(opts::Command::Help) => {
            let _ = std::io::stderr().write_all(opts::usage().as_bytes());
            0
        }
        Ok(opts::Command::Version) => {
            print!("{}", buildinfo::version_output("powstream"));
            0
        }
        Ok(opts::Command::Run(o)) => {
            // Once per run, on stderr, as every client of ours warns.
            if let Some(w) = sandbox::clock_warning() {
                let _ = writeln!(std::io::stderr(), "powstream: {w}");
            }
            stream::run(*o)
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "powstream: {e} (powstream -h lists the options)"
            );
            1
        }
    }
}
