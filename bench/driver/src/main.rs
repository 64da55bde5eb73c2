//! owamp-bench: measures the OWAMP test-session engines on loopback (see bench/README.md).
//!
//! Every subcommand prints one JSON object per line on stdout; `bench/run` turns them
//! into the performance table. Nothing here asserts a time: the figures are reported,
//! and the targets are compared by `bench/run`.
#![forbid(unsafe_code)]

mod args;
mod kdf;
mod maxrate;
mod records;
mod session;
#[cfg(feature = "setup")]
mod setup;
mod sleepcost;
mod summary;

use args::{Args, ArgsError};
use std::process::ExitCode;

const USAGE: &str = "\
usage: owamp-bench session [--mode open|authenticated|encrypted] [--count N]
                           [--rate PPS | --interval-us US] [--timeout S] [--padding N]
                           [--stall-ms MS]
       owamp-bench maxrate [--mode M] [--count N] [--start PPS] [--max PPS] [--timeout S]
       owamp-bench kdf [--count 2048] [--reps N]
       owamp-bench sleepcost [--interval-us 100] [--spin-us 0] [--count 20000]
       owamp-bench setup --server HOST:PORT [--mode M] [--user U --pfs FILE] [--reps N]
       owamp-bench owp FILE.owp...";

/// Errors of the command line as a whole.
#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Args(#[from] ArgsError),
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error(transparent)]
    Owp(#[from] owamp::owp::OwpError),
    #[error("clock_nanosleep: {0}")]
    Sleep(nix::errno::Errno),
    #[cfg(feature = "setup")]
    #[error(transparent)]
    Setup(#[from] Box<setup::SetupError>),
    #[error("unknown subcommand {0:?}")]
    Subcommand(String),
}

fn run(argv: &[String]) -> Result<(), MainError> {
    let Some((cmd, rest)) = argv.split_first() else {
        return Err(MainError::Subcommand(String::new()));
    };
    if cmd == "owp" {
        for p in rest {
            println!("{}", records::owp_file(std::path::Path::new(p))?);
        }
        return Ok(());
    }
    let mut a = Args::parse(rest)?;
    match cmd.as_str() {
        "session" => {
            let spec = a.session_spec(1000)?;
            a.finish()?;
            let r = session::run(spec)?;
            println!("{}", r.to_json());
        }
        "maxrate" => {
            let spec = a.session_spec(100_000)?;
            let start = a.f64_or("start", 100_000.0)?;
            let max = a.f64_or("max", 1_000_000.0)?;
            a.finish()?;
            println!("{}", maxrate::search(spec, start, max)?);
        }
        "kdf" => {
            let count = a.u32_or("count", 2048)?;
            let reps = a.u32_or("reps", 50)?;
            a.finish()?;
            println!("{}", kdf::measure(count, reps));
        }
        "sleepcost" => {
            let interval = a.f64_or("interval-us", 100.0)?;
            let spin = a.f64_or("spin-us", 0.0)?;
            let count = a.u32_or("count", 20_000)?;
            a.finish()?;
            // Clamped so a huge (finite) value cannot make from_secs_f64 panic.
            let us = |v: f64| std::time::Duration::from_secs_f64(v.clamp(0.0, 1e9) / 1e6);
            let v = sleepcost::measure(us(interval), us(spin), count).map_err(MainError::Sleep)?;
            println!("{v}");
        }
        #[cfg(feature = "setup")]
        "setup" => {
            let server = a.string("server")?;
            let mode = a.mode()?;
            let user = a.opt_string("user");
            let pfs = a.opt_string("pfs");
            let reps = a.u32_or("reps", 100)?;
            a.finish()?;
            let spec = setup::SetupSpec {
                server: &server,
                mode,
                user: user.as_deref(),
                pfs: pfs.as_deref().map(std::path::Path::new),
                reps,
            };
            println!("{}", setup::measure(&spec).map_err(Box::new)?);
        }
        other => return Err(MainError::Subcommand(other.to_string())),
    }
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("owamp-bench: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
