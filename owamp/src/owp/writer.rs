//! Writing v3 `.owp` files as the client does after a Fetch-Session (protocol.md §2.7, §7.7):
//! the header carries Finished, Next Seqno, the skip count and the record count from the
//! Fetch-Ack; the skip ranges come first, then the records. Offsets follow the
//! reference's `OWPWriteDataHeader`.

use super::session::SessionHeader;
use super::{
    FINISHED_INCOMPLETE, MAGIC, OwpError, SKIP_LEN, V3_FIXED_LEN, V3_RECORD_LEN, VERSION_V3,
};
use crate::types::{PacketRecord, SkipRange};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The values the header takes from the Fetch-Ack (protocol.md §2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchInfo {
    /// Finished word from the Fetch-Ack (1 normal, 2 incomplete).
    pub finished: u32,
    pub next_seqno: u32,
    /// Number of records that will follow.
    pub num_records: u32,
}

/// The 40 fixed octets plus the stored Request-Session of a v3 header (protocol.md §7.7).
#[allow(clippy::too_many_arguments)]
pub fn write_v3_header(
    session: &SessionHeader,
    finished: u32,
    next_seqno: u32,
    num_skips: u32,
    num_records: u32,
    oset_skips: u64,
    oset_data: u64,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(V3_FIXED_LEN as usize + session.raw().len());
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION_V3.to_be_bytes());
    b.extend_from_slice(&finished.to_be_bytes());
    b.extend_from_slice(&next_seqno.to_be_bytes());
    b.extend_from_slice(&num_skips.to_be_bytes());
    b.extend_from_slice(&num_records.to_be_bytes());
    b.extend_from_slice(&oset_skips.to_be_bytes());
    b.extend_from_slice(&oset_data.to_be_bytes());
    b.extend_from_slice(session.raw());
    b
}

/// Length of a v3 header for this session: `40 + 112 + 16·(nslots+1)`.
pub(crate) fn v3_header_len(session: &SessionHeader) -> u64 {
    V3_FIXED_LEN + session.raw().len() as u64
}

/// Writes a fetched session: header and skip ranges at `begin`, then one
/// [`FetchedFileWriter::record`] per record from the Fetch stream, then
/// [`FetchedFileWriter::finish`].
pub struct FetchedFileWriter<W: Write> {
    w: W,
    path: PathBuf,
    expected: u32,
    written: u32,
    /// Skip ranges still to be written after the records (receiver layout only).
    trailing_skips: Vec<SkipRange>,
}

impl<W: Write> FetchedFileWriter<W> {
    /// The layout of a file saved by Fetch-Session (owping `-T`, owfetch): skip ranges
    /// first, then the records (protocol.md §7.7).
    pub fn begin(
        w: W,
        path: impl AsRef<Path>,
        session: &SessionHeader,
        info: FetchInfo,
        skips: &[SkipRange],
    ) -> Result<Self, OwpError> {
        Self::begin_layout(w, path, session, info, skips, false)
    }

    /// The layout of a file written by a receiver (owping `-F`: the reference's local
    /// receiver endpoint writes the records, then appends the skip ranges at
    /// Stop-Sessions and sets their offset just past the records, protocol.md §7.7/§7.8,
    /// api.c `OWPWriteDataHeaderNumSkipRecs`). The skips are written by `finish`.
    pub fn begin_receiver_layout(
        w: W,
        path: impl AsRef<Path>,
        session: &SessionHeader,
        info: FetchInfo,
        skips: &[SkipRange],
    ) -> Result<Self, OwpError> {
        Self::begin_layout(w, path, session, info, skips, true)
    }

    fn begin_layout(
        mut w: W,
        path: impl AsRef<Path>,
        session: &SessionHeader,
        info: FetchInfo,
        skips: &[SkipRange],
        receiver: bool,
    ) -> Result<Self, OwpError> {
        let path = path.as_ref().to_path_buf();
        let nskips = u32::try_from(skips.len()).map_err(|_| OwpError::Usage {
            path: path.clone(),
            detail: format!("{} skip ranges", skips.len()),
        })?;
        // owping decodes the Request-Session from the fetch stream and encodes it
        // again (OWPWriteDataHeader), so MBZ octets and flag values are canonical.
        let session =
            &SessionHeader::from_fields(session.fields()).map_err(|e| OwpError::Usage {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        let hlen = v3_header_len(session);
        // Fetched: the offsets as OWPFetchSession (capi.c) gets them from
        // OWPWriteDataHeader: skips first if there are any. Without skips the skip offset
        // is the header end when there are records (its header struct's record size is
        // still 0 there, so "past the records" is the header end), else 0.
        // Receiver: records at the header end, skips just past the records.
        let (oset_skips, oset_data) = if receiver {
            (hlen + V3_RECORD_LEN * u64::from(info.num_records), hlen)
        } else if nskips > 0 {
            (hlen, hlen + SKIP_LEN * u64::from(nskips))
        } else if info.num_records > 0 {
            (hlen, hlen)
        } else {
            (0, hlen)
        };
        // The reference stores only 0 or 1 as given; anything else becomes 2.
        let finished = match info.finished {
            0 | 1 => info.finished,
            _ => FINISHED_INCOMPLETE,
        };
        let mut out = write_v3_header(
            session,
            finished,
            info.next_seqno,
            nskips,
            info.num_records,
            oset_skips,
            oset_data,
        );
        let trailing_skips = if receiver {
            skips.to_vec()
        } else {
            push_skips(&mut out, skips);
            Vec::new()
        };
        w.write_all(&out)
            .map_err(|e| OwpError::io(&path, "header", e))?;
        Ok(FetchedFileWriter {
            w,
            path,
            expected: info.num_records,
            written: 0,
            trailing_skips,
        })
    }

    pub fn record(&mut self, rec: &PacketRecord) -> Result<(), OwpError> {
        if self.written >= self.expected {
            return Err(OwpError::Usage {
                path: self.path.clone(),
                detail: format!("more than the {} announced records", self.expected),
            });
        }
        self.w
            .write_all(&rec.to_bytes())
            .map_err(|e| OwpError::io(&self.path, "data records", e))?;
        self.written += 1;
        Ok(())
    }

    /// Check that every announced record was written, flush, and hand back the writer.
    pub fn finish(mut self) -> Result<W, OwpError> {
        if self.written != self.expected {
            return Err(OwpError::Usage {
                path: self.path.clone(),
                detail: format!(
                    "{} records written, {} announced",
                    self.written, self.expected
                ),
            });
        }
        if !self.trailing_skips.is_empty() {
            let mut out = Vec::with_capacity(self.trailing_skips.len() * SKIP_LEN as usize);
            push_skips(&mut out, &self.trailing_skips);
            self.w
                .write_all(&out)
                .map_err(|e| OwpError::io(&self.path, "skip ranges", e))?;
        }
        self.w
            .flush()
            .map_err(|e| OwpError::io(&self.path, "flush", e))?;
        Ok(self.w)
    }
}

/// Skip ranges as stored in a file: First, Last, 4 octets each (protocol.md §7.7).
fn push_skips(out: &mut Vec<u8>, skips: &[SkipRange]) {
    for s in skips {
        out.extend_from_slice(&s.first.to_be_bytes());
        out.extend_from_slice(&s.last.to_be_bytes());
    }
}

#[allow(dead_code)]
const _RECORD_LEN_IS_25: () = assert!(V3_RECORD_LEN as usize == PacketRecord::WIRE_LEN);
