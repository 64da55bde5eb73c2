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
//! bounded whatever the file size.

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
        let (header_len, npackets, timeout) = {
            let f = OwpFile::from_reader(&file, &path)?;
            let h = f.header();
            if h.version != VERSION_V3 {
                return Err(OwpError::UnsupportedVersion {
                    path,
                    version: h.version,
                });
            }
            let s = f.session()?;
            (h.oset_data, s.npackets(), s.timeout())
        };
        let len = file
            .metadata()
            .map_err(|e| OwpError::io(&path, "file size", e))?
            .len();
        Ok(ReceiveWriter {
            file,
            path,
            header_len,
            npackets,
            timeout,
            on_disk: len.saturating_sub(header_len) / V3_RECORD_LEN,
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

    /// Finalise after a Stop-Sessions (protocol.md §7.8): keep a record only if
    /// `seq < next_seqno` and `send_ts ≤ stoptime − Timeout`; a received record with
    /// `seq ≥ next_seqno` makes the session invalid (the file is marked finished=0 and
    /// [`OwpError::SessionInvalid`] returned). Then the skip ranges are appended and the
    /// header completed with finished=1.
    pub fn finalize_with_stop(
        mut self,
        stoptime: Timestamp,
        next_seqno: u32,
        skips: &[SkipRange],
    ) -> Result<FinalizeOutcome, OwpError> {
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
        let r = self.stop_locked(stoptime, next_seqno, skips);
        self.unlock_after(r)
    }

    fn stop_locked(
        &mut self,
        stoptime: Timestamp,
        next_seqno: u32,
        skips: &[SkipRange],
    ) -> Result<FinalizeOutcome, OwpError> {
        let kept = self.apply_stop_rule(stoptime, next_seqno)?;
        self.complete(kept, skips, FINISHED_NORMAL, next_seqno)
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
        self.complete(kept, &[], FINISHED_INCOMPLETE, 0)
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

    /// The reference's final write order (protocol.md §7.7): records (already in place) →
    /// Number of Records → Number of Skip Ranges and their offset → skip ranges →
    /// finished/Next Seqno; then fsync.
    fn complete(
        &mut self,
        kept: u64,
        skips: &[SkipRange],
        finished: u32,
        next_seqno: u32,
    ) -> Result<FinalizeOutcome, OwpError> {
        let records_end = self.header_len + kept * V3_RECORD_LEN;
        self.file
            .set_len(records_end)
            .map_err(|e| OwpError::io(&self.path, "truncate", e))?;
        let nrec = u32::try_from(kept).map_err(|_| OwpError::Usage {
            path: self.path.clone(),
            detail: format!("{kept} records do not fit the header's 32-bit count"),
        })?;
        let nskips = u32::try_from(skips.len()).map_err(|_| OwpError::Usage {
            path: self.path.clone(),
            detail: format!("{} skip ranges", skips.len()),
        })?;
        self.file
            .write_all_at(&nrec.to_be_bytes(), 20)
            .map_err(|e| OwpError::io(&self.path, "num_records", e))?;
        self.file
            .write_all_at(&nskips.to_be_bytes(), 16)
            .map_err(|e| OwpError::io(&self.path, "num_skips", e))?;
        self.file
            .write_all_at(&records_end.to_be_bytes(), 24)
            .map_err(|e| OwpError::io(&self.path, "oset_skips", e))?;
        let mut sk = Vec::with_capacity(skips.len() * SKIP_LEN as usize);
        for s in skips {
            sk.extend_from_slice(&s.first.to_be_bytes());
            sk.extend_from_slice(&s.last.to_be_bytes());
        }
        self.file
            .write_all_at(&sk, records_end)
            .map_err(|e| OwpError::io(&self.path, "skip ranges", e))?;
        self.write_finished(finished, next_seqno)?;
        self.sync()?;
        Ok(FinalizeOutcome {
            finished,
            next_seqno,
            num_records: kept,
            num_skips: nskips,
        })
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
