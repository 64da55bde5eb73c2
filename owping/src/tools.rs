//! The `main` of owstats, owfetch and owup (protocol.md §8.6), returning exit codes.

use crate::control::{Control, ControlError};
use crate::opts::{CommandLine, OptsError, Program, parse_command_line, usage};
use crate::output::{Names, SessionData, print_session};
use crate::{connect_params, log};
use owamp::Sid;
use std::io::Write;
use std::path::Path;

/// Parses the command line; prints usage or the error. `Err(code)` means exit now.
pub fn command_line(prog: Program, args: &[String]) -> Result<CommandLine, i32> {
    match parse_command_line(prog, args) {
        Ok(c) if c.help => {
            eprint!("{}", usage(prog));
            Err(0)
        }
        Ok(c) if c.version => {
            print!("{}", buildinfo::version_output(prog.name()));
            Err(0)
        }
        Ok(c) => {
            for w in &c.warnings {
                log(prog, w);
            }
            // Once per run, as the reference's clients warn (on stderr: stdout is for
            // the results, which mark unsynchronized times themselves).
            if let Some(w) = sandbox::clock_warning() {
                log(prog, w);
            }
            Ok(c)
        }
        Err(e) => {
            log(prog, &e.to_string());
            eprint!("{}", usage(prog));
            // What getopt itself refuses (an unknown option, a missing value) is a usage
            // error, 2 as for getopt tools; a bad value or operand count is a failure.
            Err(if matches!(e, OptsError::Getopt(_)) {
                2
            } else {
                1
            })
        }
    }
}

/// The host names owstats/owfetch print: resolved as stats.c does, except for `-R`,
/// whose lines carry no addresses (do_stats returns before `OWPStatsCreate`), so no
/// resolver query is spent on them.
fn stats_names(data: &SessionData, out: &crate::opts::OutOpts) -> Names {
    if out.raw && !out.json {
        Names::default()
    } else {
        Names::resolved(&data.session)
    }
}

/// owstats: the statistics of each file in turn.
pub fn owstats_main(args: &[String]) -> i32 {
    let prog = Program::Owstats;
    let cl = match command_line(prog, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for f in &cl.operands {
        let data = match SessionData::open(Path::new(f)) {
            Ok(d) => d,
            Err(e) => {
                log(prog, &e.to_string());
                return 1;
            }
        };
        // Unlike owping and owfetch, the reference's owstats never tests -Q: it prints
        // the summary anyway (-Q still cancels -M and -v, in OutOpts::resolve).
        if let Err(e) = print_session(&mut out, &data, &stats_names(&data, &cl.out), &cl.out) {
            log(prog, &e.to_string());
            return 1;
        }
    }
    0
}

/// owfetch: Fetch-Session for each SID into its save file, then its statistics.
pub fn owfetch_main(args: &[String], intr: &crate::signals::Interrupt) -> i32 {
    let prog = Program::Owfetch;
    let cl = match command_line(prog, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some((server, pairs)) = cl.operands.split_first() else {
        return 1;
    };
    let params = match connect_params(prog, &cl, server) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut ctl = match Control::connect(&params) {
        Ok(c) => c,
        Err(e) => {
            log(prog, &e.to_string());
            return 1;
        }
    };
    let mut status = 0;
    let stdout = std::io::stdout();
    for pair in pairs.chunks_exact(2) {
        let (sid_text, file) = (&pair[0], &pair[1]);
        let sid = match Sid::from_hex(sid_text) {
            Ok(s) => s,
            Err(e) => {
                log(prog, &format!("Unable to fetch sid({sid_text}): {e}"));
                status = 1;
                continue;
            }
        };
        match fetch_to_file(&mut ctl, sid, Path::new(file)) {
            Ok(()) => {}
            Err(e) => {
                log(prog, &format!("Unable to fetch sid({sid_text}): {e}"));
                if matches!(
                    e,
                    ControlError::Refused { .. } | ControlError::NoRecords { .. }
                ) {
                    status = 1;
                    continue;
                }
                // The connection is unusable after anything but a refusal.
                return 1;
            }
        }
        if cl.out.wants_data() {
            let r = SessionData::open(Path::new(file))
                .map_err(|e| e.to_string())
                .and_then(|d| {
                    print_session(&mut stdout.lock(), &d, &stats_names(&d, &cl.out), &cl.out)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = r {
                log(prog, &e);
                status = 1;
            }
        }
        if intr.is_set() {
            return 2;
        }
    }
    status
}

/// Fetches the whole session `sid` into `path` (removed again on failure).
/// The file is created (truncating an existing one) only when the first byte of the
/// session arrives: a refused fetch (an unknown or mistyped SID, a session without
/// records) must not destroy what `path` held. Once written to, a failed fetch removes
/// the partial file.
pub fn fetch_to_file(ctl: &mut Control, sid: Sid, path: &Path) -> Result<(), ControlError> {
    let mut w = LazyFile::new(path);
    let r = ctl.fetch_to(sid, &mut w, path).and_then(|_| {
        w.flush().map_err(|e| ControlError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    });
    if r.is_err() && w.is_open() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// A buffered file writer that creates its file on the first write.
pub(crate) struct LazyFile<'a> {
    path: &'a Path,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl<'a> LazyFile<'a> {
    pub(crate) fn new(path: &'a Path) -> Self {
        LazyFile { path, file: None }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn get(&mut self) -> std::io::Result<&mut std::io::BufWriter<std::fs::File>> {
        let f = match self.file.take() {
            Some(f) => f,
            None => std::io::BufWriter::new(std::fs::File::create(self.path)?),
        };
        Ok(self.file.insert(f))
    }
}

impl Write for LazyFile<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.get()?.write(buf)
    }

    /// Creates the file even if nothing was written, so that a successful fetch always
    /// leaves its file (a fetch of a session without records fails before this).
    fn flush(&mut self) -> std::io::Result<()> {
        self.get()?.flush()
    }
}

/// `Server Up Since: %Y-%m-%dT%H:%M:%S.%03d%Z` in local time, from Server-Start's
/// Start-Time (owping.c, owup branch).
pub fn up_since_line(start: owamp::Timestamp) -> String {
    let (sec, nsec) = start.to_unix();
    let ms = nsec / 1_000_000;
    let zoned =
        jiff::Timestamp::from_second(sec as i64).map(|t| t.to_zoned(jiff::tz::TimeZone::system()));
    match zoned {
        Ok(z) => format!(
            "Server Up Since: {}.{ms:03}{}\n",
            z.strftime("%Y-%m-%dT%H:%M:%S"),
            z.strftime("%Z")
        ),
        Err(_) => format!("Server Up Since: (invalid time {})\n", start.0),
    }
}

/// owup: connect, print when the server started (stderr, like the reference).
pub fn owup_main(args: &[String]) -> i32 {
    let prog = Program::Owup;
    let cl = match command_line(prog, args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(server) = cl.operands.first() else {
        return 1;
    };
    let params = match connect_params(prog, &cl, server) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let ctl = match Control::connect(&params) {
        Ok(c) => c,
        Err(e) => {
            log(prog, &e.to_string());
            return 1;
        }
    };
    // Only the one line: owping.c's owup branch prints nothing else (upstream and the
    // 5.2.3 reference alike), and scripts parse this output.
    eprint!("{}", up_since_line(ctl.server_start));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_file_leaves_an_existing_file_alone_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keep.owp");
        std::fs::write(&p, b"old data").unwrap();
        let w = LazyFile::new(&p);
        assert!(!w.is_open());
        drop(w);
        assert_eq!(std::fs::read(&p).unwrap(), b"old data");
        let mut w = LazyFile::new(&p);
        w.write_all(b"new").unwrap();
        w.flush().unwrap();
        assert!(w.is_open());
        drop(w);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }
}
