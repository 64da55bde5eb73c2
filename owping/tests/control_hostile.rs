//! The control client against silent, odd and hostile servers (bytes written by hand
//! in open mode, protocol.md §1–§2): deadlines name the step, bad values are typed errors.

use owamp::wire::{FetchAck, ServerGreeting, ServerStart};
use owamp::{AcceptCode, ModeSet, Num64, Sid};
use owping::control::{ConnectParams, Control, ControlError};
use owping::net::Family;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn params(addr: String) -> ConnectParams {
    ConnectParams {
        server: addr,
        src: None,
        family: Family::Any,
        bind_device: None,
        requested: ModeSet::ALL,
        identity: None,
        passphrase: None,
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(2),
    }
}

/// Runs `script` on the first connection of a fresh listener.
fn fake(script: impl FnOnce(TcpStream) + Send + 'static) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            script(s);
        }
    });
    addr
}

fn greeting(modes: u32, count: u32) -> [u8; 64] {
    ServerGreeting {
        modes: ModeSet(modes),
        challenge: [1; 16],
        salt: [2; 16],
        count,
    }
    .encode()
}

/// Greeting (open), Set-Up-Response, Server-Start Accept=0.
fn open_handshake(s: &mut TcpStream) {
    s.write_all(&greeting(1, 1024)).unwrap();
    let mut b = [0u8; 164];
    s.read_exact(&mut b).unwrap();
    let ss = ServerStart {
        accept: 0,
        server_iv: [0; 16],
        start_time: Num64(5 << 32),
    };
    s.write_all(&ss.encode_clear()).unwrap();
    s.write_all(&ss.encode_tail()).unwrap();
}

fn hold(s: TcpStream) {
    let mut s = s;
    let mut sink = [0u8; 4096];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

#[test]
fn silent_server_times_out_naming_the_greeting() {
    let addr = fake(hold);
    let e = Control::connect(&params(addr)).unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::Timeout {
                step: "waiting for the Server-Greeting",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("timed out waiting for the Server-Greeting (server 127.0.0.1:")
    );
}

#[test]
fn no_server_start_times_out_naming_it() {
    let addr = fake(|mut s| {
        s.write_all(&greeting(1, 1024)).unwrap();
        hold(s);
    });
    let e = Control::connect(&params(addr)).unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::Timeout {
                step: "waiting for the Server-Start",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn modes_zero_and_bad_counts() {
    let addr = fake(|mut s| {
        s.write_all(&greeting(0, 1024)).unwrap();
        hold(s);
    });
    assert!(matches!(
        Control::connect(&params(addr)),
        Err(ControlError::NoModes { .. })
    ));

    for count in [0u32, 1023, (1 << 20) + 1] {
        let addr = fake(move |mut s| {
            s.write_all(&greeting(2, count)).unwrap();
            hold(s);
        });
        let mut p = params(addr);
        p.identity = Some("alice".into());
        p.passphrase = Some(b"secret".to_vec());
        let e = Control::connect(&p).unwrap_err();
        assert!(
            matches!(e, ControlError::BadCount { count: c, .. } if c == count),
            "{e}"
        );
    }
}

#[test]
fn server_start_refusal_and_bad_accept() {
    for (accept, ok) in [(2u8, true), (9u8, false)] {
        let addr = fake(move |mut s| {
            s.write_all(&greeting(1, 1024)).unwrap();
            let mut b = [0u8; 164];
            s.read_exact(&mut b).unwrap();
            let mut clear = [0u8; 32];
            clear[15] = accept;
            s.write_all(&clear).unwrap();
            s.write_all(&[0u8; 16]).unwrap();
            hold(s);
        });
        let e = Control::connect(&params(addr)).unwrap_err();
        if ok {
            assert!(
                matches!(
                    e,
                    ControlError::Refused {
                        what: "Server-Start",
                        accept: AcceptCode::InternalError,
                        ..
                    }
                ),
                "{e}"
            );
        } else {
            assert!(
                matches!(e, ControlError::Wire { .. }),
                "Accept 9 is a protocol error: {e}"
            );
        }
    }
}

fn fetch_reply(ack: FetchAck, preamble_slots: u32, npackets: u32, then: Vec<u8>) -> String {
    fake(move |mut s| {
        open_handshake(&mut s);
        let mut req = [0u8; 48];
        s.read_exact(&mut req).unwrap();
        s.write_all(&ack.encode()).unwrap();
        s.write_all(&[0u8; 16]).unwrap();
        let mut pre = [0u8; 96];
        pre[0] = 1;
        pre[1] = 4;
        pre[3] = 1;
        pre[4..8].copy_from_slice(&preamble_slots.to_be_bytes());
        pre[8..12].copy_from_slice(&npackets.to_be_bytes());
        s.write_all(&pre).unwrap();
        s.write_all(&[0u8; 16]).unwrap();
        s.write_all(&then).unwrap();
        // Then close: the client must not wait for what was promised.
    })
}

fn ack(num_skips: u32, num_records: u32) -> FetchAck {
    FetchAck {
        accept: AcceptCode::Ok,
        finished: 1,
        next_seqno: 10,
        num_skips,
        num_records,
    }
}

#[test]
fn hostile_fetch_responses_are_typed_errors() {
    let mut slot_and_hmac = vec![0u8; 16];
    slot_and_hmac[8..16].copy_from_slice(&(1u64 << 32).to_be_bytes());
    slot_and_hmac.extend_from_slice(&[0u8; 16]);

    // No slots.
    let addr = fetch_reply(ack(0, 0), 0, 10, Vec::new());
    let mut c = Control::connect(&params(addr)).unwrap();
    let e = c
        .fetch_to(Sid([0; 16]), Vec::new(), "x".as_ref())
        .unwrap_err();
    assert!(matches!(e, ControlError::Protocol { .. }), "{e}");

    // More skip ranges than packets.
    let addr = fetch_reply(ack(11, 0), 1, 10, slot_and_hmac.clone());
    let mut c = Control::connect(&params(addr)).unwrap();
    let e = c
        .fetch_to(Sid([0; 16]), Vec::new(), "x".as_ref())
        .unwrap_err();
    assert!(matches!(e, ControlError::Protocol { .. }), "{e}");

    // 4 billion records promised, then the connection closes: an error, promptly,
    // without allocating for the promise.
    let mut then = slot_and_hmac.clone();
    then.extend_from_slice(&[0u8; 16]); // empty skip list's HMAC
    then.extend_from_slice(&[0u8; 400]); // 16 records
    let addr = fetch_reply(ack(0, u32::MAX), 1, 10, then);
    let mut c = Control::connect(&params(addr)).unwrap();
    let e = c
        .fetch_to(Sid([0; 16]), Vec::new(), "x".as_ref())
        .unwrap_err();
    assert!(matches!(e, ControlError::Stream { .. }), "{e}");

    // A refused fetch names the code and suggests NTP.
    let addr = fetch_reply(FetchAck::reject(AcceptCode::Failure), 1, 10, Vec::new());
    let mut c = Control::connect(&params(addr)).unwrap();
    let e = c
        .fetch_to(Sid([0; 16]), Vec::new(), "x".as_ref())
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("Fetch-Session refused") && msg.contains("Accept=1") && msg.contains("NTP"),
        "{msg}"
    );
}

#[test]
fn owup_reads_the_start_time_in_open_mode() {
    let addr = fake(|mut s| {
        open_handshake(&mut s);
        hold(s);
    });
    let c = Control::connect(&params(addr)).unwrap();
    assert_eq!(c.server_start, Num64(5 << 32));
    assert_eq!(c.mode, owamp::Mode::Open);
}
