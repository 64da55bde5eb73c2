//! Control refuses to run without its IPC channel from the master (docs/processes.md "IPC").

use std::process::{Command, Stdio};

#[test]
fn refuses_to_run_by_hand() {
    let out = Command::new(env!("CARGO_BIN_EXE_owampd-control"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owampd-control"), "{err}");
    assert!(err.contains("fd 3"), "{err}");
}
