//! Fetch-Session (RFC 4656 §3.9, protocol.md §2.6–2.8, §9).
//!
//! The store's index lookup, a shared lock on the file (the receiving tester holds an exclusive
//! one while finalising), then Fetch-Ack and the response stream: the stored
//! Request-Session, the skip ranges, the records, each followed by its HMAC block.
//!
//! The reference sleeps 1, 2, 4, 8, 16 s when the file is locked or a full fetch finds
//! the session unfinished. We keep those delays, but they are async sleeps: other
//! connections carry on meanwhile. File reads run on the blocking pool. The records are
//! counted under the lock (Fetch-Ack announces the count) and then streamed from the
//! file in chunks, never held in memory whole: a stored session may have 2^32 records,
//! and several clients may fetch it at once. Once the count is taken the file no longer
//! changes (finished ≠ 0: its writer is done), so streaming needs no lock.

use crate::conn::{ConnError, ControlConn};
use crate::log::Logger;
use crate::session::{ServerCtx, SessionError};
use owamp::owp::{FINISHED_NORMAL, OwpFile, V3_RECORD_LEN, VERSION_V3};
use owamp::wire::{FetchAck, FetchSession, encode_skip_ranges};
use owamp::{AcceptCode, PacketRecord};
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The reference's retry delays (protocol.md §2.8).
pub const BACKOFF_S: [u64; 5] = [1, 2, 4, 8, 16];

/// Records read from the file per blocking-pool trip while streaming (25 KiB). The
/// response is queued on the connection and written once at least this much waits,
/// and at its end: the reference writes each part and every 16 records apart; the
/// bytes on the wire are the same, and fewer writes cost less (TCP_NODELAY, and on
/// loopback the client's receive runs on our CPU). A small session's whole response,
/// Fetch-Ack to the last HMAC block, is one write.
const CHUNK_RECORDS: u64 = 1024;

/// Queued response bytes that make a write (see [`CHUNK_RECORDS`]).
const WRITE_AT: usize = (CHUNK_RECORDS as usize) * PacketRecord::WIRE_LEN;

/// What was read from a stored file for one Fetch-Session.
#[derive(Debug)]
pub struct Loaded {
    pub finished: u32,
    pub next_seqno: u32,
    pub skips: Vec<owamp::SkipRange>,
    /// The stored Request-Session: 112-byte preamble (zero HMAC), slots, zero block.
    pub request: Vec<u8>,
    pub nslots: usize,
    /// Which records are sent, and how many.
    pub selection: Selection,
}

/// The records a fetch sends: those with `first ≤ seq ≤ last`, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Inclusive seqno bounds; `None` selects nothing.
    pub range: Option<(u32, u32)>,
    /// How many records match (Fetch-Ack's Number of Records).
    pub count: u32,
    /// Where the file's records start, and how many it has.
    oset_data: u64,
    num_records: u64,
}

impl Selection {
    fn wants(&self, seq: u32) -> bool {
        self.range.is_some_and(|(a, b)| a <= seq && seq <= b)
    }
}

/// Reads the selected records of a file chunk by chunk, positionally (pread), so the
/// file can move to the blocking pool and back between chunks.
#[derive(Debug)]
pub struct RecordStream {
    file: File,
    sel: Selection,
    /// Index (in the file) of the next record to read.
    next: u64,
}

impl RecordStream {
    pub fn new(file: File, sel: Selection) -> Self {
        RecordStream { file, sel, next: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.next >= self.sel.num_records
    }

    /// The wire bytes (25 per record, unpadded) of the selected records among the next
    /// [`CHUNK_RECORDS`] of the file; empty once [`RecordStream::is_done`]. Blocking.
    pub fn next_chunk(&mut self, label: &str) -> Result<Vec<u8>, String> {
        let n = self
            .sel
            .num_records
            .saturating_sub(self.next)
            .min(CHUNK_RECORDS);
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut raw = vec![0u8; (n * V3_RECORD_LEN) as usize];
        let at = self
            .next
            .checked_mul(V3_RECORD_LEN)
            .and_then(|o| o.checked_add(self.sel.oset_data))
            .ok_or_else(|| format!("{label}: record offset overflows"))?;
        self.file
            .read_exact_at(&mut raw, at)
            .map_err(|e| format!("{label}: reading records at {at}: {e}"))?;
        self.next += n;
        let mut out = Vec::with_capacity(raw.len());
        for c in raw.chunks_exact(PacketRecord::WIRE_LEN) {
            let mut b = [0u8; PacketRecord::WIRE_LEN];
            b.copy_from_slice(c);
            let r = PacketRecord::from_bytes(&b);
            if self.sel.wants(r.seq) {
                out.extend_from_slice(&r.to_bytes());
            }
        }
        Ok(out)
    }
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
    let range = if h.finished != FINISHED_NORMAL {
        // Unfinished session, partial range: clip to the highest received seqno (§2.8).
        let mut highest_received: Option<u32> = None;
        for r in f.records().map_err(internal)? {
            let r = r.map_err(internal)?;
            if !r.is_lost() {
                highest_received = Some(highest_received.map_or(r.seq, |h| h.max(r.seq)));
            }
        }
        highest_received.map(|hr| (begin, end.min(hr)))
    } else {
        Some((begin, end))
    };
    let mut sel = Selection {
        range,
        count: 0,
        oset_data: h.oset_data,
        num_records: h.num_records,
    };
    let mut count: u64 = 0;
    for r in f.records().map_err(internal)? {
        if sel.wants(r.map_err(internal)?.seq) {
            count += 1;
        }
    }
    sel.count = u32::try_from(count).map_err(|_| {
        LoadError::Refused(
            AcceptCode::InternalError,
            format!("{label}: {count} records do not fit Fetch-Ack"),
        )
    })?;
    Ok(Loaded {
        finished: h.finished,
        next_seqno: h.next_seqno,
        skips,
        request,
        nslots,
        selection: sel,
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
        let res = tokio::task::spawn_blocking(move || {
            load(&file, &label, begin, end, full).map(|l| (l, file))
        })
        .await
        .unwrap_or_else(|e| {
            Err(LoadError::Refused(
                AcceptCode::InternalError,
                format!("reader task: {e}"),
            ))
        });
        match res {
            Ok((l, file)) => break (l, file, stored),
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
    let (l, file, stored) = loaded;
    let ack = FetchAck {
        accept: AcceptCode::Ok,
        finished: u8::try_from(l.finished).unwrap_or(2),
        next_seqno: l.next_seqno,
        num_skips: l.skips.len() as u32,
        num_records: l.selection.count,
    };
    conn.queue(&[&ack.encode()])?;
    // 1. The stored Request-Session: preamble (HMAC recomputed), slots, HMAC (§2.8).
    let pre = l.request.get(..96).unwrap_or(&[]);
    let slots_end = 112 + 16 * l.nslots;
    let slots = l.request.get(112..slots_end).unwrap_or(&[]);
    conn.queue(&[pre, slots])?;
    // 2. Skip ranges. 3. Records, streamed, one HMAC at the end.
    conn.queue(&[&encode_skip_ranges(&l.skips)])?;
    let label = stored.path.display().to_string();
    let mut stream = RecordStream::new(file, l.selection);
    let mut pending: Vec<u8> = Vec::new();
    let mut sent: u64 = 0;
    while !stream.is_done() {
        let lbl = label.clone();
        let (back, chunk) = tokio::task::spawn_blocking(move || {
            let r = stream.next_chunk(&lbl);
            (stream, r)
        })
        .await
        .map_err(|e| SessionError::Protocol(format!("Fetch-Session: reader task: {e}")))?;
        stream = back;
        // Fetch-Ack is out: a read error can only end the connection.
        let chunk = chunk.map_err(|e| SessionError::Protocol(format!("Fetch-Session: {e}")))?;
        sent += (chunk.len() / PacketRecord::WIRE_LEN) as u64;
        pending.extend_from_slice(&chunk);
        // Whole blocks are sealed now; the rest waits for the next records (§2.8).
        let whole = pending.len() / 16 * 16;
        if whole > 0 {
            conn.queue_sealed(pending.get(..whole).unwrap_or(&[]))?;
            pending.drain(..whole);
        }
        if conn.queued() >= WRITE_AT {
            conn.flush_queued().await?;
        }
    }
    if sent != u64::from(l.selection.count) {
        return Err(SessionError::Protocol(format!(
            "Fetch-Session: {label} changed while it was sent ({sent} records, {} announced)",
            l.selection.count
        )));
    }
    if !pending.is_empty() {
        // Only the end can be short: pad it to a block (§2.8).
        pending.resize(pending.len().div_ceil(16) * 16, 0);
        conn.queue_sealed(&pending)?;
    }
    conn.queue(&[&[]])?;
    conn.flush_queued().await?;
    log.info(format!(
        "fetched records {}..{}: {} records",
        req.begin, req.end, l.selection.count
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
        session_of(10)
    }

    fn session_of(num_packets: u32) -> SessionHeader {
        let req = RequestSession {
            conf_sender: false,
            conf_receiver: true,
            num_packets,
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

    /// A fresh read-write data file, as control creates one for a receiver.
    fn rw_file(path: &std::path::Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap()
    }

    /// The seqnos a fetch streams for `l`, checked against its announced count.
    fn seqs(f: &File, l: &Loaded) -> Vec<u32> {
        let mut st = RecordStream::new(f.try_clone().unwrap(), l.selection);
        let mut bytes = Vec::new();
        while !st.is_done() {
            bytes.extend(st.next_chunk("t").unwrap());
        }
        assert!(st.next_chunk("t").unwrap().is_empty());
        let out: Vec<u32> = bytes
            .chunks_exact(PacketRecord::WIRE_LEN)
            .map(|c| PacketRecord::from_bytes(c.try_into().unwrap()).seq)
            .collect();
        assert_eq!(out.len(), l.selection.count as usize);
        out
    }

    /// A receive file with records 0..6 (3 lost), live or finalised.
    fn file(dir: &std::path::Path, finish: bool) -> File {
        let path = dir.join("s.owp");
        let f = rw_file(&path);
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
        assert_eq!(seqs(&f, &l), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(l.nslots, 1);
        assert_eq!(l.request.len(), 112 + 16 + 16);
        // A partial range is filtered by seqno.
        let l = load(&f, "t", 2, 4, false).unwrap();
        assert_eq!(seqs(&f, &l), vec![2, 3, 4]);
    }

    #[test]
    fn live_session_full_fetch_is_unfinished_and_partial_is_clipped() {
        let d = tempfile::tempdir().unwrap();
        let f = file(d.path(), false);
        assert!(matches!(
            load(&f, "t", 0, u32::MAX, true),
            Err(LoadError::Unfinished)
        ));
        // A live file says finished=2, as the reference's receiver writes it, so a
        // partial range is served, clipped to the highest received seqno (§2.8).
        let l = load(&f, "t", 0, 3, false).unwrap();
        assert_eq!(l.finished, 2);
        assert_eq!(seqs(&f, &l), vec![0, 1, 2, 3]);
    }

    #[test]
    fn incomplete_session_partial_range_is_clipped_to_highest_received() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.owp");
        let f = rw_file(&path);
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
        assert_eq!(seqs(&f, &l), vec![0, 1, 2, 3]);
    }

    /// What control does for a dead tester: resume the live file from another
    /// descriptor and finalise it as incomplete.
    #[test]
    fn resumed_file_finalised_incomplete_keeps_old_records() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.owp");
        let f = rw_file(&path);
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
        assert_eq!(seqs(&f, &l).len(), 5);
    }

    /// More records than one streamed chunk, selected from the middle: every chunk
    /// boundary is crossed and nothing is held beyond a chunk.
    #[test]
    fn streams_many_records_in_chunks() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("big.owp");
        let f = rw_file(&path);
        let n = 2 * CHUNK_RECORDS as u32 + 7;
        let mut w = ReceiveWriter::create(f, &path, &session_of(n)).unwrap();
        for s in 0..n {
            w.record(&rec(s, false)).unwrap();
        }
        w.finalize_with_stop(Num64(u64::MAX), n, &[]).unwrap();
        let f = File::open(&path).unwrap();
        let l = load(&f, "t", 5, n - 3, false).unwrap();
        assert_eq!(seqs(&f, &l), (5..=n - 3).collect::<Vec<_>>());
        let l = load(&f, "t", 0, u32::MAX, true).unwrap();
        assert_eq!(l.selection.count, n);
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
