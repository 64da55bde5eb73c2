//! The client's own receive data ("from" session): cut per the server's Stop-Sessions
//! (spec §7.8) and kept as a session (and an `.owp` file with -F).

use crate::endpoints::RecvResult;
use crate::output::SessionData;
use owamp::owp::{FetchInfo, FetchedFileWriter, SessionFields, SessionHeader};
use owamp::wire::{RequestSession, StopSessions};
use owamp::{Num64, PacketRecord, Sid, Timestamp};
use std::path::{Path, PathBuf};

/// Keeps the receive records that the Stop-Sessions rule of spec §7.8 keeps: seq <
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
    let fields = SessionFields {
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
    };
    let session = SessionHeader::from_fields(&fields).map_err(|e| e.to_string())?;
    let label = save.map_or_else(|| PathBuf::from("\"from\" session"), Path::to_path_buf);
    if let Some(path) = save {
        let write = || -> Result<(), String> {
            let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let info = FetchInfo {
                finished: owamp::owp::FINISHED_NORMAL,
                next_seqno: next,
                num_records: u32::try_from(records.len()).map_err(|_| "too many records")?,
            };
            // The reference's -F file is written by its local receiver endpoint.
            let mut w = FetchedFileWriter::begin_receiver_layout(
                std::io::BufWriter::new(f),
                path,
                &session,
                info,
                &st.skips,
            )
            .map_err(|e| e.to_string())?;
            for r in &records {
                w.record(r).map_err(|e| e.to_string())?;
            }
            let mut inner = w.finish().map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut inner).map_err(|e| format!("{}: {e}", path.display()))
        };
        write()?;
    }
    Ok(SessionData {
        label: label.display().to_string(),
        session,
        finished: owamp::owp::FINISHED_NORMAL,
        records,
        skips: st.skips.clone(),
    })
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
}
