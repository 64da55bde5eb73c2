//! `.owp` files written by the perfSONAR reference (tests/data/reference, see
//! owping/tests/owstats_reference.rs for how they were made), read and written again
//! by our code: the bytes must come out identical (protocol.md §7.7). `-T` is a fetched file
//! (capi.c OWPFetchSession), `-F` and the owampd datadir file are receiver-written.

use owamp::owp::{FetchInfo, FetchedFileWriter, OwpFile};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/reference")
        .join(name)
}

fn rewrite(name: &str, receiver: bool) -> (Vec<u8>, Vec<u8>) {
    let path = data(name);
    let orig = std::fs::read(&path).unwrap();
    let mut f = OwpFile::open(&path).unwrap();
    let session = f.session().unwrap().clone();
    let skips = f.skips().unwrap();
    let records = f.read_records().unwrap();
    let h = f.header().clone();
    let info = FetchInfo {
        finished: h.finished,
        next_seqno: h.next_seqno,
        num_records: u32::try_from(records.len()).unwrap(),
    };
    let mut w = if receiver {
        FetchedFileWriter::begin_receiver_layout(Vec::new(), &path, &session, info, &skips)
    } else {
        FetchedFileWriter::begin(Vec::new(), &path, &session, info, &skips)
    }
    .unwrap();
    for r in &records {
        w.record(r).unwrap();
    }
    (orig, w.finish().unwrap())
}

#[test]
fn fetched_layout_reproduces_reference_owping_t_file() {
    let (want, got) = rewrite("ref-owping-T.owp", false);
    assert_eq!(got, want);
}

#[test]
fn receiver_layout_reproduces_reference_owping_f_file() {
    let (want, got) = rewrite("ref-owping-F.owp", true);
    assert_eq!(got, want);
}

#[test]
fn receiver_layout_reproduces_reference_owampd_datadir_file() {
    let (want, got) = rewrite("ref-owampd-datadir.owp", true);
    assert_eq!(got, want);
}
