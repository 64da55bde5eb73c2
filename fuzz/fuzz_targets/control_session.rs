//! The server's whole OWAMP-Control connection (owampd-control `serve_connection`) fed
//! a hostile client's byte stream: greeting, Set-Up-Response, then any commands
//! (Request-Session, Start-Sessions, Stop-Sessions, Fetch-Session, junk) until EOF.
//!
//! The fuzzer cannot forge a Token for an unknown random challenge, so beyond the
//! Set-Up-Response it explores open mode, where HMAC fields are not checked (protocol.md §1.5):
//! that is the whole command state machine, policy, port allocation, the data store and
//! the tester exchange (with scripted fake testers, as in control's own flow tests).
//! Tokio's clock is paused and advances by itself, so timeouts cost nothing.
//!
//! Invariants: no panic; the connection always ends once the client's bytes run out
//! (a hang is a libFuzzer timeout); every test-session guard is released afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owampd_control::session::serve_connection;
use owampd_fuzz::control::{paused_runtime, server_ctx};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = server_ctx(dir.path());
    let rt = paused_runtime();
    let input = data.to_vec();
    rt.block_on(async {
        let (server_end, client_end) = tokio::io::duplex(1 << 16);
        let (mut rd, mut wr) = tokio::io::split(client_end);
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = rd.read_to_end(&mut sink).await;
        });
        let feed = tokio::spawn(async move {
            let _ = wr.write_all(&input).await;
            let _ = wr.shutdown().await;
            // Keep the write half alive until the server is done with the stream.
            wr
        });
        let peer = "127.0.0.1:40000".parse().expect("peer");
        serve_connection(server_end, peer, ctx.clone()).await;
        let _ = feed.await;
        let _ = drain.await;
    });
    drop(rt);
    // Every guard of the connection is gone: no test session is still counted.
    assert_eq!(ctx.policy.test_sessions(), 0, "test session slot leaked");
});
