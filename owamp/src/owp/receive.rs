//! The receiving tester's `.owp` writer and the finalisation rules of protocol.md §7.8.
//!
//! The tester gets its data file as an already-open descriptor (fd 5) and cannot open
//! files, so everything here works on one `std::fs::File` with positional reads and
//! writes (`pread`/`pwrite`), `ftruncate`, `flock` and `fsync`. The file must not be
//! opened with `O_APPEND` (positional writes would then append): [`ReceiveWriter::create`]
//! checks this.
//!
//! Finalisation streams the records: it reads them back in chunks of
//! [`FINALIZE_CHUNK`] records and compacts the kept ones in place, so memory stays
//! bounded whatever the file size. After a Stop-Sessions the peer's skip ranges are
//! streamed too ([`StopFinalizer`]): they go to the file as they arrive, never gathered,
//! since a Stop-Sessions may announce up to 2^32−1 of them (RFC 4656 §3.8).

use super::reader::{OwpFile, record_from_v3};
use super::session::SessionHeader;
use super::writer::{v3_header_len, write_v3_header};
use super::{
    FINISHED_ERROR, FINISHED_INCOMPLETE, FINISHED_NORMAL, OwpError, SKIP_LEN, V3_RECORD_LEN,
    VERSION_V3,
};
use crate::types::{PacketRecord, SkipRange, Timestamp};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Records read back per chunk while finalising (100 KiB).
pub const FINALIZE_CHUNK: usize = 4096;
/// Buffered records are written out once the buffer holds this many octets.
const BUFFER_LIMIT: usize = 64 * 1024;

/// What a finalisation wrote into the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinalizeOutcome {
    pub finished: u32,
    pub next_seqno: u32,
    pub num_records: u64,
    pub num_skips: u32,
}

/// Appends packet records to a receive session's data file and finalises it.
pub struct ReceiveWriter {
    file: File,
    path: PathBuf,
    header_len: u64,
    npackets: u32,
    timeout: crate::types::Num64,
    /// Records already on disk.
    on_disk: u64,
    buf: Vec<u8>,
}

impl ReceiveWriter {
    /// Start a receive file: truncate `file` and write the v3 header with finished=0,
    /// all counts 0, the skip offset unknown (0) and the data offset right after the
    /// header, as the reference does at Start-Sessions. `label` names the file in errors.
    pub fn create(
        file: File,
        label: impl AsRef<Path>,
        session: &SessionHeader,
    ) -> Result<Self, OwpError> {
        let path = label.as_ref().to_path_buf();
        check_not_append(&file, &path)?;
        // The reference writes the header from its decoded session (OWPWriteDataHeader),
        // so the stored Request-Session is the canonical encoding.
        let session = &SessionHeader::from_fields(session.fields())?;
        let header_len = v3_header_len(session);
        // finished = 2 ("incomplete") while live, as endpoint.c writes it: readers then
        // count the records from the file size, and a partial fetch of a running
        // session is served (protocol.md §7.7, §2.8). Failures set 0 later.
        let hdr = write_v3_header(session, FINISHED_INCOMPLETE, 0, 0, 0, 0, header_len);
        file.set_len(0)
            .map_err(|e| OwpError::io(&path, "truncate", e))?;
        file.write_all_at(&hdr, 0)
            .map_err(|e| OwpError::io(&path, "header", e))?;
        Ok(ReceiveWriter {
            file,
            path,
            header_len,
            npackets: session.npackets(),
            timeout: session.timeout(),
            on_disk: 0,
            buf: Vec::with_capacity(BUFFER_LIMIT + V3_RECORD_LEN as usize),
        })
    }

    /// Take over a live receive file written by someone else (the control process does
    /// this when a tester died, to finalise it as incomplete). A trailing partial record
    /// is ignored and cut off at finalisation.
    pub fn resume(file: File, label: impl AsRef<Path>) -> Result<Self, OwpError> {
        let path = label.as_ref().to_path_buf();
        check_not_append(&file, &path)?;
        // A live file's records end at the skip ranges' offset once a finalisation set
        // it (a tester that died while writing the peer's ranges: see
        // `cut_after_records`; the offset may then equal the data offset, which a
        // reader takes for "no skips, records to the end of the file"), else at the end
        // of the file.
        let (header_len, npackets, timeout, on_disk) = {
            let f = OwpFile::from_reader(&file, &path)?;
            let h = f.header();
            if h.version != VERSION_V3 {
                return Err(OwpError::UnsupportedVersion {
                    path,
                    version: h.version,
                });
            }
            let s = f.session()?;
            let on_disk = if h.oset_skips != 0 && h.oset_skips >= h.oset_data {
                (h.oset_skips - h.oset_data) / V3_RECORD_LEN
            } else {
                h.num_records
            };
            (h.oset_data, s.npackets(), s.timeout(), on_disk)
        };
        Ok(ReceiveWriter {
            file,
            path,
            header_len,
            npackets,
            timeout,
            on_disk,
            buf: Vec::with_capacity(BUFFER_LIMIT + V3_RECORD_LEN as usize),
        })
    }

    /// Append one record (buffered; see [`ReceiveWriter::flush`]).
    pub fn record(&mut self, rec: &PacketRecord) -> Result<(), OwpError> {
        self.buf.extend_from_slice(&rec.to_bytes());
        if self.buf.len() >= BUFFER_LIMIT {
            self.flush()?;
        }
        Ok(())
    }

    /// Write buffered records to the file. The engine calls this at least every 100 ms
    /// so a fetcher or a crash sees recent data.
    pub fn flush(&mut self) -> Result<(), OwpError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = self.header_len + self.on_disk * V3_RECORD_LEN;
        self.file
            .write_all_at(&self.buf, at)
            .map_err(|e| OwpError::io(&self.path, "data records", e))?;
        self.on_disk += (self.buf.len() as u64) / V3_RECORD_LEN;
        self.buf.clear();
        Ok(())
    }

    /// Records written so far (on disk and buffered).
    pub fn records_written(&self) -> u64 {
        self.on_disk + (self.buf.len() as u64) / V3_RECORD_LEN
    }

    /// Finalise after a Stop-Sessions (protocol.md §7.8) whose skip ranges are all at
    /// hand: [`ReceiveWriter::begin_stop`], the ranges, [`StopFinalizer::finish`].
    pub fn finalize_with_stop(
        self,
        stoptime: Timestamp,
        next_seqno: u32,
        skips: &[SkipRange],
    ) -> Result<FinalizeOutcome, OwpError> {
        let mut fin = self.begin_stop(stoptime, next_seqno)?;
        if let Err(e) = fin.skips(skips) {
            let _ = fin.error();
            return Err(e);
        }
        fin.finish()
    }

    /// Start finalising after a Stop-Sessions (protocol.md §7.8): keep a record only if
    /// `seq < next_seqno` and `send_ts ≤ stoptime − Timeout`; a received record with
    /// `seq ≥ next_seqno` makes the session invalid (the file is marked finished=0 and
    /// [`OwpError::SessionInvalid`] returned). The kept records are then in place and the
    /// file locked; the peer's skip ranges follow with [`StopFinalizer::skips`].
    pub fn begin_stop(
        mut self,
        stoptime: Timestamp,
        next_seqno: u32,
    ) -> Result<StopFinalizer, OwpError> {
        // As _OWPCleanDataRecs: 0xFFFFFFFF means "all packets"; more is invalid.
        let next_seqno = if next_seqno == u32::MAX {
            self.npackets
        } else {
            next_seqno
        };
        if next_seqno > self.npackets {
            return Err(OwpError::Usage {
                path: self.path.clone(),
                detail: format!(
                    "Next Seqno {next_seqno} exceeds Number of Packets {}",
                    self.npackets
                ),
            });
        }
        self.flush()?;
        self.lock()?;
        let r = self.stop_locked(stoptime, next_seqno);
        let kept = self.unlock_on_error(r)?;
        Ok(StopFinalizer {
            writer: self,
            kept,
            next_seqno,
            num_skips: 0,
        })
    }

    /// The records kept by the Stop-Sessions rule, in place, the file cut after them and
    /// the skip ranges' offset set there: from now on the file's records end at that
    /// offset, whatever is appended after it.
    fn stop_locked(&mut self, stoptime: Timestamp, next_seqno: u32) -> Result<u64, OwpError> {
        let kept = self.apply_stop_rule(stoptime, next_seqno)?;
        self.cut_after_records(kept)?;
        Ok(kept)
    }

    /// The Stop-Sessions rule of protocol.md §7.8: keep a record only if `seq < next` and
    /// `send_ts ≤ stoptime − Timeout`; a *received* record with `seq ≥ next` makes the
    /// whole session invalid (the file is marked finished=0 and the error returned).
    fn apply_stop_rule(&mut self, stoptime: Timestamp, next: u32) -> Result<u64, OwpError> {
        let limit = stoptime.saturating_sub(self.timeout);
        let mut invalid: Option<u32> = None;
        let kept = self.compact(|r| {
            if !r.is_lost() && r.seq >= next {
                invalid.get_or_insert(r.seq);
                return false;
            }
            r.seq < next && r.send_ts <= limit
        })?;
        if let Some(seq) = invalid {
            self.write_finished(FINISHED_ERROR, 0)?;
            self.sync()?;
            return Err(OwpError::SessionInvalid {
                path: self.path.clone(),
                seq,
                next_seqno: next,
            });
        }
        Ok(kept)
    }

    /// Finalise without Stop-Sessions information (the connection dropped; protocol.md §7.8),
    /// as the reference's `_OWPCleanUpSessions`: the Stop-Sessions rule with
    /// next = Number of Packets and `stoptime` = when the loss was noticed, then the
    /// lost records above the highest received seqno are dropped; if nothing was
    /// received the file is cut back to the header. finished=2, Next Seqno 0.
    ///
    /// Departure: the reference computes that highest seqno over lost records too in
    /// its common path, so it rarely drops anything; we drop as the spec intends.
    pub fn finalize_incomplete(mut self, stoptime: Timestamp) -> Result<FinalizeOutcome, OwpError> {
        self.flush()?;
        self.lock()?;
        let r = self.incomplete_locked(stoptime);
        self.unlock_after(r)
    }

    fn incomplete_locked(&mut self, stoptime: Timestamp) -> Result<FinalizeOutcome, OwpError> {
        let npackets = self.npackets;
        self.apply_stop_rule(stoptime, npackets)?;
        let mut highest: Option<u32> = None;
        self.scan(|r| {
            if !r.is_lost() {
                highest = Some(highest.map_or(r.seq, |h| h.max(r.seq)));
            }
        })?;
        let kept = match highest {
            None => self.compact(|_| false)?,
            Some(h) => self.compact(|r| !r.is_lost() || r.seq < h)?,
        };
        self.cut_after_records(kept)?;
        self.complete(kept, 0, FINISHED_INCOMPLETE, 0)
    }

    /// Mark the file as failed (finished=0) and sync it; the control process deletes
    /// such files.
    pub fn finalize_error(mut self) -> Result<(), OwpError> {
        // Records may be useless, but flushing keeps the byte count honest for the
        // disk accounting until the file is removed.
        self.flush()?;
        self.write_finished(FINISHED_ERROR, 0)?;
        self.sync()
    }

    /// Give the file back (e.g. to close it explicitly).
    pub fn into_file(self) -> File {
        self.file
    }

    // File::lock is std since 1.89; the toolchain is 1.95 (common agreement) while the
    // workspace still declares rust-version 1.85.
    fn lock(&self) -> Result<(), OwpError> {
        // flock(LOCK_EX), released when the descriptor closes; see the module doc of
        // `owp` for why flock and not fcntl.
        self.file
            .lock()
            .map_err(|e| OwpError::io(&self.path, "lock", e))
    }

    /// On an error, release the lock (see [`ReceiveWriter::unlock_after`]); on success
    /// keep it.
    fn unlock_on_error<T>(&self, r: Result<T, OwpError>) -> Result<T, OwpError> {
        if r.is_err() {
            let _ = self.file.unlock();
        }
        r
    }

    /// Release the lock explicitly: the descriptor may be shared with another process
    /// (fd passing), and a flock lasts until every copy is closed.
    fn unlock_after<T>(&self, r: Result<T, OwpError>) -> Result<T, OwpError> {
        let u = self
            .file
            .unlock()
            .map_err(|e| OwpError::io(&self.path, "unlock", e));
        let v = r?;
        u?;
        Ok(v)
    }

    fn sync(&self) -> Result<(), OwpError> {
        self.file
            .sync_all()
            .map_err(|e| OwpError::io(&self.path, "fsync", e))
    }

    fn write_finished(&self, finished: u32, next_seqno: u32) -> Result<(), OwpError> {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&finished.to_be_bytes());
        b[4..].copy_from_slice(&next_seqno.to_be_bytes());
        self.file
            .write_all_at(&b, 8)
            .map_err(|e| OwpError::io(&self.path, "finished", e))
    }

    /// Visit every on-disk record in file order.
    fn scan(&self, mut f: impl FnMut(&PacketRecord)) -> Result<(), OwpError> {
        let mut chunk = vec![0u8; FINALIZE_CHUNK * V3_RECORD_LEN as usize];
        let mut i = 0u64;
        while i < self.on_disk {
            let n = (self.on_disk - i).min(FINALIZE_CHUNK as u64) as usize;
            let bytes = &mut chunk[..n * V3_RECORD_LEN as usize];
            self.file
                .read_exact_at(bytes, self.header_len + i * V3_RECORD_LEN)
                .map_err(|e| OwpError::io(&self.path, "read back records", e))?;
            for c in bytes.chunks_exact(V3_RECORD_LEN as usize) {
                f(&record_from_v3(c));
            }
            i += n as u64;
        }
        Ok(())
    }

    /// Keep the records for which `keep` is true, in order, compacted in place; returns
    /// how many were kept. Writes only ever go to octets already read.
    fn compact(&mut self, mut keep: impl FnMut(&PacketRecord) -> bool) -> Result<u64, OwpError> {
        let rl = V3_RECORD_LEN as usize;
        let mut chunk = vec![0u8; FINALIZE_CHUNK * rl];
        let mut out = Vec::with_capacity(FINALIZE_CHUNK * rl);
        let (mut i, mut kept) = (0u64, 0u64);
        while i < self.on_disk {
            let n = (self.on_disk - i).min(FINALIZE_CHUNK as u64) as usize;
            let bytes = &mut chunk[..n * rl];
            self.file
                .read_exact_at(bytes, self.header_len + i * V3_RECORD_LEN)
                .map_err(|e| OwpError::io(&self.path, "read back records", e))?;
            out.clear();
            for c in bytes.chunks_exact(rl) {
                if keep(&record_from_v3(c)) {
                    out.extend_from_slice(c);
                }
            }
            // Skip the write only when nothing has moved: no record dropped before or
            // inside this chunk.
            if !out.is_empty() && (kept != i || out.len() != bytes.len()) {
                self.file
                    .write_all_at(&out, self.header_len + kept * V3_RECORD_LEN)
                    .map_err(|e| OwpError::io(&self.path, "compact records", e))?;
            }
            kept += (out.len() / rl) as u64;
            i += n as u64;
        }
        self.on_disk = kept;
        Ok(kept)
    }

    /// Cut the file after the `kept` records and write the skip ranges' offset there
    /// (protocol.md §7.7), before any range is written: a reader then ends the records
    /// at that offset (when records were kept; with none, the file is locked until
    /// finished and [`ReceiveWriter::resume`] knows the offset), so skip ranges are
    /// never taken for records.
    fn cut_after_records(&mut self, kept: u64) -> Result<(), OwpError> {
        let records_end = self.records_end(kept);
        self.file
            .set_len(records_end)
            .map_err(|e| OwpError::io(&self.path, "truncate", e))?;
        self.file
            .write_all_at(&records_end.to_be_bytes(), 24)
            .map_err(|e| OwpError::io(&self.path, "oset_skips", e))
    }

    fn records_end(&self, kept: u64) -> u64 {
        self.header_len + kept * V3_RECORD_LEN
    }

    /// The end of the reference's final write order (protocol.md §7.7), once the records
    /// and skip ranges are in place: Number of Records, Number of Skip Ranges, then
    /// Finished and Next Seqno; then fsync. Finished comes last, so a reader never sees a
    /// file marked complete whose counts are not written yet.
    fn complete(
        &mut self,
        kept: u64,
        num_skips: u32,
        finished: u32,
        next_seqno: u32,
    ) -> Result<FinalizeOutcome, OwpError> {
        let nrec = u32::try_from(kept).map_err(|_| OwpError::Usage {
            path: self.path.clone(),
            detail: format!("{kept} records do not fit the header's 32-bit count"),
        })?;
        self.file
            .write_all_at(&nrec.to_be_bytes(), 20)
            .map_err(|e| OwpError::io(&self.path, "num_records", e))?;
        self.file
            .write_all_at(&num_skips.to_be_bytes(), 16)
            .map_err(|e| OwpError::io(&self.path, "num_skips", e))?;
        self.write_finished(finished, next_seqno)?;
        self.sync()?;
        Ok(FinalizeOutcome {
            finished,
            next_seqno,
            num_records: kept,
            num_skips,
        })
    }
}

/// A Stop-Sessions finalisation under way ([`ReceiveWriter::begin_stop`]): the kept
/// records are in place and the file is locked. The peer's skip ranges are written
/// after the records as they arrive ([`StopFinalizer::skips`]); then
/// [`StopFinalizer::finish`] completes the header (finished=1), or, if the peer's
/// record never arrives whole, [`StopFinalizer::incomplete`] or
/// [`StopFinalizer::error`] ends it otherwise. Dropped unfinished, the file stays
/// live (finished=2) with its records intact.
pub struct StopFinalizer {
    writer: ReceiveWriter,
    kept: u64,
    next_seqno: u32,
    num_skips: u32,
}

impl StopFinalizer {
    /// Append skip ranges after the records; they go to the file at once.
    pub fn skips(&mut self, skips: &[SkipRange]) -> Result<(), OwpError> {
        let w = &self.writer;
        let total = u32::try_from(skips.len())
            .ok()
            .and_then(|n| self.num_skips.checked_add(n))
            .ok_or_else(|| OwpError::Usage {
                path: w.path.clone(),
                detail: format!("{} + {} skip ranges", self.num_skips, skips.len()),
            })?;
        let mut sk = Vec::with_capacity(skips.len() * SKIP_LEN as usize);
        for s in skips {
            sk.extend_from_slice(&s.first.to_be_bytes());
            sk.extend_from_slice(&s.last.to_be_bytes());
        }
        let at = w.records_end(self.kept) + u64::from(self.num_skips) * SKIP_LEN;
        w.file
            .write_all_at(&sk, at)
            .map_err(|e| OwpError::io(&w.path, "skip ranges", e))?;
        self.num_skips = total;
        Ok(())
    }

    /// Skip ranges written so far.
    pub fn num_skips(&self) -> u32 {
        self.num_skips
    }

    /// Complete the file: the counts, then finished=1 with the peer's Next Seqno.
    pub fn finish(mut self) -> Result<FinalizeOutcome, OwpError> {
        let r = self
            .writer
            .complete(self.kept, self.num_skips, FINISHED_NORMAL, self.next_seqno);
        self.writer.unlock_after(r)
    }

    /// The peer's record never arrived whole (control went away): finalise as
    /// [`ReceiveWriter::finalize_incomplete`] does, the ranges written so far cut off.
    pub fn incomplete(mut self, stoptime: Timestamp) -> Result<FinalizeOutcome, OwpError> {
        let r = self.writer.incomplete_locked(stoptime);
        self.writer.unlock_after(r)
    }

    /// Mark the file as failed (finished=0), as [`ReceiveWriter::finalize_error`].
    pub fn error(self) -> Result<(), OwpError> {
        let w = &self.writer;
        let r = w.write_finished(FINISHED_ERROR, 0).and_then(|()| w.sync());
        w.unlock_after(r)
    }
}

fn check_not_append(file: &File, path: &Path) -> Result<(), OwpError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(file, FcntlArg::F_GETFL).map_err(|e| {
        OwpError::io(
            path,
            "fcntl(F_GETFL)",
            std::io::Error::from_raw_os_error(e as i32),
        )
    })?;
    if OFlag::from_bits_truncate(flags).contains(OFlag::O_APPEND) {
        return Err(OwpError::Usage {
            path: path.to_path_buf(),
            detail: "the data file must not be opened with O_APPEND".into(),
        });
    }
    Ok(())
}

/// The receiving engine appends straight into the data file (docs/processes.md "Testers").
impl crate::engine::RecordSink for ReceiveWriter {
    fn record(&mut self, r: &PacketRecord) -> std::io::Result<()> {
        ReceiveWriter::record(self, r).map_err(std::io::Error::other)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        ReceiveWriter::flush(self).map_err(std::io::Error::other)
    }
}
