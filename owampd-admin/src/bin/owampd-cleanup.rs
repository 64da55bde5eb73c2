//! `owampd-cleanup`: the daily removal of old session files; see owampd-cleanup(8).
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use owampd_admin::cleanup::{CleanupError, USAGE, clean, describe, open_files, parse_args};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("owampd-cleanup: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let run = || -> Result<(), CleanupError> {
        let held = open_files(Path::new("/proc"))?;
        let report = clean(&opts, SystemTime::now(), &held)?;
        if opts.verbose {
            describe(&report, opts.dry_run, &mut std::io::stdout().lock()).map_err(|source| {
                CleanupError::Io {
                    path: "stdout".into(),
                    source,
                }
            })?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("owampd-cleanup: {e}");
            ExitCode::from(1)
        }
    }
}
