//! Fetch-Session (RFC 4656 §3.9, spec §2.6–2.8, §9).
//!
//! Catalog lookup, a shared lock on the file (the receiving tester holds an exclusive
//! one while finalising), then Fetch-Ack and the response stream: the stored
//! Request-Session, the skip ranges, the records, each followed by its HMAC block.
//!
//! The reference sleeps 1, 2, 4, 8, 16 s when the file is locked or a full fetch finds
//! the session unfinished. We keep those delays, but they are async sleeps: other
//! connections carry on meanwhile. File reads run on the blocking pool; the selected
//! records are held in memory as wire bytes (25 bytes each) while they are sent.

use crate::conn::{ConnError, ControlConn};
use crate::log::Logger;
use crate::session::{ServerCtx, SessionError};
use owamp::owp::{FINISHED_NORMAL, OwpFile, VERSION_V3};
use owamp::wire::{FetchAck, FetchSession, encode_skip_ranges};
use owamp::{AcceptCode, PacketRecord};
use std::fs::File;
use std::io::BufReader;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The reference's retry delays (spec §2.8).
pub const BACKOFF_S: [u64; 5] = [1, 2, 4, 8, 16];

/// Records per streamed write: a multiple of 16 so every chunk but the last is whole
/// blocks (16 records = 400 bytes = 25 blocks). The reference writes 16 at a time; the
/// bytes on the wire are the same, fewer writes cost less (the socket has TCP_NODELAY).
const CHUNK_RECORDS: usize = 16 * 64;

/// What was read from a stored file for one Fetch-Session.
#[derive(Debug)]
pub struct Loaded {
    pub finished: u32,
    pub next_seqno: u32,
    pub skips: Vec<owamp::SkipRange>,
    /// The stored Request-Session: 112-byte preamble (zero HMAC), slots, zero block.
    pub request: Vec<u8>,
    pub nslots: usize,
    pub records: Vec<PacketRecord>,
}

/// Why a fetch is refused, with the Fetch-Ack Accept value.
#[derive(Debug)]
pub enum LoadError {
    /// Not finished yet (retry for a full fetch).
    Unfinished,
    /// The writer holds the lock (retry).
    Locked,
    Refused(AcceptCode, String),
}

/// Read and select what a request wants (blocking; run on the blocking pool).
// File::try_lock_shared is flock(2) (stable since 1.89), the lock owp's writer takes.
pub fn load(
    file: &File,
    label: &str,
    begin: u32,
    end: u32,
    full: bool,
) -> Result<Loaded, LoadError> {
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(LoadError::Locked),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(LoadError::Refused(
                AcceptCode::InternalError,
                format!("lock: {e}"),
            ));
        }
    }
    let res = load_locked(file, label, begin, end, full);
    let _ = file.unlock();
    res
}

fn load_locked(
    file: &File,
    label: &str,
    begin: u32,
    end: u32,
    full: bool,
) -> Result<Loaded, LoadError> {
    let internal =
        |e: owamp::owp::OwpError| LoadError::Refused(AcceptCode::InternalError, e.to_string());
    let mut f = OwpFile::from_reader(BufReader::new(file), label).map_err(internal)?;
    let h = f.header().clone();
    if h.version != VERSION_V3 {
        return Err(LoadError::Refused(
            AcceptCode::InternalError,
            format!("{label}: version {} file", h.version),
        ));
    }
    if full && h.finished != FINISHED_NORMAL {
        return Err(LoadError::Unfinished);
    }
    if h.finished == 0 {
        return Err(LoadError::Refused(
            AcceptCode::InternalError,
            format!("{label}: session not finalised"),
        ));
    }
    let session = f.session().map_err(internal)?;
    let request = session.raw().to_vec();
    let nslots = session.fields().slots.len();
    let skips = f.skips().map_err(internal)?;
    let mut records = Vec::new();
    let mut highest_received: Option<u32> = None;
    for r in f.records().map_err(internal)? {
        let r = r.map_err(internal)?;
        if !r.is_lost() {
            highest_received = Some(highest_received.map_or(r.seq, |h| h.max(r.seq)));
        }
        if r.seq >= begin && r.seq <= end {
            records.push(r);
        }
    }
    if h.finished != FINISHED_NORMAL {
        // Unfinished session, partial range: clip to the highest received seqno (§2.8).
        let clip = highest_received.map_or(0, |hr| end.min(hr));
        records.retain(|r| r.seq <= clip && highest_received.is_some());
    }
    Ok(Loaded {
        finished: h.finished,
        next_seqno: h.next_seqno,
        skips,
        request,
        nslots,
        records,
    })
}

async fn send_reject<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut ControlConn<S>,
    accept: AcceptCode,
) -> Result<(), ConnError> {
    conn.send(&[&FetchAck::reject(accept).encode()]).await
}

pub async fn handle_fetch<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut ControlConn<S>,
    ctx: &ServerCtx,
    log: &Logger,
    req: &FetchSession,
) -> Result<(), SessionError> {
    let log = log.sid(&req.sid.to_hex());
    let full = req.is_full_session();
    let mut attempt = 0usize;
    let loaded = loop {
        let entry = match ctx.store.open_for_fetch_async(&req.sid).await {
            Ok(Some((file, entry))) => (file, entry),
            Ok(None) => {
                log.info("Fetch-Session refused: no such session");
                send_reject(conn, AcceptCode::Failure).await?;
                return Ok(());
            }
            Err(e) => {
                log.warn(format!("Fetch-Session refused: {e}"));
                send_reject(conn, AcceptCode::InternalError).await?;
                return Ok(());
            }
        };
        let (file, stored) = entry;
        let label = stored.path.display().to_string();
        let (begin, end) = (req.begin, req.end);
        let res = tokio::task::spawn_blocking(move || load(&file, &label, begin, end, full))
            .await
            .unwrap_or_else(|e| {
                Err(LoadError::Refused(
                    AcceptCode::InternalError,
                    format!("reader task: {e}"),
                ))
            });
        match res {
            Ok(l) => break (l, stored),
            Err(LoadError::Refused(code, why)) => {
                log.info(format!("Fetch-Session refused ({code}): {why}"));
                send_reject(conn, code).await?;
                return Ok(());
            }
            Err(e @ (LoadError::Unfinished | LoadError::Locked)) => {
                let Some(&delay) = BACKOFF_S.get(attempt) else {
                    let code = match e {
                        LoadError::Unfinished => AcceptCode::Failure,
                        _ => AcceptCode::InternalError,
                    };
                    log.info(format!(
                        "Fetch-Session refused ({code}): {e:?} after retries"
                    ));
                    send_reject(conn, code).await?;
                    return Ok(());
                };
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(delay)).await;
            }
        }
    };
    let (l, stored) = loaded;
    let ack = FetchAck {
        accept: AcceptCode::Ok,
        finished: u8::try_from(l.finished).unwrap_or(2),
        next_seqno: l.next_seqno,
        num_skips: l.skips.len() as u32,
        num_records: l.records.len() as u32,
    };
    conn.send(&[&ack.encode()]).await?;
    // 1. The stored Request-Session: preamble (HMAC recomputed), slots, HMAC (§2.8).
    let pre = l.request.get(..96).unwrap_or(&[]);
    let slots_end = 112 + 16 * l.nslots;
    let slots = l.request.get(112..slots_end).unwrap_or(&[]);
    conn.send(&[pre, slots]).await?;
    // 2. Skip ranges. 3. Records, streamed, one HMAC at the end.
    conn.send(&[&encode_skip_ranges(&l.skips)]).await?;
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_RECORDS * PacketRecord::WIRE_LEN);
    for chunk in l.records.chunks(CHUNK_RECORDS) {
        pending.clear();
        for r in chunk {
            pending.extend_from_slice(&r.to_bytes());
        }
        if !pending.len().is_multiple_of(16) {
            // Only the last chunk can be short: pad it to a block (§2.8).
            pending.resize(pending.len().div_ceil(16) * 16, 0);
        }
        conn.send_clear_then_sealed(&[], &pending).await?;
    }
    conn.send(&[&[]]).await?;
    log.info(format!(
        "fetched records {}..{}: {} records",
        req.begin,
        req.end,
        l.records.len()
    ));
    // delete_on_fetch after a successful full fetch, by the creating class (§7.9).
    let tree = ctx.policy.tree();
    if full
        && l.finished == FINISHED_NORMAL
        && tree.get(stored.class).is_some_and(|c| c.delete_on_fetch)
    {
        match ctx.store.delete_async(&req.sid).await {
            Ok(Some((f, size))) => {
                let _ = ctx.policy.release_disk(f.class, size);
                log.info("deleted after fetch (delete_on_fetch)");
            }
            Ok(None) => {}
            Err(e) => log.warn(format!("delete_on_fetch: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::owp::{ReceiveWriter, SessionHeader};
    use owamp::wire::RequestSession;
    use owamp::{ErrorEstimate, Num64, Sid, SkipRange, Slot, SlotKind};
    use std::fs::OpenOptions;

    fn session() -> SessionHeader {
        let req = RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets: 10,
            sender_port: 5000,
            receiver_port: 5001,
            sender_addr: "127.0.0.1".parse().unwrap(),
            receiver_addr: "127.0.0.1".parse().unwrap(),
            sid: Sid([7; 16]),
            padding: 0,
            start_time: Num64(100 << 32),
            timeout: Num64(1 << 32),
            type_p: 0,
            slots: vec![Slot {
                kind: SlotKind::Fixed,
                param: Num64(1 << 32),
            }],
        };
        SessionHeader::parse(&req.encode_stored()).unwrap()
    }

    fn rec(seq: u32, lost: bool) -> PacketRecord {
        PacketRecord {
            seq,
            send_err: ErrorEstimate::UNSYNC,
            recv_err: ErrorEstimate::UNSYNC,
            send_ts: Num64((101 + u64::from(seq)) << 32),
            recv_ts: if lost {
                Num64::ZERO
            } else {
                Num64(((101 + u64::from(seq)) << 32) + 1000)
            },
            ttl: 255,
        }
    }

    /// A receive file with records 0..6 (3 lost), live or finalised.
    fn file(dir: &std::path::Path, finish: bool) -> File {
        let path = dir.join("s.owp");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut w = ReceiveWriter::create(f.try_clone().unwrap(), &path, &session()).unwrap();
        for s in 0..6 {
            w.record(&rec(s, s == 3)).unwrap();
        }
        w.flush().unwrap();
        if finish {
            w.finalize_with_stop(Num64(200 << 32), 6, &[SkipRange { first: 8, last: 9 }])
                .unwrap();
        }
        File::open(&path).unwrap()
    }

    #[test]
    fn full_fetch_of_a_finished_session() {
        let d = tempfile::tempdir().unwrap();
        let f = file(d.path(), true);
        let l = load(&f, "t", 0, u32::MAX, true).unwrap();
        assert_eq!((l.finished, l.next_seqno), (1, 6));
        assert_eq!(l.skips, vec![SkipRange { first: 8, last: 9 }]);
        assert_eq!(
            l.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5]
        );
        assert_eq!(l.nslots, 1);
        assert_eq!(l.request.len(), 112 + 16 + 16);
        // A partial range is filtered by seqno.
        let l = load(&f, "t", 2, 4, false).unwrap();
        assert_eq!(
            l.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn live_session_full_fetch_is_unfinished_and_partial_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = file(d.path(), false);
        assert!(matches!(
            load(&f, "t", 0, u32::MAX, true),
            Err(LoadError::Unfinished)
        ));
        // finished=0 (live/error) cannot be served partially either (spec §9).
        assert!(matches!(
            load(&f, "t", 0, 3, false),
            Err(LoadError::Refused(AcceptCode::InternalError, _))
        ));
    }

    #[test]
    fn incomplete_session_partial_range_is_clipped_to_highest_received() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.owp");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut w = ReceiveWriter::create(f, &path, &session()).unwrap();
        for s in 0..4 {
            w.record(&rec(s, false)).unwrap();
        }
        w.record(&rec(4, true)).unwrap();
        w.finalize_incomplete(Num64(300 << 32)).unwrap();
        let f = File::open(&path).unwrap();
        assert!(matches!(
            load(&f, "t", 0, u32::MAX, true),
            Err(LoadError::Unfinished)
        ));
        let l = load(&f, "t", 0, u32::MAX - 1, false).unwrap();
        assert_eq!(l.finished, 2);
        assert_eq!(
            l.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    /// What control does for a dead tester: resume the live file from another
    /// descriptor and finalise it as incomplete.
    #[test]
    fn resumed_file_finalised_incomplete_keeps_old_records() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.owp");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let control_copy = f.try_clone().unwrap();
        let mut w = ReceiveWriter::create(f, &path, &session()).unwrap();
        for s in 0..5 {
            w.record(&rec(s, false)).unwrap();
        }
        w.flush().unwrap();
        drop(w); // the tester dies
        let w = ReceiveWriter::resume(control_copy, &path).unwrap();
        w.finalize_incomplete(Num64(300 << 32)).unwrap();
        let f = File::open(&path).unwrap();
        let l = load(&f, "t", 0, u32::MAX - 1, false).unwrap();
        assert_eq!(l.finished, 2);
        assert_eq!(l.records.len(), 5);
    }

    #[test]
    fn writer_lock_means_retry() {
        let d = tempfile::tempdir().unwrap();
        let f = file(d.path(), true);
        let writer = OpenOptions::new()
            .write(true)
            .open(d.path().join("s.owp"))
            .unwrap();
        writer.lock().unwrap();
        assert!(matches!(
            load(&f, "t", 0, u32::MAX, true),
            Err(LoadError::Locked)
        ));
        writer.unlock().unwrap();
        assert!(load(&f, "t", 0, u32::MAX, true).is_ok());
    }

    #[test]
    fn garbage_file_is_accept_2() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("g.owp");
        std::fs::write(&p, b"not an owp file at all").unwrap();
        let f = File::open(&p).unwrap();
        assert!(matches!(
            load(&f, "t", 0, u32::MAX, true),
            Err(LoadError::Refused(AcceptCode::InternalError, _))
        ));
    }
}
