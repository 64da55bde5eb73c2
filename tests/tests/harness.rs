//! The end-to-end harness itself: what every other test here relies on.

use e2e::run_client;
use std::path::PathBuf;
use std::time::Duration;

/// A pipe holds 64 KiB on Linux: a client that prints more must not stall on a full
/// pipe while the harness waits for it to exit (it would overrun its deadline and the
/// test would fail for the harness's sake). owstats -R of one small reference file 40
/// times prints about 95 KiB.
#[test]
fn a_client_printing_more_than_a_pipe_holds_does_not_hang() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../owamp/tests/data/reference/ref-lossy.owp")
        .display()
        .to_string();
    let one = run_client("owstats", &["-R", &file], Duration::from_secs(30));
    assert!(one.status.success(), "{one:?}");
    assert!(!one.stdout.is_empty());
    let mut args = vec!["-R"];
    args.extend(std::iter::repeat_n(file.as_str(), 40));
    let many = run_client("owstats", &args, Duration::from_secs(60));
    assert!(many.status.success(), "{:?}", many.status);
    assert!(
        many.stdout.len() > 64 * 1024,
        "only {} bytes: not past a pipe's capacity",
        many.stdout.len()
    );
    assert_eq!(many.stdout, one.stdout.repeat(40), "every copy, in order");
}
