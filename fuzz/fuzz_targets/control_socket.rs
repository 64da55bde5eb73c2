//! The control process's side of a client connection, fed through a real socket the way
//! the master hands it over: a loopback TCP connection is accepted, its socket travels
//! as `MasterToControl::Connection` with the fd over a real `SOCK_SEQPACKET` channel
//! (`ipc::Channel`), control takes it with `owampd_control::handover::adopt` (as
//! `main.rs` does) and serves it with `serve_connection`. A client task in the same
//! runtime writes the input to its end of the TCP connection.
//!
//! Unlike `control_session` (an in-memory pipe), this covers the kernel's read path:
//! bytes split into several TCP reads at the client's write boundaries, a peer that
//! half-closes or keeps its side open until control's timeout ends the connection, a
//! peer that never reads (control's write timeout, against a small receive buffer), and
//! the authenticated and encrypted modes, where the target plays a real client: it reads
//! the greeting, answers with a Token for the known user, and seals each of its messages
//! with the session keys, so the command state machine is reached behind the crypto.
//!
//! Input: `flags`, `chunk`, then the payload.
//! - `flags` bits 0–1: 1 = authenticated, 2 = encrypted, else open mode (the payload
//!   is then the raw stream from the Set-Up-Response on, as in `control_session`).
//!   Bit 2: keep the write side open at the end (no EOF). Bit 3: read nothing (but
//!   the greeting in the secure modes).
//! - `chunk`: the payload's bytes per write (0 = all in one write); open mode only.
//! - Open mode: 15 octets `@@accepted-sid@` and an index `n` in the payload stand for
//!   the SID of the `n`-th session control accepted with itself as the receiver (a
//!   random SID the fuzzer could never guess): the client waits for that Accept-Session
//!   and writes the SID in their place, so Stop-Sessions and Fetch-Session can name it.
//! - Secure modes: the payload is messages, each a header octet `h` and then
//!   `(h & 0x3f) + 1` blocks of plaintext (zero-padded at the end of the input), sealed
//!   with their HMAC block; `h & 0x80` flips a bit of that HMAC block.
//!
//! What it does not cover: the real testers (scripted fakes answer, see
//! `owampd_fuzz::control`), the sandbox, and real time (tokio's clock is paused and
//! advances by itself whenever everything waits, so control's timeouts fire at once).
//!
//! Invariants: no panic; the connection always ends (a hang is a libFuzzer timeout);
//! every connection guard is released afterwards.
#![no_main]

use ipc::Channel;
use ipc::master::MasterToControl;
use libfuzzer_sys::fuzz_target;
use owamp::crypto::{self, ControlCipher, SessionKeys, Token};
use owamp::wire::{ServerGreeting, SetupResponse};
use owampd_control::handover;
use owampd_control::session::serve_connection;
use owampd_fuzz::control::{PASSPHRASE, USER, paused_runtime, server_ctx};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// One listener for the whole run: a connection per input, accepted here.
fn listener() -> &'static TcpListener {
    static L: OnceLock<TcpListener> = OnceLock::new();
    L.get_or_init(|| TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
}

/// The master's channel to control.
fn master_channel() -> &'static (Channel, Channel) {
    static C: OnceLock<(Channel, Channel)> = OnceLock::new();
    C.get_or_init(|| Channel::pair().expect("socketpair"))
}

struct Input<'a> {
    mode: u32,
    hold_open: bool,
    never_read: bool,
    chunk: usize,
    payload: &'a [u8],
}

/// Stands for an accepted SID in an open-mode payload (followed by its index).
const SID_MARK: &[u8; 15] = b"@@accepted-sid@";

fn parse(data: &[u8]) -> Input<'_> {
    let flags = data.first().copied().unwrap_or(0);
    let chunk = data.get(1).copied().unwrap_or(0) as usize;
    Input {
        mode: match flags & 3 {
            1 => 2,
            2 => 4,
            _ => 1,
        },
        hold_open: flags & 4 != 0,
        never_read: flags & 8 != 0,
        chunk,
        payload: data.get(2..).unwrap_or(&[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = parse(data);
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = server_ctx(dir.path());
    let rt = paused_runtime();
    rt.block_on(async {
        let addr = listener().local_addr().expect("listener address");
        let sock = TcpSocket::new_v4().expect("client socket");
        if input.never_read {
            // Small, so that control's replies fill it and its writes must time out.
            let _ = sock.set_recv_buffer_size(4096);
        }
        let client = sock.connect(addr).await.expect("connect");
        // Blocking: the kernel queues the connection once the handshake is done.
        let (server_std, peer) = listener().accept().expect("accept");
        // As the master: the fd rides with the Connection message, then its copy closes.
        let (master, control) = master_channel();
        let msg = MasterToControl::Connection { peer, local: addr };
        master
            .send(&msg, &[server_std.as_fd()])
            .expect("send the connection");
        drop(server_std);
        let got = control
            .recv::<MasterToControl>()
            .expect("receive the connection");
        let announced: SocketAddr = match got.msg {
            MasterToControl::Connection { peer, .. } => peer,
            other => panic!("sent Connection, received {other:?}"),
        };
        let fd: OwnedFd = got.fds.into_iter().next().expect("the socket came along");
        let (stream, peer) = handover::adopt(fd, announced).expect("adopt the socket");

        let _ = client.set_zero_linger();
        let (mut rd, mut wr) = client.into_split();
        let (greeting_tx, greeting_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let secure = input.mode != 1;
        let never_read = input.never_read;
        let (sids_tx, sids_rx) = tokio::sync::watch::channel(Vec::<[u8; 16]>::new());
        let reader = tokio::spawn(async move {
            if secure {
                // The greeting's challenge, salt and count make the Token; the rest of
                // what control sends is not checked.
                let mut greeting = vec![0u8; ServerGreeting::LEN];
                if rd.read_exact(&mut greeting).await.is_ok() {
                    let _ = greeting_tx.send(greeting);
                }
            } else {
                drop(greeting_tx);
            }
            if never_read {
                // Hold the read side, unread, until control is done with the connection.
                return rd;
            }
            let mut seen = Vec::new();
            let mut sink = [0u8; 4096];
            while let Ok(n) = rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
                if !secure {
                    seen.extend_from_slice(&sink[..n]);
                    let sids = accepted_sids(&seen);
                    if sids.len() > sids_tx.borrow().len() {
                        sids_tx.send_replace(sids);
                    }
                }
            }
            drop(sids_tx);
            rd
        });
        let payload = input.payload.to_vec();
        let (mode, chunk, hold_open) = (input.mode, input.chunk, input.hold_open);
        let writer = tokio::spawn(async move {
            if mode == 1 {
                write_open(&mut wr, &payload, chunk, sids_rx).await;
            } else if let Ok(greeting) = greeting_rx.await {
                write_secure(&mut wr, mode, &greeting, &payload).await;
            }
            if !hold_open {
                let _ = wr.shutdown().await;
            }
            // Keep the write half (and with it the connection) until control is done.
            wr
        });
        serve_connection(stream, peer, ctx.clone()).await;
        let wr = writer.await.expect("writer task");
        let rd = reader.await.expect("reader task");
        // Closed with a reset (zero linger): no TIME_WAIT per input.
        drop(rd.reunite(wr));
    });
    drop(rt);
    // Every guard of the connection is gone: no test session is still counted.
    assert_eq!(ctx.policy.test_sessions(), 0, "test session slot leaked");
});

/// The open-mode payload, `chunk` bytes per write, yielding in between so each write can
/// reach control as a read of its own; each SID mark becomes the SID it stands for, once
/// control has sent it (or the mark as is, if it never does).
async fn write_open(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    payload: &[u8],
    chunk: usize,
    mut sids: tokio::sync::watch::Receiver<Vec<[u8; 16]>>,
) {
    let mut rest = payload;
    while !rest.is_empty() {
        // A mark cut short by the end of the input is plain bytes.
        let (plain, mark) = match find(rest, SID_MARK).filter(|at| at + 16 <= rest.len()) {
            Some(at) => (&rest[..at], rest.get(at..at + 16)),
            None => (rest, None),
        };
        if !write_chunks(wr, plain, chunk).await {
            return;
        }
        rest = &rest[plain.len()..];
        let Some(mark) = mark else { continue };
        let index = mark[15] as usize;
        let sid = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            sids.wait_for(|s| s.len() > index),
        )
        .await
        .ok()
        .and_then(|r| r.ok().map(|s| s[index]));
        let bytes: &[u8] = match &sid {
            Some(sid) => sid,
            None => mark,
        };
        if wr.write_all(bytes).await.is_err() {
            return;
        }
        rest = &rest[16..];
    }
}

async fn write_chunks(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
    chunk: usize,
) -> bool {
    let size = if chunk == 0 {
        bytes.len().max(1)
    } else {
        chunk
    };
    for piece in bytes.chunks(size) {
        if wr.write_all(piece).await.is_err() {
            return false;
        }
        tokio::task::yield_now().await;
    }
    true
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The SIDs of the Accept-Sessions (Accept 0) in what an open-mode control sent so far,
/// for sessions where it is the receiver (the SID begins with the receiver's address,
/// 127.0.0.1; RFC 4656 §3.5). After the greeting (64 octets) and Server-Start (48), every
/// message is whole blocks; an Accept-Session is Accept, MBZ, Port, SID, 12 MBZ octets.
fn accepted_sids(stream: &[u8]) -> Vec<[u8; 16]> {
    let blocks = stream.get(112..).unwrap_or(&[]);
    let blocks: Vec<&[u8]> = blocks.chunks_exact(16).collect();
    let mut sids = Vec::new();
    for pair in blocks.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a[0] == 0 && a[1] == 0 && a[4..8] == [127, 0, 0, 1] && b[4..].iter().all(|&x| x == 0) {
            let mut sid = [0u8; 16];
            sid[..12].copy_from_slice(&a[4..]);
            sid[12..].copy_from_slice(&b[..4]);
            sids.push(sid);
        }
    }
    sids
}

/// A real client's Set-Up-Response for the known user, then the payload's messages
/// sealed with the session keys (RFC 4656 §3.1, §3.4).
async fn write_secure(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    mode: u32,
    greeting: &[u8],
    payload: &[u8],
) {
    let Ok(g) = <&[u8; ServerGreeting::LEN]>::try_from(greeting) else {
        return;
    };
    let Ok(g) = ServerGreeting::decode(g) else {
        return;
    };
    // Fixed keys and IV: the fuzzer needs every run of an input to be the same.
    let keys = SessionKeys {
        aes: [0x11; 16],
        hmac: [0x22; 32],
    };
    let client_iv = [0x33; 16];
    let dk = crypto::derive_key(PASSPHRASE, &g.salt, g.count);
    let token = Token {
        challenge: g.challenge,
        keys: keys.clone(),
    };
    let resp = SetupResponse {
        mode,
        key_id: SetupResponse::key_id_from_str(USER).expect("key id"),
        token: token.encrypt(&dk),
        client_iv,
    };
    if wr.write_all(&resp.encode()).await.is_err() {
        return;
    }
    // The server's IV only matters for what the server sends, which is not checked.
    let mut cipher = ControlCipher::new(crypto::Role::Client, &keys, &client_iv, &[0u8; 16]);
    let mut rest = payload;
    while let Some((&h, tail)) = rest.split_first() {
        let want = ((h & 0x3f) as usize + 1) * 16;
        let take = want.min(tail.len());
        let mut plain = vec![0u8; want];
        plain[..take].copy_from_slice(&tail[..take]);
        rest = &tail[take..];
        let Ok(mut sealed) = cipher.seal(&[&plain]) else {
            return;
        };
        if h & 0x80 != 0 {
            let last = sealed.len() - 1;
            sealed[last] ^= 1;
        }
        if wr.write_all(&sealed).await.is_err() {
            return;
        }
        tokio::task::yield_now().await;
    }
}
