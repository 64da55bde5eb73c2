//! The client's own receive data ("from" session): cut per the server's Stop-Sessions
//! (protocol.md §7.8) and kept as a session (and an `.owp` file with -F).

use crate::endpoints::RecvResult;
use crate::output::SessionData;
use owamp::owp::{FINISHED_NORMAL, FetchInfo, FetchedFileWriter, SessionFields, SessionHeader};
use owamp::wire::{RequestSession, StopSessions};
use owamp::{Num64, PacketRecord, Sid, SkipRange, Timestamp};
use std::path::{Path, PathBuf};

/// Keeps the receive records that the Stop-Sessions rule of protocol.md §7.8 keeps: seq <
/// next and send time ≤ stoptime − Timeout. A *received* record with seq ≥ next means
/// the sender lied or the data is corrupt: the session is invalid.
pub fn apply_stop(
    records: Vec<PacketRecord>,
    next: u32,
    stoptime: Timestamp,
    timeout: Num64,
) -> Result<Vec<PacketRecord>, u32> {
    let limit = stoptime.saturating_sub(timeout);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        if r.seq >= next {
            if !r.is_lost() {
                return Err(r.seq);
            }
            continue;
        }
        if r.send_ts <= limit {
            out.push(r);
        }
    }
    Ok(out)
}

pub(crate) fn finish_from(
    theirs: &StopSessions,
    sid: Sid,
    req: &RequestSession,
    rx: Option<std::thread::Result<RecvResult>>,
    stoptime: Timestamp,
    timeout: Num64,
    save: Option<&Path>,
) -> Result<SessionData, String> {
    let records = match rx {
        Some(Ok(Ok((_, recs)))) => recs,
        Some(Ok(Err(e))) => return Err(format!("local receiver: {e}")),
        _ => return Err("local receiver thread failed".into()),
    };
    let Some(st) = theirs.sessions.iter().find(|s| s.sid == sid) else {
        return Err(format!(
            "the server's Stop-Sessions has no record for the \"from\" session {}",
            sid.to_hex()
        ));
    };
    let next = if st.next_seqno == u32::MAX {
        req.num_packets
    } else {
        st.next_seqno
    };
    if next > req.num_packets {
        return Err(format!(
            "the server's Stop-Sessions claims Next Seqno {next} for {} packets",
            req.num_packets
        ));
    }
    let records = apply_stop(records, next, stoptime, timeout).map_err(|seq| {
        format!("session invalid: packet {seq} received but the sender stopped at {next}")
    })?;
    let fields = session_fields(req, sid);
    let session = SessionHeader::from_fields(&fields).map_err(|e| e.to_string())?;
    let label = save.map_or_else(|| PathBuf::from("\"from\" session"), Path::to_path_buf);
    if let Some(path) = save {
        let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        write_receive_file(
            std::io::BufWriter::new(f),
            path,
            &session,
            FINISHED_NORMAL,
            next,
            &records,
            &st.skips,
        )?;
    }
    Ok(SessionData {
        label: label.display().to_string(),
        session,
        finished: FINISHED_NORMAL,
        records,
        skips: st.skips.clone(),
    })
}

/// The stored form of a Request-Session (the `.owp` header's), with its SID.
pub fn session_fields(req: &RequestSession, sid: Sid) -> SessionFields {
    SessionFields {
        ipvn: req.ipvn(),
        conf_sender: req.conf_sender,
        conf_receiver: req.conf_receiver,
        npackets: req.num_packets,
        sender_port: req.sender_port,
        receiver_port: req.receiver_port,
        sender_addr: req.sender_addr,
        receiver_addr: req.receiver_addr,
        sid,
        padding: req.padding,
        start_time: req.start_time,
        timeout: req.timeout,
        type_p: req.type_p,
        slots: req.slots.clone(),
    }
}

/// Writes a receive session as the reference's local receiver endpoint leaves it (the
/// layout of owping `-F` and powstream files: records, then skip ranges), flushed.
pub fn write_receive_file<W: std::io::Write>(
    out: W,
    path: &Path,
    session: &SessionHeader,
    finished: u32,
    next_seqno: u32,
    records: &[PacketRecord],
    skips: &[SkipRange],
) -> Result<W, String> {
    let info = FetchInfo {
        finished,
        next_seqno,
        num_records: u32::try_from(records.len()).map_err(|_| "too many records")?,
    };
    let mut w = FetchedFileWriter::begin_receiver_layout(out, path, session, info, skips)
        .map_err(|e| e.to_string())?;
    for r in records {
        w.record(r).map_err(|e| e.to_string())?;
    }
    let mut inner = w.finish().map_err(|e| e.to_string())?;
    inner
        .flush()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(inner)
}

/// The receive records kept when a session ends without the sender's Stop-Sessions (the
/// control connection was lost; protocol.md §7.8, as `ReceiveWriter::finalize_incomplete`
/// does on disk): the Stop-Sessions rule with Next Seqno = Number of Packets and
/// `stoptime` = now, then the lost records above the highest received seqno are
/// dropped (nothing says they were ever sent); nothing is kept when nothing arrived.
pub fn apply_incomplete(
    records: Vec<PacketRecord>,
    npackets: u32,
    stoptime: Timestamp,
    timeout: Num64,
) -> Vec<PacketRecord> {
    let limit = stoptime.saturating_sub(timeout);
    let kept: Vec<PacketRecord> = records
        .into_iter()
        .filter(|r| r.seq < npackets && r.send_ts <= limit)
        .collect();
    let Some(highest) = kept.iter().filter(|r| !r.is_lost()).map(|r| r.seq).max() else {
        return Vec::new();
    };
    kept.into_iter()
        .filter(|r| !r.is_lost() || r.seq < highest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use owamp::ErrorEstimate;

    fn rec(seq: u32, send: u64, lost: bool) -> PacketRecord {
        PacketRecord {
            seq,
            send_err: ErrorEstimate::UNSYNC,
            recv_err: ErrorEstimate::UNSYNC,
            send_ts: Num64(send << 32),
            recv_ts: if lost {
                Num64::ZERO
            } else {
                Num64((send << 32) + 1000)
            },
            ttl: 255,
        }
    }

    #[test]
    fn stop_rule() {
        let recs = vec![
            rec(0, 100, false),
            rec(1, 101, true),
            rec(2, 105, true),
            rec(3, 106, true),
        ];
        // next = 3: lost record 3 dropped; stoptime 107, T = 3: send ≤ 104 kept.
        let kept = apply_stop(recs.clone(), 3, Num64(107 << 32), Num64(3 << 32)).unwrap();
        assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![0, 1]);
        // A received record at or beyond next invalidates the session.
        assert_eq!(
            apply_stop(recs, 0, Num64(200 << 32), Num64(1 << 32)),
            Err(0)
        );
    }

    #[test]
    fn incomplete_rule() {
        let recs = vec![
            rec(0, 100, false),
            rec(1, 101, true),
            rec(2, 102, false),
            rec(3, 103, true),
            rec(4, 109, false),
        ];
        // stoptime 110, T = 2: record 4 (sent at 109) is too recent; lost 3 lies above
        // the highest received seqno (2) and goes too.
        let kept = apply_incomplete(recs.clone(), 5, Num64(110 << 32), Num64(2 << 32));
        assert_eq!(
            kept.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        // Nothing received in time: nothing kept.
        assert!(apply_incomplete(recs, 5, Num64(101 << 32), Num64(2 << 32)).is_empty());
    }
}
