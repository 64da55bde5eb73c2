//! The tester refuses to run without the fds control gives it (docs/processes.md "IPC": a
//! child refuses to run when started by hand).

use std::process::{Command, Stdio};

#[test]
fn refuses_to_run_by_hand() {
    let out = Command::new(env!("CARGO_BIN_EXE_owampd-tester"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owampd-tester"), "{err}");
    assert!(err.contains("owampd-control"), "{err}");
    assert!(err.contains("fd 3"), "{err}");
}
