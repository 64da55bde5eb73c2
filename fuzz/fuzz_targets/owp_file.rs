//! `.owp` files (protocol.md §7.7) as owstats, owfetch and the server's fetch path read them:
//! `OwpFile::from_reader` on arbitrary bytes, then the skip ranges and every record;
//! and the stored Request-Session parser `SessionHeader::parse` (built on
//! `wire::RequestSession::decode_stored`), checked field by field against it.
//!
//! Invariants: no panic and no allocation beyond what the file backs; every offset and
//! count in an accepted header lies within the file; the record iterator yields exactly
//! `num_records` records or an error; a header that parses re-encodes (from its fields)
//! to one that parses to the same fields, which are those `wire` decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owamp::owp::{FetchInfo, FetchedFileWriter, OwpFile, SessionHeader};
use owamp::wire::RequestSession;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    read_file(data);
    session_header(data);
});

fn read_file(data: &[u8]) {
    let Ok(mut file) = OwpFile::from_reader(Cursor::new(data), "fuzz.owp") else {
        return;
    };
    let h = file.header().clone();
    let len = data.len() as u64;
    assert!(matches!(h.version, 0 | 2 | 3), "version {}", h.version);
    assert!(h.header_len <= len);
    // The data offset is only used when there are records: a file with none may
    // point past its end (the reader accepts that: nothing is read there).
    if h.num_records > 0 {
        let data_bytes = h
            .num_records
            .checked_mul(h.record_len)
            .expect("record bytes overflow");
        assert!(
            h.oset_data
                .checked_add(data_bytes)
                .is_some_and(|end| end <= len),
            "{} records of {} at {} exceed {len}",
            h.num_records,
            h.record_len,
            h.oset_data
        );
    }
    if let Ok(skips) = file.skips() {
        assert_eq!(skips.len() as u64, u64::from(h.num_skips));
    }
    if let Ok(iter) = file.records() {
        let mut n = 0u64;
        for r in iter {
            if r.is_err() {
                break;
            }
            n += 1;
            assert!(n <= h.num_records, "more records than the header says");
        }
    }
    if let Some(s) = &h.session {
        let again = SessionHeader::parse(s.raw()).expect("a stored session re-parses");
        assert_eq!(&again, s);
    }
    // What the client would write for this session, read back.
    if let (Some(s), Ok(skips)) = (&h.session, file.skips()) {
        let recs: Vec<_> = match file.read_records() {
            Ok(r) => r,
            Err(_) => return,
        };
        let Ok(num_records) = u32::try_from(recs.len()) else {
            return;
        };
        let info = FetchInfo {
            finished: h.finished,
            next_seqno: h.next_seqno,
            num_records,
        };
        let Ok(mut w) = FetchedFileWriter::begin(Vec::new(), "fuzz-out.owp", s, info, &skips)
        else {
            return;
        };
        for r in &recs {
            w.record(r).expect("announced record writes");
        }
        let out = w.finish().expect("writer finishes");
        let mut back = OwpFile::from_reader(Cursor::new(&out), "fuzz-out.owp")
            .expect("our own .owp file reads back");
        assert_eq!(back.header().version, 3);
        assert_eq!(back.skips().expect("own skips"), skips);
        assert_eq!(back.read_records().expect("own records"), recs);
        assert_eq!(
            back.header().session.as_ref().map(|x| x.fields()),
            Some(s.fields()),
            "session fields changed through the writer"
        );
    }
}

fn session_header(data: &[u8]) {
    let parsed = SessionHeader::parse(data);
    let wire = RequestSession::decode_stored(data);
    let Ok(s) = parsed else { return };
    assert_eq!(s.raw(), data);
    let f = s.fields();
    let stored = wire.expect("wire refused a stored session that owp accepted");
    assert_eq!(stored.len, data.len(), "decoders disagree on the length");
    assert_eq!(stored.preamble.ipvn, f.ipvn);
    assert_eq!(stored.preamble.sid, f.sid);
    assert_eq!(stored.preamble.num_packets, f.npackets);
    assert_eq!(stored.preamble.sender_port, f.sender_port);
    assert_eq!(stored.preamble.receiver_port, f.receiver_port);
    assert_eq!(stored.preamble.padding, f.padding);
    assert_eq!(stored.preamble.timeout, f.timeout);
    assert_eq!(stored.preamble.type_p, f.type_p);
    assert_eq!(stored.slots.len(), f.slots.len());
    for (w, o) in stored.slots.iter().zip(&f.slots) {
        assert_eq!(w.to_slot(), Some(*o), "decoders disagree on a slot");
    }
    let again = SessionHeader::from_fields(f).expect("parsed fields re-encode");
    assert_eq!(again.fields(), f, "SessionHeader fields round trip");
}
