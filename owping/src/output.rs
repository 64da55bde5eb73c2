//! What the clients print from a session's data (owping.c `do_stats`): raw records
//! (`-R`), per-packet lines (`-v`), the human or machine summary, per sub-session with
//! `-N`, to files with `-p`/`-d`, or JSON (`--json`). The formats themselves are
//! `owamp::report`'s; this module only chooses and sequences them.

use crate::opts::OutOpts;
use owamp::owp::{OwpError, OwpFile, SessionHeader};
use owamp::report::{
    Endpoints, SummaryOptions, TimeZone, Unit, human_summary, json_summary, machine_summary,
    per_packet_section, raw_line,
};
use owamp::schedule::Schedule;
use owamp::stats::{Stats, StatsError, StatsOptions};
use owamp::{PacketRecord, SkipRange};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OutputError {
    #[error(transparent)]
    File(#[from] OwpError),
    #[error("{path}: {source}")]
    Stats {
        path: String,
        #[source]
        source: StatsError,
    },
    #[error("{path}: writing output: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// One session's data, whole in memory (a few million records at most, 25 bytes each).
#[derive(Clone, Debug)]
pub struct SessionData {
    /// For messages: the file name, or a description.
    pub label: String,
    pub session: SessionHeader,
    pub finished: u32,
    pub records: Vec<PacketRecord>,
    pub skips: Vec<SkipRange>,
}

impl SessionData {
    /// Reads an `.owp` file (v0, v2, v3) from any seekable source.
    pub fn read<R: Read + Seek>(reader: R, label: &Path) -> Result<SessionData, OwpError> {
        let mut f = OwpFile::from_reader(reader, label)?;
        Self::from_file(&mut f)
    }

    pub fn open(path: &Path) -> Result<SessionData, OwpError> {
        let mut f = OwpFile::open(path)?;
        Self::from_file(&mut f)
    }

    fn from_file<R: Read + Seek>(f: &mut OwpFile<R>) -> Result<SessionData, OwpError> {
        let session = f.session()?.clone();
        let finished = f.header().finished;
        let skips = f.skips()?;
        let records = f.read_records()?;
        Ok(SessionData {
            label: f.path().display().to_string(),
            session,
            finished,
            records,
            skips,
        })
    }
}

/// Host names to print instead of the numeric addresses, when owping knows them.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Names {
    /// The names owstats and owfetch print. They pass no host names to
    /// `OWPStatsCreate` (owping.c `do_stats(ctx, fp, NULL, NULL, NULL)`), so stats.c asks
    /// `getnameinfo(3)` with flags 0 for each address in the file header: the resolver's
    /// name when it has one (127.0.0.1 prints as "localhost" through /etc/hosts), the
    /// numeric address otherwise, and "***" when the call fails (protocol.md §8.3 "fromhost").
    pub fn resolved(session: &SessionHeader) -> Names {
        let f = session.fields();
        Names {
            from: Some(host_name(f.sender_addr, f.sender_port)),
            to: Some(host_name(f.receiver_addr, f.receiver_port)),
        }
    }
}

/// `getnameinfo(addr, NULL serv, 0)` as stats.c calls it; the service is asked
/// numerically only because the binding always asks for one (it is discarded).
pub(crate) fn host_name(addr: std::net::IpAddr, port: u16) -> String {
    let sa = std::net::SocketAddr::new(addr, port);
    dns_lookup::getnameinfo(&sa, libc::NI_NUMERICSERV)
        .map(|(host, _)| host)
        .unwrap_or_else(|_| "***".to_string())
}

/// owping's name for its own end of the control connection (owping.c asks I2util for
/// the local socket's node name): `getnameinfo(3)` with flags 0, the numeric form when
/// that fails, and no `%scope`. `None` only when even the numeric form cannot be had;
/// the summary then shows the address from the session header.
pub fn local_host_name(local: std::net::SocketAddr) -> Option<String> {
    let name = dns_lookup::getnameinfo(&local, libc::NI_NUMERICSERV)
        .or_else(|_| dns_lookup::getnameinfo(&local, libc::NI_NUMERICSERV | libc::NI_NUMERICHOST))
        .ok()?
        .0;
    Some(without_scope(&name).to_string())
}

/// owping's name for the test peer: the host as the user typed it, without the port,
/// the brackets of `[v6]:port` or a `%scope` (I2util's node name of the operand).
pub fn typed_host_name(operand: &str) -> String {
    let host = crate::net::split_host(operand, 0)
        .map(|h| h.0)
        .unwrap_or_else(|_| operand.to_string());
    without_scope(&host).to_string()
}

fn without_scope(host: &str) -> &str {
    host.split_once('%').map_or(host, |(h, _)| h)
}

pub(crate) fn endpoints(s: &SessionHeader, names: &Names) -> Endpoints {
    let mut e = Endpoints::numeric(s);
    if let Some(f) = &names.from {
        e.from_host = f.clone();
    }
    if let Some(t) = &names.to {
        e.to_host = t.clone();
    }
    e
}

/// The sub-session boundaries of `-N` (owping.c `do_stats`): `None` = whole session.
pub fn sub_sessions(npackets: u32, n: u32) -> Vec<(u32, Option<u32>)> {
    if n == 0 || n >= npackets {
        return vec![(0, None)];
    }
    let count = npackets.div_ceil(n);
    (0..count)
        .map(|i| {
            let begin = n * i;
            let end = n.saturating_mul(i + 1);
            (begin, (end <= npackets).then_some(end))
        })
        .collect()
}

/// The summaries of one session's samples taken in order, as stats.c takes them with
/// one `OWPStats` object: each `-N` sub-session starts reading at the record where the
/// previous one stopped (its `next_oset`), and the j-reordering denominator carries
/// over. owping/owstats `-N` and powstream's sub-session files share it.
pub struct SampleCursor {
    sched: Schedule,
    start: owamp::Timestamp,
    begin_record: u64,
    received_so_far: u32,
}

impl SampleCursor {
    pub fn new(session: &SessionHeader) -> SampleCursor {
        let f = session.fields();
        SampleCursor {
            sched: Schedule::new(f.sid, f.start_time, &f.slots, f.npackets),
            start: f.start_time,
            begin_record: 0,
            received_so_far: 0,
        }
    }

    /// The statistics of packets `first..last` (`None`: to the end) of `data`, whose
    /// records may have grown since the previous sample (powstream summarises a
    /// session while it runs). `record_limit` is owping's `-vN`.
    pub fn next(
        &mut self,
        data: &SessionData,
        first: u32,
        last: Option<u32>,
        bucket_width: f64,
        record_limit: Option<u64>,
    ) -> Result<Stats, OutputError> {
        let so = StatsOptions {
            bucket_width,
            first,
            last,
            record_limit,
            // Records may only have been removed since (the §7.8 cut at the end).
            begin_record: self.begin_record.min(data.records.len() as u64),
        };
        let start = self.start;
        let sched = &mut self.sched;
        let mut sched_fn = |i: u32| sched.send_time(i).unwrap_or(start);
        let mut stats = Stats::compute(
            &data.session,
            data.records.iter().copied(),
            &data.skips,
            &so,
            Some(&mut sched_fn),
        )
        .map_err(|e| OutputError::Stats {
            path: data.label.clone(),
            source: e,
        })?;
        // stats.c resets the reordering counts for each -N sub-session but not their
        // denominator (rnumseqno), which keeps counting the received records of all the
        // sub-sessions summarised so far: "j-reordering = x%" of the k-th sub-session is
        // its count over the records received in sub-sessions 1..=k.
        self.received_so_far = self.received_so_far.saturating_add(stats.received);
        stats.received = self.received_so_far;
        self.begin_record = stats.next_record;
        Ok(stats)
    }
}

/// Prints one session as owping/owstats/owfetch do. With `-p`, each summary goes to
/// `<dir>/<start>_<end>.txt` (`.sum` with `-M`) and the file name is printed instead.
pub fn print_session(
    out: &mut dyn Write,
    data: &SessionData,
    names: &Names,
    opts: &OutOpts,
) -> Result<(), OutputError> {
    let werr = |e| OutputError::Write {
        path: data.label.clone(),
        source: e,
    };
    let ends = endpoints(&data.session, names);
    if opts.raw && !opts.json {
        let mut s = String::new();
        for r in &data.records {
            s.push_str(&raw_line(r));
        }
        return out.write_all(s.as_bytes()).map_err(werr);
    }
    let f = data.session.fields();
    let mut samples = SampleCursor::new(&data.session);
    let unit = Unit::from_letter(opts.units).unwrap_or(Unit::Milliseconds);
    let pct: Vec<f32> = opts.percentiles.iter().map(|p| *p as f32).collect();
    let limit = (opts.records && opts.record_limit > 0).then_some(u64::from(opts.record_limit));
    // "first:"/"last:" are local times, as the reference's localtime_r prints them.
    let zone = TimeZone::system();
    for (first, last) in sub_sessions(f.npackets, opts.sub_session) {
        let stats = samples.next(data, first, last, opts.bucket_width, limit)?;
        let mut text = String::new();
        let ext;
        if opts.json {
            let recs = opts.raw.then_some(data.records.as_slice());
            let doc = json_summary(&stats, &data.session, data.finished, &ends, &pct, recs);
            text.push_str(&doc.to_string());
            text.push('\n');
            ext = ".json";
        } else {
            if opts.records {
                let n = limit.map_or(usize::MAX, |l| l as usize);
                text.push_str(&per_packet_section(
                    &data.session,
                    &ends,
                    data.records.iter().take(n),
                    &data.skips,
                    stats.first,
                    stats.last,
                    unit,
                    opts.unix_ts,
                ));
            }
            if opts.machine {
                text.push_str(&machine_summary(
                    &stats,
                    &data.session,
                    data.finished,
                    &ends,
                    opts.unix_ts,
                ));
                ext = ".sum";
            } else {
                let so = SummaryOptions {
                    unit,
                    percentiles: pct.clone(),
                    zone: zone.clone(),
                };
                text.push_str(&human_summary(&stats, &data.session, &ends, &so));
                ext = ".txt";
            }
        }
        if opts.print_files {
            let start = stats.start_time.unwrap_or(f.start_time).0;
            let end = stats.end_time.unwrap_or(f.start_time).0;
            let name = format!("{start:020}_{end:020}{ext}");
            let path = match &opts.savedir {
                Some(d) => d.join(name),
                None => PathBuf::from(name),
            };
            std::fs::write(&path, text.as_bytes()).map_err(|e| OutputError::Write {
                path: path.display().to_string(),
                source: e,
            })?;
            writeln!(out, "{}", path.display()).map_err(werr)?;
        } else {
            out.write_all(text.as_bytes()).map_err(werr)?;
        }
    }
    out.flush().map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::{local_host_name, sub_sessions, typed_host_name};

    #[test]
    fn typed_host_names() {
        for (typed, want) in [
            ("127.0.0.1:861", "127.0.0.1"),
            ("localhost", "localhost"),
            ("host.example:9000", "host.example"),
            ("[::1]:861", "::1"),
            ("::1", "::1"),
            ("[fe80::1%eth0]:861", "fe80::1"),
        ] {
            assert_eq!(typed_host_name(typed), want, "{typed}");
        }
    }

    #[test]
    fn local_names_have_no_scope() {
        let sa = "[fe80::1%1]:861".parse().unwrap();
        let name = local_host_name(sa).unwrap();
        assert!(!name.contains('%'), "{name}");
    }

    #[test]
    fn sub_session_bounds() {
        assert_eq!(sub_sessions(100, 0), vec![(0, None)]);
        assert_eq!(sub_sessions(100, 100), vec![(0, None)]);
        assert_eq!(
            sub_sessions(10, 4),
            vec![(0, Some(4)), (4, Some(8)), (8, None)]
        );
        assert_eq!(sub_sessions(10, 5), vec![(0, Some(5)), (5, Some(10))]);
    }
}
