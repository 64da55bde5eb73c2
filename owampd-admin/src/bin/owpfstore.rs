//! `owpfstore -f pfsfile [-n | -d] identity`: see owpfstore(1).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use owampd_admin::pfstore::{PfstoreError, USAGE, parse_args, run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(a) => a,
        Err(e @ PfstoreError::Usage(_)) => {
            eprintln!("owpfstore: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("owpfstore: {e}");
            return ExitCode::from(1);
        }
    };
    if args.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args, owping::passphrase::prompt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("owpfstore: {e}");
            ExitCode::from(1)
        }
    }
}
