//! Reading `.owp` files: v3 (25-octet records), v2 and v0 (24-octet records) (protocol.md §7.7).
//!
//! Every length and offset from the header is checked against the real file size before
//! it is used to seek or to size an allocation, so a truncated or hostile file yields a
//! typed [`OwpError`] naming the path and the field, never a panic or a huge allocation.

use super::session::{PREAMBLE_LEN, SessionHeader};
use super::{
    FINISHED_NORMAL, MAGIC, OwpError, SKIP_LEN, V2_RECORD_LEN, V3_FIXED_LEN, V3_RECORD_LEN,
    VERSION_V3,
};
use crate::types::{ErrorEstimate, Num64, PacketRecord, SkipRange};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The decoded header of an `.owp` file, with offsets already validated against the
/// file size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// 0, 2 or 3.
    pub version: u32,
    /// 0 error/live, 1 normal, 2 incomplete; v0 files have none (reported as 0).
    pub finished: u32,
    /// Valid when `finished == 1` (v3 only; 0 otherwise).
    pub next_seqno: u32,
    pub num_skips: u32,
    /// The number of records to read: the stored count when finished = 1, otherwise
    /// (live, failed or incomplete) `(end − oset_data) / record_len`, as the reference
    /// reads it.
    pub num_records: u64,
    /// The Number of Records word as stored (0 while live).
    pub stored_num_records: u32,
    /// Offset of the skip ranges (v3; 0 if not yet written).
    pub oset_skips: u64,
    /// Offset of the first record.
    pub oset_data: u64,
    /// End of the header: `min(nonzero offsets)` for v3 (protocol.md §7.7).
    pub header_len: u64,
    /// 25 (v3) or 24 (v0/v2).
    pub record_len: u64,
    /// The stored Request-Session (absent in v0 files).
    pub session: Option<SessionHeader>,
}

/// An open `.owp` file: its header, and the records and skip ranges on demand.
pub struct OwpFile<R> {
    reader: R,
    path: PathBuf,
    header: FileHeader,
    file_len: u64,
}

impl OwpFile<BufReader<File>> {
    /// Open and validate the header of the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OwpError> {
        let path = path.as_ref();
        let f = File::open(path).map_err(|e| OwpError::io(path, "open", e))?;
        OwpFile::from_reader(BufReader::new(f), path)
    }
}

fn read_exact_at<R: Read + Seek>(
    r: &mut R,
    path: &Path,
    file_len: u64,
    offset: u64,
    buf: &mut [u8],
    field: &'static str,
) -> Result<(), OwpError> {
    let need = buf.len() as u64;
    if offset.checked_add(need).is_none_or(|end| end > file_len) {
        return Err(OwpError::Truncated {
            path: path.to_path_buf(),
            field,
            offset,
            need,
            have: file_len,
        });
    }
    r.seek(SeekFrom::Start(offset))
        .map_err(|e| OwpError::io(path, field, e))?;
    r.read_exact(buf).map_err(|e| OwpError::io(path, field, e))
}

fn be32(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(o..o + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(o..o + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

/// Decode a 24-octet v0/v2 record: seq(4) send ts(8) send err(2) recv ts(8) recv err(2);
/// the TTL was not recorded, so it reads as 255 (protocol.md §2.9).
pub(crate) fn record_from_v2(b: &[u8]) -> PacketRecord {
    let err = |o: usize| {
        ErrorEstimate::from_bytes([
            b.get(o).copied().unwrap_or(0),
            b.get(o + 1).copied().unwrap_or(0),
        ])
    };
    PacketRecord {
        seq: be32(b, 0),
        send_ts: Num64(be64(b, 4)),
        send_err: err(12),
        recv_ts: Num64(be64(b, 14)),
        recv_err: err(22),
        ttl: 255,
    }
}

pub(crate) fn record_from_v3(b: &[u8]) -> PacketRecord {
    let mut a = [0u8; 25];
    if let Some(s) = b.get(..25) {
        a.copy_from_slice(s);
    }
    PacketRecord::from_bytes(&a)
}

impl<R: Read + Seek> OwpFile<R> {
    /// Validate the header of an `.owp` file read through `reader`; `path` only names
    /// the file in errors.
    pub fn from_reader(mut reader: R, path: impl AsRef<Path>) -> Result<Self, OwpError> {
        let path = path.as_ref().to_path_buf();
        let file_len = reader
            .seek(SeekFrom::End(0))
            .map_err(|e| OwpError::io(&path, "file size", e))?;
        let mut head = [0u8; 8];
        read_exact_at(&mut reader, &path, file_len, 0, &mut head, "magic")?;
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&head[..4]);
        if magic != MAGIC {
            return Err(OwpError::BadMagic { path, found: magic });
        }
        let version = be32(&head, 4);
        let header = match version {
            VERSION_V3 => parse_v3(&mut reader, &path, file_len)?,
            2 | 0 => parse_v0_v2(&mut reader, &path, file_len, version)?,
            _ => return Err(OwpError::UnsupportedVersion { path, version }),
        };
        Ok(OwpFile {
            reader,
            path,
            header,
            file_len,
        })
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The stored Request-Session, or an error for v0 files (which have none).
    pub fn session(&self) -> Result<&SessionHeader, OwpError> {
        self.header.session.as_ref().ok_or_else(|| OwpError::Usage {
            path: self.path.clone(),
            detail: "version 0 files carry no session header".into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The skip ranges (v3 only; empty otherwise). The count was validated against the
    /// file size, so the allocation is bounded by it.
    pub fn skips(&mut self) -> Result<Vec<SkipRange>, OwpError> {
        let n = self.header.num_skips as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n * SKIP_LEN as usize];
        read_exact_at(
            &mut self.reader,
            &self.path,
            self.file_len,
            self.header.oset_skips,
            &mut buf,
            "skip ranges",
        )?;
        Ok(buf
            .chunks_exact(SKIP_LEN as usize)
            .map(|c| SkipRange {
                first: be32(c, 0),
                last: be32(c, 4),
            })
            .collect())
    }

    /// Stream the records in file order.
    pub fn records(&mut self) -> Result<RecordIter<'_, R>, OwpError> {
        self.reader
            .seek(SeekFrom::Start(self.header.oset_data))
            .map_err(|e| OwpError::io(&self.path, "data records", e))?;
        Ok(RecordIter {
            reader: &mut self.reader,
            path: &self.path,
            remaining: self.header.num_records,
            record_len: self.header.record_len,
            buf: Vec::new(),
            pos: 0,
        })
    }

    /// All records in a Vec (the count is bounded by the file size).
    pub fn read_records(&mut self) -> Result<Vec<PacketRecord>, OwpError> {
        self.records()?.collect()
    }
}

fn parse_v3<R: Read + Seek>(r: &mut R, path: &Path, file_len: u64) -> Result<FileHeader, OwpError> {
    let mut fixed = [0u8; V3_FIXED_LEN as usize];
    read_exact_at(r, path, file_len, 0, &mut fixed, "v3 header")?;
    let finished = be32(&fixed, 8);
    let next_seqno = be32(&fixed, 12);
    let num_skips = be32(&fixed, 16);
    let stored_num_records = be32(&fixed, 20);
    let oset_skips = be64(&fixed, 24);
    let oset_data = be64(&fixed, 32);
    let bad = |field: &'static str, detail: String| OwpError::BadHeader {
        path: path.to_path_buf(),
        field,
        detail,
    };
    // Header end = min(nonzero offsets): oset_skips may be 0 (not yet written) or
    // equal to oset_data when there are no skips (protocol.md §7.7).
    let header_len = match (oset_skips, oset_data) {
        (0, 0) => return Err(bad("oset_data", "0".into())),
        (0, d) => d,
        (s, 0) => s,
        (s, d) => s.min(d),
    };
    if oset_data == 0 {
        return Err(bad("oset_data", "0".into()));
    }
    if header_len > file_len {
        return Err(OwpError::Truncated {
            path: path.to_path_buf(),
            field: "header",
            offset: 0,
            need: header_len,
            have: file_len,
        });
    }
    let mut pre = [0u8; PREAMBLE_LEN];
    read_exact_at(r, path, file_len, V3_FIXED_LEN, &mut pre, "Request-Session")?;
    let session = read_session(r, path, file_len, V3_FIXED_LEN, &pre, header_len)?;
    // Records end where the skips start if those follow them, else at end of file.
    let records_end = if oset_skips > oset_data {
        oset_skips.min(file_len)
    } else {
        file_len
    };
    let avail = records_end.saturating_sub(oset_data) / V3_RECORD_LEN;
    // As the reference's OWPReadDataHeader: the stored count must fit the file; a
    // file not finished normally (0 = error, 2 = incomplete, which is also what the
    // reference's receiver writes while the session is live) is counted from its
    // size; only with finished = 1 is the stored count authoritative.
    if (stored_num_records as u64) > avail {
        return Err(OwpError::Truncated {
            path: path.to_path_buf(),
            field: "num_records",
            offset: oset_data,
            need: stored_num_records as u64 * V3_RECORD_LEN,
            have: records_end.saturating_sub(oset_data),
        });
    }
    let num_records = if finished != FINISHED_NORMAL {
        avail
    } else {
        stored_num_records as u64
    };
    if num_skips > 0 {
        if oset_skips == 0 {
            return Err(bad("oset_skips", format!("0 with {num_skips} skip ranges")));
        }
        let need = num_skips as u64 * SKIP_LEN;
        if oset_skips.checked_add(need).is_none_or(|e| e > file_len) {
            return Err(OwpError::Truncated {
                path: path.to_path_buf(),
                field: "skip ranges",
                offset: oset_skips,
                need,
                have: file_len,
            });
        }
    }
    Ok(FileHeader {
        version: VERSION_V3,
        finished,
        next_seqno,
        num_skips,
        num_records,
        stored_num_records,
        oset_skips,
        oset_data,
        header_len,
        record_len: V3_RECORD_LEN,
        session: Some(session),
    })
}

/// Read the slots after a preamble at `at` and decode the whole stored Request-Session;
/// it must end by `header_end`.
fn read_session<R: Read + Seek>(
    r: &mut R,
    path: &Path,
    file_len: u64,
    at: u64,
    preamble: &[u8; PREAMBLE_LEN],
    header_end: u64,
) -> Result<SessionHeader, OwpError> {
    let nslots = SessionHeader::nslots_in_preamble(preamble).unwrap_or(0);
    let len = SessionHeader::stored_len(nslots).unwrap_or(u64::MAX);
    if at.checked_add(len).is_none_or(|e| e > header_end) {
        return Err(OwpError::BadHeader {
            path: path.to_path_buf(),
            field: "nslots",
            detail: format!("{nslots} slots do not fit in a {header_end}-octet header"),
        });
    }
    // Bounded: len ≤ header_end ≤ file_len.
    let mut raw = vec![0u8; len as usize];
    read_exact_at(r, path, file_len, at, &mut raw, "slots")?;
    SessionHeader::parse(&raw).map_err(|e| match e {
        OwpError::BadSession { field, detail } => OwpError::BadHeader {
            path: path.to_path_buf(),
            field,
            detail,
        },
        other => other,
    })
}

fn parse_v0_v2<R: Read + Seek>(
    r: &mut R,
    path: &Path,
    file_len: u64,
    version: u32,
) -> Result<FileHeader, OwpError> {
    let mut fixed = [0u8; 8];
    read_exact_at(r, path, file_len, 8, &mut fixed, "header length")?;
    let header_len = u64::from_be_bytes(fixed);
    if header_len < 16 || header_len > file_len {
        return Err(OwpError::BadHeader {
            path: path.to_path_buf(),
            field: "header length",
            detail: format!("{header_len} (file has {file_len} octets)"),
        });
    }
    let (finished, session) = if version == 2 {
        let mut fin = [0u8; 4];
        read_exact_at(r, path, file_len, 16, &mut fin, "finished")?;
        let mut pre = [0u8; PREAMBLE_LEN];
        read_exact_at(r, path, file_len, 20, &mut pre, "Request-Session")?;
        let s = read_session(r, path, file_len, 20, &pre, header_len)?;
        (u32::from_be_bytes(fin), Some(s))
    } else {
        (0, None)
    };
    let n = (file_len - header_len) / V2_RECORD_LEN;
    Ok(FileHeader {
        version,
        finished,
        next_seqno: 0,
        num_skips: 0,
        num_records: n,
        stored_num_records: 0,
        oset_skips: 0,
        oset_data: header_len,
        header_len,
        record_len: V2_RECORD_LEN,
        session,
    })
}

/// Streams records from a file in chunks; yields an error (then stops) on a short read.
pub struct RecordIter<'a, R> {
    reader: &'a mut R,
    path: &'a Path,
    remaining: u64,
    record_len: u64,
    buf: Vec<u8>,
    pos: usize,
}

/// Records per read: 1024 records is 25 KiB.
const CHUNK_RECORDS: u64 = 1024;

impl<R: Read + Seek> Iterator for RecordIter<'_, R> {
    type Item = Result<PacketRecord, OwpError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rl = self.record_len as usize;
        if self.pos + rl > self.buf.len() {
            if self.remaining == 0 {
                return None;
            }
            let n = self.remaining.min(CHUNK_RECORDS);
            self.buf.resize((n * self.record_len) as usize, 0);
            self.pos = 0;
            if let Err(e) = self.reader.read_exact(&mut self.buf) {
                self.remaining = 0;
                self.buf.clear();
                return Some(Err(OwpError::io(self.path, "data records", e)));
            }
            self.remaining -= n;
        }
        let chunk = self.buf.get(self.pos..self.pos + rl)?;
        self.pos += rl;
        Some(Ok(if rl == V3_RECORD_LEN as usize {
            record_from_v3(chunk)
        } else {
            record_from_v2(chunk)
        }))
    }
}
