//! .owp files: round trips, hand-made reference-layout files (protocol.md §7.7), v0/v2, the
//! receive-side finalisation rules (protocol.md §7.8) and robustness against garbage.

use owamp::owp::{
    FetchInfo, FetchedFileWriter, OwpError, OwpFile, ReceiveWriter, SessionFields, SessionHeader,
};
use owamp::{ErrorEstimate, Num64, PacketRecord, Sid, SkipRange, Slot, SlotKind};
use proptest::prelude::*;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr};

const START: u64 = 0xE000_0000_0000_0000;
/// A stop time long after every test packet.
const LATE: Num64 = Num64(START + (1000u64 << 32));
const SYNC: ErrorEstimate = ErrorEstimate {
    synchronized: true,
    z: false,
    scale: 5,
    multiplier: 135,
};

fn fields(npackets: u32, timeout_secs: u32) -> SessionFields {
    SessionFields {
        ipvn: 4,
        conf_sender: false,
        conf_receiver: true,
        npackets,
        sender_port: 8760,
        receiver_port: 9001,
        sender_addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        receiver_addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        sid: Sid([
            0x7f, 0, 0, 1, 0xdd, 0x12, 0xe5, 0x9f, 0xf0, 0xd3, 0x41, 0xdb, 0x48, 0xde, 0xe1, 0xc4,
        ]),
        padding: 0,
        start_time: Num64(START),
        timeout: Num64((timeout_secs as u64) << 32),
        type_p: 0,
        slots: vec![Slot {
            kind: SlotKind::Exponential,
            param: Num64(0x1999_99A0),
        }],
    }
}

/// A record sent `seq` seconds after START, received 1 ms later (or lost).
fn rec(seq: u32, lost: bool) -> PacketRecord {
    let send = Num64(START + ((seq as u64) << 32));
    PacketRecord {
        seq,
        send_err: SYNC,
        recv_err: if lost { ErrorEstimate::UNSYNC } else { SYNC },
        send_ts: send,
        recv_ts: if lost {
            Num64(0)
        } else {
            Num64(send.0 + Num64::from_micros(1000).0)
        },
        ttl: if lost { 255 } else { 250 },
    }
}

/// The stored Request-Session built by hand per protocol.md §2.1 (not through our encoder).
fn hand_session(npackets: u32) -> Vec<u8> {
    let mut b = vec![0u8; 112 + 16 + 16];
    b[0] = 1;
    b[1] = 4;
    b[3] = 1;
    b[4..8].copy_from_slice(&1u32.to_be_bytes());
    b[8..12].copy_from_slice(&npackets.to_be_bytes());
    b[12..14].copy_from_slice(&8760u16.to_be_bytes());
    b[14..16].copy_from_slice(&9001u16.to_be_bytes());
    b[16..20].copy_from_slice(&[127, 0, 0, 1]);
    b[32..36].copy_from_slice(&[127, 0, 0, 2]);
    b[48..64].copy_from_slice(&fields(0, 0).sid.0);
    b[68..76].copy_from_slice(&START.to_be_bytes());
    b[76..84].copy_from_slice(&(2u64 << 32).to_be_bytes());
    b[112] = 0;
    b[120..128].copy_from_slice(&0x1999_99A0u64.to_be_bytes());
    b
}

#[test]
fn session_header_encoding_matches_hand_layout() {
    let h = SessionHeader::from_fields(&fields(10, 2)).unwrap();
    assert_eq!(h.raw(), &hand_session(10)[..]);
    let parsed = SessionHeader::parse(&hand_session(10)).unwrap();
    assert_eq!(parsed.fields(), &fields(10, 2));
}

#[test]
fn reference_style_file_with_equal_offsets_is_read() {
    // §7.7: v3 header, oset_skips == oset_data (no skips), finished=1.
    let sess = hand_session(3);
    let hlen = 40 + sess.len() as u64;
    assert_eq!(hlen, 40 + 112 + 16 * 2);
    let mut f = Vec::new();
    f.extend_from_slice(b"OwA\0");
    f.extend_from_slice(&3u32.to_be_bytes());
    f.extend_from_slice(&1u32.to_be_bytes()); // finished
    f.extend_from_slice(&3u32.to_be_bytes()); // next seqno
    f.extend_from_slice(&0u32.to_be_bytes()); // skips
    f.extend_from_slice(&3u32.to_be_bytes()); // records
    f.extend_from_slice(&hlen.to_be_bytes());
    f.extend_from_slice(&hlen.to_be_bytes());
    f.extend_from_slice(&sess);
    // Record bytes laid out per §2.9 by hand.
    for seq in 0..3u32 {
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0x92, 0xd7, 0x85, 0x87]);
        f.extend_from_slice(&(START + ((seq as u64) << 32)).to_be_bytes());
        let recv = if seq == 1 {
            0
        } else {
            START + ((seq as u64) << 32) + 4_294_967
        };
        f.extend_from_slice(&recv.to_be_bytes());
        f.push(if seq == 1 { 255 } else { 62 });
    }
    let mut file = OwpFile::from_reader(Cursor::new(f), "ref.owp").unwrap();
    let h = file.header().clone();
    assert_eq!((h.version, h.finished, h.next_seqno), (3, 1, 3));
    assert_eq!((h.num_skips, h.num_records, h.header_len), (0, 3, hlen));
    assert_eq!(file.session().unwrap().npackets(), 3);
    assert!(file.skips().unwrap().is_empty());
    let recs = file.read_records().unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].send_err.to_bytes(), [0x92, 0xd7]);
    assert_eq!(recs[0].recv_err.to_bytes(), [0x85, 0x87]);
    assert!(recs[1].is_lost());
    assert_eq!(recs[2].ttl, 62);
    assert_eq!(recs[2].recv_ts.0, START + (2u64 << 32) + 4_294_967);
}

#[test]
fn fetched_file_round_trip_and_layout() {
    let sess = SessionHeader::from_fields(&fields(10, 2)).unwrap();
    let recs: Vec<_> = (0..5).map(|s| rec(s, s == 3)).collect();
    let skips = [SkipRange { first: 7, last: 9 }];
    let info = FetchInfo {
        finished: 1,
        next_seqno: 10,
        num_records: 5,
    };
    let mut w = FetchedFileWriter::begin(Vec::new(), "t.owp", &sess, info, &skips).unwrap();
    for r in &recs {
        w.record(r).unwrap();
    }
    let bytes = w.finish().unwrap();
    let hlen = 40 + 144u64;
    assert_eq!(bytes.len() as u64, hlen + 8 + 5 * 25);
    // oset_skips = header end, oset_data right after the one skip range.
    assert_eq!(&bytes[24..32], &hlen.to_be_bytes());
    assert_eq!(&bytes[32..40], &(hlen + 8).to_be_bytes());
    assert_eq!(
        &bytes[hlen as usize..hlen as usize + 8],
        &[0, 0, 0, 7, 0, 0, 0, 9]
    );
    let mut f = OwpFile::from_reader(Cursor::new(bytes), "t.owp").unwrap();
    assert_eq!(f.header().finished, 1);
    assert_eq!(f.header().next_seqno, 10);
    assert_eq!(f.session().unwrap(), &sess);
    assert_eq!(f.skips().unwrap(), skips.to_vec());
    assert_eq!(f.read_records().unwrap(), recs);
}

#[test]
fn fetched_file_without_skips_puts_skip_offset_at_header_end_and_checks_count() {
    let sess = SessionHeader::from_fields(&fields(10, 2)).unwrap();
    let info = FetchInfo {
        finished: 7, // anything but 0/1 is stored as 2, as the reference does
        next_seqno: 0,
        num_records: 2,
    };
    let mut w = FetchedFileWriter::begin(Vec::new(), "t.owp", &sess, info, &[]).unwrap();
    w.record(&rec(0, false)).unwrap();
    assert!(matches!(w.finish(), Err(OwpError::Usage { .. })));
    let mut w = FetchedFileWriter::begin(Vec::new(), "t.owp", &sess, info, &[]).unwrap();
    w.record(&rec(0, false)).unwrap();
    w.record(&rec(1, false)).unwrap();
    assert!(w.record(&rec(2, false)).is_err());
    let bytes = w.finish().unwrap();
    let hlen = 40 + 144u64;
    assert_eq!(&bytes[8..12], &2u32.to_be_bytes());
    // capi.c OWPFetchSession: the record size in its header struct is 0, so the skip
    // offset "past the records" is the header end (the reference's -T files show it).
    assert_eq!(&bytes[24..32], &hlen.to_be_bytes());
    assert_eq!(&bytes[32..40], &hlen.to_be_bytes());
    let mut f = OwpFile::from_reader(Cursor::new(bytes), "t.owp").unwrap();
    assert_eq!(f.read_records().unwrap().len(), 2);
    // No records and no skips: the skip offset stays 0.
    let info = FetchInfo {
        finished: 1,
        next_seqno: 10,
        num_records: 0,
    };
    let bytes = FetchedFileWriter::begin(Vec::new(), "t.owp", &sess, info, &[])
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(&bytes[24..32], &[0u8; 8]);
    assert_eq!(bytes.len() as u64, hlen);
    let f = OwpFile::from_reader(Cursor::new(bytes), "t.owp").unwrap();
    assert_eq!(f.header().num_records, 0);
}

#[test]
fn finished_file_uses_the_stored_count() {
    // finished != 0: the stored count wins over the file size (reference reader).
    let sess = SessionHeader::from_fields(&fields(10, 2)).unwrap();
    let info = FetchInfo {
        finished: 1,
        next_seqno: 10,
        num_records: 2,
    };
    let mut w = FetchedFileWriter::begin(Vec::new(), "t", &sess, info, &[]).unwrap();
    w.record(&rec(0, false)).unwrap();
    w.record(&rec(1, false)).unwrap();
    let mut bytes = w.finish().unwrap();
    bytes[20..24].copy_from_slice(&1u32.to_be_bytes());
    let f = OwpFile::from_reader(Cursor::new(bytes.clone()), "t").unwrap();
    assert_eq!(f.header().num_records, 1);
    // finished = 0: counted from the size.
    bytes[8..12].copy_from_slice(&0u32.to_be_bytes());
    let f = OwpFile::from_reader(Cursor::new(bytes), "t").unwrap();
    assert_eq!(f.header().num_records, 2);
}

fn v2_record(seq: u32, send: u64, serr: [u8; 2], recv: u64, rerr: [u8; 2]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&send.to_be_bytes());
    b.extend_from_slice(&serr);
    b.extend_from_slice(&recv.to_be_bytes());
    b.extend_from_slice(&rerr);
    b
}

#[test]
fn v2_file_is_read_with_ttl_255() {
    let sess = hand_session(2);
    let hlen = 20 + sess.len() as u64;
    let mut f = Vec::new();
    f.extend_from_slice(b"OwA\0");
    f.extend_from_slice(&2u32.to_be_bytes());
    f.extend_from_slice(&hlen.to_be_bytes());
    f.extend_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(&sess);
    f.extend(v2_record(0, START, [0x85, 0x87], START + 100, [0x85, 0x88]));
    f.extend(v2_record(1, START + 200, [0, 1], 0, [0, 1]));
    let mut file = OwpFile::from_reader(Cursor::new(f), "v2.owp").unwrap();
    assert_eq!(file.header().version, 2);
    assert_eq!(file.header().finished, 1);
    assert_eq!(file.session().unwrap().npackets(), 2);
    let r = file.read_records().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].seq, 0);
    assert_eq!(r[0].recv_ts.0, START + 100);
    assert_eq!(r[0].recv_err.to_bytes(), [0x85, 0x88]);
    assert_eq!(r[0].ttl, 255);
    assert!(r[1].is_lost());
}

#[test]
fn v0_file_has_records_but_no_session() {
    let mut f = Vec::new();
    f.extend_from_slice(b"OwA\0");
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&16u64.to_be_bytes());
    f.extend(v2_record(5, START, [0x85, 0x87], START + 7, [0x85, 0x87]));
    f.extend_from_slice(&[1, 2, 3]); // trailing partial record is ignored
    let mut file = OwpFile::from_reader(Cursor::new(f), "v0.owp").unwrap();
    assert!(file.session().is_err());
    let r = file.read_records().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].seq, 5);
}

#[test]
fn bad_files_give_typed_errors() {
    let e = OwpFile::from_reader(Cursor::new(b"OwB\0\0\0\0\x03".to_vec()), "x").err();
    assert!(matches!(e, Some(OwpError::BadMagic { .. })));
    let e = OwpFile::from_reader(Cursor::new(b"OwA\0\0\0\0\x09".to_vec()), "x").err();
    assert!(matches!(
        e,
        Some(OwpError::UnsupportedVersion { version: 9, .. })
    ));
    let e = OwpFile::from_reader(Cursor::new(b"OwA\0\0\0\0\x03".to_vec()), "x").err();
    assert!(matches!(e, Some(OwpError::Truncated { .. })));
    // A header announcing more records than the file holds.
    let sess = SessionHeader::from_fields(&fields(10, 2)).unwrap();
    let info = FetchInfo {
        finished: 1,
        next_seqno: 10,
        num_records: 1,
    };
    let mut w = FetchedFileWriter::begin(Vec::new(), "t", &sess, info, &[]).unwrap();
    w.record(&rec(0, false)).unwrap();
    let mut bytes = w.finish().unwrap();
    bytes[20..24].copy_from_slice(&2u32.to_be_bytes());
    let e = OwpFile::from_reader(Cursor::new(bytes.clone()), "t").err();
    assert!(matches!(
        e,
        Some(OwpError::Truncated {
            field: "num_records",
            ..
        })
    ));
    // An absurd slot count does not allocate: it fails the header-size check.
    bytes[20..24].copy_from_slice(&1u32.to_be_bytes());
    bytes[44..48].copy_from_slice(&u32::MAX.to_be_bytes());
    let e = OwpFile::from_reader(Cursor::new(bytes), "t").err();
    assert!(matches!(
        e,
        Some(OwpError::BadHeader {
            field: "nslots",
            ..
        })
    ));
}

// ---- receive side -------------------------------------------------------------------

/// `path` opened for reading and writing (created empty when `create`), as the
/// receive writer and `ReceiveWriter::resume` take it.
fn open_rw(path: &std::path::Path, create: bool) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .unwrap()
}

fn receive_file(
    npackets: u32,
    timeout: u32,
    recs: &[PacketRecord],
) -> (tempfile::TempDir, std::path::PathBuf, ReceiveWriter) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.owp");
    let file = open_rw(&path, true);
    let sess = SessionHeader::from_fields(&fields(npackets, timeout)).unwrap();
    let mut w = ReceiveWriter::create(file, &path, &sess).unwrap();
    for r in recs {
        w.record(r).unwrap();
    }
    (dir, path, w)
}

#[test]
fn live_file_counts_records_from_size() {
    let recs: Vec<_> = (0..3).map(|s| rec(s, false)).collect();
    let (_d, path, mut w) = receive_file(10, 2, &recs);
    w.flush().unwrap();
    assert_eq!(w.records_written(), 3);
    let mut f = OwpFile::open(&path).unwrap();
    // 2 ("incomplete") while live, as the reference's endpoint.c writes it.
    assert_eq!(f.header().finished, 2);
    assert_eq!(f.header().stored_num_records, 0);
    assert_eq!(f.header().num_records, 3);
    assert_eq!(f.read_records().unwrap(), recs);
}

#[test]
fn stop_early_keeps_only_records_before_next_and_old_enough() {
    // next = 6; Timeout = 2 s; stoptime = START + 6 s: keep send_ts <= START + 4 s.
    let recs = vec![
        rec(0, false),
        rec(2, false),
        rec(1, true),
        rec(3, false),
        rec(4, false),
        rec(5, false), // send START+5 > START+4: dropped
        rec(6, true),  // lost with seq >= next: dropped
    ];
    let (_d, path, w) = receive_file(10, 2, &recs);
    let skips = [SkipRange { first: 8, last: 9 }];
    let out = w
        .finalize_with_stop(Num64(START + (6u64 << 32)), 6, &skips)
        .unwrap();
    assert_eq!(
        (out.finished, out.next_seqno, out.num_records, out.num_skips),
        (1, 6, 5, 1)
    );
    let mut f = OwpFile::open(&path).unwrap();
    let h = f.header().clone();
    assert_eq!(
        (h.finished, h.next_seqno, h.num_skips, h.stored_num_records),
        (1, 6, 1, 5)
    );
    // Receiver layout: records first, then skips.
    assert_eq!(h.oset_skips, h.oset_data + 5 * 25);
    assert_eq!(f.skips().unwrap(), skips.to_vec());
    let seqs: Vec<u32> = f.read_records().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![0, 2, 1, 3, 4]);
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(len, h.oset_skips + 8);
}

#[test]
fn received_record_at_or_above_next_invalidates_session() {
    let recs = vec![rec(0, false), rec(4, false)];
    let (_d, path, w) = receive_file(10, 2, &recs);
    let e = w
        .finalize_with_stop(Num64(START + (60u64 << 32)), 4, &[])
        .unwrap_err();
    assert!(matches!(
        e,
        OwpError::SessionInvalid {
            seq: 4,
            next_seqno: 4,
            ..
        }
    ));
    let f = OwpFile::open(&path).unwrap();
    assert_eq!(f.header().finished, 0);
}

#[test]
fn incomplete_drops_trailing_lost_records() {
    let recs = vec![
        rec(0, false),
        rec(1, true),
        rec(2, false),
        rec(3, true),
        rec(4, true),
    ];
    let (_d, path, w) = receive_file(10, 2, &recs);
    let out = w.finalize_incomplete(LATE).unwrap();
    assert_eq!((out.finished, out.next_seqno, out.num_records), (2, 0, 3));
    let mut f = OwpFile::open(&path).unwrap();
    assert_eq!(f.header().finished, 2);
    let seqs: Vec<u32> = f.read_records().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
}

#[test]
fn incomplete_applies_the_stop_time_rule() {
    // Connection lost at START + 5 s, Timeout 2 s: only send_ts <= START + 3 s stay.
    let recs = vec![
        rec(0, false),
        rec(1, true),
        rec(2, false),
        rec(3, false),
        rec(4, false),
    ];
    let (_d, path, w) = receive_file(10, 2, &recs);
    let out = w.finalize_incomplete(Num64(START + (5u64 << 32))).unwrap();
    assert_eq!(out.num_records, 4);
    let mut f = OwpFile::open(&path).unwrap();
    assert_eq!((f.header().finished, f.header().next_seqno), (2, 0));
    let seqs: Vec<u32> = f.read_records().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
}

#[test]
fn incomplete_with_nothing_received_truncates_to_header() {
    let recs = vec![rec(0, true), rec(1, true)];
    let (_d, path, w) = receive_file(10, 2, &recs);
    let out = w.finalize_incomplete(LATE).unwrap();
    assert_eq!(out.num_records, 0);
    let f = OwpFile::open(&path).unwrap();
    assert_eq!(f.header().finished, 2);
    assert_eq!(f.header().num_records, 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 40 + 144);
}

/// Skip ranges that are not all at hand yet: enough of them that, taken for records,
/// they would make records (10 ranges = 80 octets = 3 records and a bit).
fn ten_skips() -> Vec<SkipRange> {
    (0..10)
        .map(|i| SkipRange {
            first: 100 + 2 * i,
            last: 100 + 2 * i,
        })
        .collect()
}

/// The peer's skip ranges go to the file as they arrive (never gathered in memory): after
/// `begin_stop` and two batches the file already holds them after the kept records, and a
/// reader still counts only the records (the skips' offset is set first); `finish`
/// completes the header.
#[test]
fn skip_ranges_are_streamed_to_the_file_as_they_arrive() {
    for recs in [vec![rec(0, false), rec(1, true), rec(2, false)], vec![]] {
        let (_d, path, w) = receive_file(200, 2, &recs);
        let skips = ten_skips();
        let mut fin = w.begin_stop(LATE, 200).unwrap();
        fin.skips(&skips[..4]).unwrap();
        fin.skips(&skips[4..]).unwrap();
        assert_eq!(fin.num_skips(), 10);
        let f = OwpFile::open(&path).unwrap();
        let h = f.header().clone();
        assert_eq!(h.finished, 2);
        assert_eq!(h.oset_skips, h.oset_data + 25 * recs.len() as u64);
        if !recs.is_empty() {
            assert_eq!(h.num_records, recs.len() as u64);
        }
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, h.oset_skips + 80, "the ranges are in the file already");
        let out = fin.finish().unwrap();
        assert_eq!(
            (out.finished, out.num_records, out.num_skips),
            (1, recs.len() as u64, 10)
        );
        let mut f = OwpFile::open(&path).unwrap();
        assert_eq!(f.skips().unwrap(), skips);
        assert_eq!(f.read_records().unwrap(), recs);
    }
}

/// A tester that dies while writing the peer's ranges leaves a live file whose records
/// end at the skips' offset: control resumes it and finalises it as incomplete with its
/// records, the partial ranges cut off and never read as records.
#[test]
fn a_file_left_while_its_skips_were_written_resumes_with_its_records_only() {
    for recs in [vec![rec(0, false), rec(1, false)], vec![]] {
        let (_d, path, w) = receive_file(200, 2, &recs);
        let mut fin = w.begin_stop(LATE, 200).unwrap();
        fin.skips(&ten_skips()).unwrap();
        drop(fin);
        let file = open_rw(&path, false);
        let w = ReceiveWriter::resume(file, &path).unwrap();
        assert_eq!(w.records_written(), recs.len() as u64);
        let out = w.finalize_incomplete(LATE).unwrap();
        assert_eq!((out.num_records, out.num_skips), (recs.len() as u64, 0));
        let mut f = OwpFile::open(&path).unwrap();
        assert_eq!(f.read_records().unwrap(), recs);
        assert!(f.skips().unwrap().is_empty());
    }
}

#[test]
fn resume_finalises_a_file_left_by_a_dead_writer() {
    let recs = vec![rec(0, false), rec(1, false), rec(2, true)];
    let (_d, path, mut w) = receive_file(10, 2, &recs);
    w.flush().unwrap();
    drop(w);
    // A torn trailing record from the crash.
    let mut raw = std::fs::read(&path).unwrap();
    raw.extend_from_slice(&[0u8; 10]);
    std::fs::write(&path, &raw).unwrap();
    let file = open_rw(&path, false);
    let w = ReceiveWriter::resume(file, &path).unwrap();
    assert_eq!(w.records_written(), 3);
    let out = w.finalize_incomplete(LATE).unwrap();
    assert_eq!(out.num_records, 2);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 40 + 144 + 50);
}

#[test]
fn finalisation_streams_many_chunks() {
    // More records than one read-back chunk; every third record is a lost record with
    // seq >= next, which is dropped, so kept records move back across chunk borders.
    let n = 10_000u32;
    let mut all = Vec::new();
    let mut want = Vec::new();
    for s in 0..n {
        let r = rec(s, s % 2 == 1 && s < n - 1);
        all.push(r);
        want.push(r);
        if s % 3 == 0 {
            let mut extra = rec(n + s, true);
            extra.send_ts = r.send_ts;
            all.push(extra);
        }
    }
    let (_d, path, w) = receive_file(2 * n, 1, &all);
    let out = w
        .finalize_with_stop(Num64(START + (((n + 10) as u64) << 32)), n, &[])
        .unwrap();
    assert_eq!(out.num_records, n as u64);
    let mut f = OwpFile::open(&path).unwrap();
    let got = f.read_records().unwrap();
    assert_eq!(got.len(), want.len());
    let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(bad, 0, "{bad} records differ after compaction");
}

#[test]
fn append_mode_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.owp");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let sess = SessionHeader::from_fields(&fields(10, 2)).unwrap();
    assert!(matches!(
        ReceiveWriter::create(file, &path, &sess),
        Err(OwpError::Usage { .. })
    ));
}

fn valid_file() -> Vec<u8> {
    let sess = SessionHeader::from_fields(&fields(10, 2)).unwrap();
    let info = FetchInfo {
        finished: 1,
        next_seqno: 10,
        num_records: 3,
    };
    let mut w = FetchedFileWriter::begin(
        Vec::new(),
        "p",
        &sess,
        info,
        &[SkipRange { first: 5, last: 6 }],
    )
    .unwrap();
    for s in 0..3 {
        w.record(&rec(s, false)).unwrap();
    }
    w.finish().unwrap()
}

fn read_all(bytes: Vec<u8>) {
    if let Ok(mut f) = OwpFile::from_reader(Cursor::new(bytes), "p") {
        let _ = f.skips();
        if let Ok(it) = f.records() {
            for r in it {
                if r.is_err() {
                    break;
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..600), v in 0u8..4) {
        if bytes.len() >= 8 {
            bytes[..4].copy_from_slice(b"OwA\0");
            bytes[4..8].copy_from_slice(&[0, 0, 0, v]);
        }
        read_all(bytes);
    }

    #[test]
    fn mutated_valid_file_never_panics(idx in 0usize..400, val in any::<u8>(), cut in 0usize..400) {
        let mut b = valid_file();
        let i = idx % b.len();
        b[i] = val;
        let c = cut.min(b.len());
        b.truncate(b.len() - c);
        read_all(b);
    }
}

#[test]
fn finalisation_releases_its_lock_even_with_a_shared_descriptor() {
    let recs = vec![rec(0, false)];
    let (_d, path, w) = receive_file(10, 2, &recs);
    // Another copy of the same open file description (as after fd passing).
    let file = w.into_file();
    let copy = file.try_clone().unwrap();
    let w = ReceiveWriter::resume(file, &path).unwrap();
    w.finalize_incomplete(LATE).unwrap();
    let reader = std::fs::File::open(&path).unwrap();
    owamp::owp::try_lock_shared(&reader, &path).unwrap();
    drop(copy);
}

#[test]
fn shared_lock_fails_while_a_writer_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.owp");
    std::fs::write(&path, b"x").unwrap();
    let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    #[allow(clippy::incompatible_msrv)]
    w.lock().unwrap();
    let r = std::fs::File::open(&path).unwrap();
    match owamp::owp::try_lock_shared(&r, &path) {
        Err(OwpError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock)
        }
        other => panic!("expected WouldBlock, got {other:?}"),
    }
}

#[test]
fn fetched_file_reencodes_the_request_session() {
    // MBZ garbage and a Conf-Sender of 5 in the stored Request-Session come out
    // canonical, as owping's decode + OWPWriteDataHeader produce them.
    let mut raw = hand_session(10);
    raw[1] |= 0xF0; // MBZ nibble
    raw[2] = 5;
    raw[90] = 0xAA; // MBZ after Type-P
    raw[113] = 0x55; // slot MBZ
    let sess = SessionHeader::parse(&raw).unwrap();
    assert_eq!(sess.raw(), &raw[..]);
    let info = FetchInfo {
        finished: 1,
        next_seqno: 10,
        num_records: 0,
    };
    let bytes = FetchedFileWriter::begin(Vec::new(), "t", &sess, info, &[])
        .unwrap()
        .finish()
        .unwrap();
    let stored = &bytes[40..40 + 144];
    assert_eq!(stored[1], 4);
    assert_eq!(stored[2], 1);
    assert_eq!(stored[90], 0);
    assert_eq!(stored[113], 0);
}

#[test]
fn next_seqno_all_ones_means_npackets_and_larger_is_refused() {
    let recs = vec![rec(0, false), rec(9, false)];
    let (_d, _p, w) = receive_file(10, 2, &recs);
    let out = w.finalize_with_stop(LATE, u32::MAX, &[]).unwrap();
    assert_eq!((out.next_seqno, out.num_records), (10, 2));
    let (_d, _p, w) = receive_file(10, 2, &recs);
    assert!(matches!(
        w.finalize_with_stop(LATE, 11, &[]),
        Err(OwpError::Usage { .. })
    ));
}

#[test]
fn receiver_layout_puts_skips_after_records() {
    let sess = SessionHeader::from_fields(&fields(10, 2)).unwrap();
    let info = FetchInfo {
        finished: 1,
        next_seqno: 4,
        num_records: 2,
    };
    let skips = [SkipRange { first: 2, last: 3 }];
    let mut w =
        FetchedFileWriter::begin_receiver_layout(Vec::new(), "t.owp", &sess, info, &skips).unwrap();
    w.record(&rec(0, false)).unwrap();
    w.record(&rec(1, false)).unwrap();
    let bytes = w.finish().unwrap();
    let hlen = 40 + 144u64;
    assert_eq!(&bytes[24..32], &(hlen + 50).to_be_bytes());
    assert_eq!(&bytes[32..40], &hlen.to_be_bytes());
    assert_eq!(bytes.len() as u64, hlen + 50 + 8);
    assert_eq!(&bytes[bytes.len() - 8..], &[0, 0, 0, 2, 0, 0, 0, 3]);
    let mut f = OwpFile::from_reader(Cursor::new(bytes), "t.owp").unwrap();
    assert_eq!(f.skips().unwrap(), skips.to_vec());
    assert_eq!(f.read_records().unwrap().len(), 2);
}
