//! `owampd-cleanup`: removes session files older than a given age (a day by default)
//! from the data directory's `hierarchy`, except those a running process holds open,
//! and the `catalog` links whose session file is gone. perfSONAR runs the same job
//! from cron.daily, but it only looks at processes named `owampd`: ours are
//! `owampd [master]`, `owampd-control` and `owtest-XXXXXXXX` (one tester per session),
//! and a session that runs for days must keep its file.
//!
//! Every process's open files are read from `/proc/<pid>/fd`. A process of the server
//! (named `owampd…` or `owtest-…`) whose descriptors cannot be read stops the run
//! before anything is removed: a file it holds could not be told from an old one.
//! Other processes that cannot be read are skipped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use owping::getopt::{Opt, getopt};

pub const USAGE: &str = "\
usage: owampd-cleanup [-n] [-v] [-a age] [-d hierarchy] [-l catalog]

   -a age         remove files older than age seconds (default 86400)
   -d hierarchy   session files (default /var/lib/owamp/hierarchy)
   -l catalog     links to them (default /var/lib/owamp/catalog)
   -n             say what would be removed, remove nothing (implies -v)
   -v             name every file removed or kept
   -h             print this message and exit
";

pub const DEFAULT_AGE: Duration = Duration::from_secs(86_400);
pub const DEFAULT_HIERARCHY: &str = "/var/lib/owamp/hierarchy";
pub const DEFAULT_CATALOG: &str = "/var/lib/owamp/catalog";

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("{0}")]
    Usage(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot see the open files of pid {pid} ({name}): {source}; nothing removed \
         (run as root, or with CAP_SYS_PTRACE)"
    )]
    Unseen {
        pid: u32,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub help: bool,
    pub age: Duration,
    pub hierarchy: PathBuf,
    pub catalog: PathBuf,
    pub dry_run: bool,
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            help: false,
            age: DEFAULT_AGE,
            hierarchy: PathBuf::from(DEFAULT_HIERARCHY),
            catalog: PathBuf::from(DEFAULT_CATALOG),
            dry_run: false,
            verbose: false,
        }
    }
}

pub fn parse_args(args: &[String]) -> Result<Options, CleanupError> {
    let usage = |m: String| CleanupError::Usage(m);
    let parsed = getopt(args, "a:d:l:nvh", &[]).map_err(|e| usage(e.to_string()))?;
    let mut o = Options::default();
    for opt in parsed.opts {
        match opt {
            Opt::Short('a', Some(v)) => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| usage(format!("-a {v:?}: expected whole seconds")))?;
                o.age = Duration::from_secs(secs);
            }
            Opt::Short('d', Some(v)) => o.hierarchy = PathBuf::from(v),
            Opt::Short('l', Some(v)) => o.catalog = PathBuf::from(v),
            Opt::Short('n', _) => {
                o.dry_run = true;
                o.verbose = true;
            }
            Opt::Short('v', _) => o.verbose = true,
            _ => o.help = true,
        }
    }
    if !o.help && !parsed.operands.is_empty() {
        return Err(usage(format!(
            "unexpected operand {:?}",
            parsed.operands[0]
        )));
    }
    Ok(o)
}

/// A process that holds a file open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub name: String,
}

/// Whether a process name is one of the server's: the reference's `owampd`, our
/// master `owampd [master]` and `owampd-control`, and our testers `owtest-<SID>`.
pub fn is_server_process(name: &str) -> bool {
    name.starts_with("owampd") || name.starts_with("owtest-")
}

/// Every file any process under `proc_root` (normally `/proc`) holds open, with the
/// processes holding it, in pid order.
pub fn open_files(proc_root: &Path) -> Result<HashMap<PathBuf, Vec<Holder>>, CleanupError> {
    let mut held = HashMap::new();
    let entries = std::fs::read_dir(proc_root).map_err(|source| CleanupError::Io {
        path: proc_root.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let dir = e.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // gone meanwhile
        };
        let name = name.trim_end_matches('\n').to_string();
        let fds = match std::fs::read_dir(dir.join("fd")) {
            Ok(fds) => fds,
            // Exited since the listing: it holds nothing any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) if is_server_process(&name) => {
                return Err(CleanupError::Unseen { pid, name, source });
            }
            Err(_) => continue,
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let holders: &mut Vec<Holder> = held.entry(target).or_default();
                if holders.last().is_none_or(|h| h.pid != pid) {
                    holders.push(Holder {
                        pid,
                        name: name.clone(),
                    });
                }
            }
        }
    }
    for holders in held.values_mut() {
        holders.sort_by_key(|h| h.pid);
    }
    Ok(held)
}

/// What one run did (or, with `-n`, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub removed: Vec<PathBuf>,
    pub kept_open: Vec<(PathBuf, Vec<Holder>)>,
    pub links_removed: Vec<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CleanupError + '_ {
    move |source| CleanupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files under `dir`, recursively, never following a symbolic link.
fn regular_files(dir: &Path, out: &mut Vec<(PathBuf, SystemTime)>) -> Result<(), CleanupError> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let path = e.path();
        let meta = path.symlink_metadata().map_err(io(&path))?;
        if meta.is_dir() {
            regular_files(&path, out)?;
        } else if meta.is_file() {
            out.push((path, meta.modified().map_err(io(&e.path()))?));
        }
    }
    Ok(())
}

/// Removes what is older than `now - opts.age`: unheld regular files under the
/// hierarchy, then catalog links that no longer lead to a file. `held` is what
/// [`open_files`] found.
pub fn clean(
    opts: &Options,
    now: SystemTime,
    held: &HashMap<PathBuf, Vec<Holder>>,
) -> Result<Report, CleanupError> {
    let cutoff = now.checked_sub(opts.age).unwrap_or(SystemTime::UNIX_EPOCH);
    let hierarchy = opts.hierarchy.canonicalize().map_err(io(&opts.hierarchy))?;
    let mut report = Report::default();
    let mut files = Vec::new();
    regular_files(&hierarchy, &mut files)?;
    files.sort();
    for (path, mtime) in files {
        if mtime > cutoff {
            continue;
        }
        if let Some(h) = held.get(&path) {
            report.kept_open.push((path, h.clone()));
            continue;
        }
        if !opts.dry_run {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                // Removed meanwhile (a fetch with delete_on_fetch): nothing to do.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        report.removed.push(path);
    }
    let links = match std::fs::read_dir(&opts.catalog) {
        Ok(l) => l,
        // owampd makes the catalog at start; none yet means no links to clean.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(io(&opts.catalog)(e)),
    };
    let mut dangling = Vec::new();
    for e in links {
        let e = e.map_err(io(&opts.catalog))?;
        let path = e.path();
        let meta = path.symlink_metadata().map_err(io(&path))?;
        let old = meta.modified().map_err(io(&path))? <= cutoff;
        // metadata() follows the link: an error means its session file is gone
        // (or is about to be, with -n).
        let gone =
            report.removed.iter().any(|r| {
                std::fs::read_link(&path).is_ok_and(|t| hierarchy.join(&t) == *r || t == *r)
            }) || !path.metadata().is_ok_and(|m| m.is_file());
        if meta.file_type().is_symlink() && old && gone {
            dangling.push(path);
        }
    }
    dangling.sort();
    for path in dangling {
        if !opts.dry_run {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        report.links_removed.push(path);
    }
    Ok(report)
}

/// The `-v` lines for a report.
pub fn describe(report: &Report, dry_run: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let verb = if dry_run { "would remove" } else { "removed" };
    for p in &report.removed {
        writeln!(out, "{verb} {}", p.display())?;
    }
    for (p, holders) in &report.kept_open {
        let by: Vec<String> = holders
            .iter()
            .map(|h| format!("pid {} ({})", h.pid, h.name))
            .collect();
        writeln!(out, "kept {}: open in {}", p.display(), by.join(", "))?;
    }
    for p in &report.links_removed {
        writeln!(out, "{verb} link {}", p.display())?;
    }
    writeln!(
        out,
        "{} file(s) and {} link(s) {verb}, {} kept open",
        report.removed.len(),
        report.links_removed.len(),
        report.kept_open.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn age(path: &Path, secs: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn options() {
        let o = parse_args(&[]).unwrap();
        assert_eq!(o, Options::default());
        let v: Vec<String> = ["-n", "-a", "60", "-d", "/h", "-l", "/c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse_args(&v).unwrap();
        assert!(o.dry_run && o.verbose);
        assert_eq!(o.age, Duration::from_secs(60));
        assert_eq!(
            (o.hierarchy.to_str(), o.catalog.to_str()),
            (Some("/h"), Some("/c"))
        );
        for bad in [&["-a", "1d"][..], &["-x"], &["extra"], &["-a"]] {
            let v: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse_args(&v).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_processes_are_recognised_by_name() {
        for n in [
            "owampd",
            "owampd [master]",
            "owampd-control",
            "owampd-spawner",
            "owtest-0a1b2c3d",
        ] {
            assert!(is_server_process(n), "{n}");
        }
        for n in ["owping", "bash", "powstream", "systemd"] {
            assert!(!is_server_process(n), "{n}");
        }
    }

    #[test]
    fn old_unheld_files_and_their_links_go_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("hierarchy/regular");
        let c = dir.path().join("catalog");
        std::fs::create_dir_all(&h).unwrap();
        std::fs::create_dir_all(&c).unwrap();
        let old = h.join("OLD.owp");
        let held_old = h.join("HELD.owp");
        let fresh = h.join("NEW.owp");
        for f in [&old, &held_old, &fresh] {
            std::fs::write(f, "x").unwrap();
        }
        age(&old, 2 * 86_400);
        age(&held_old, 2 * 86_400);
        std::os::unix::fs::symlink(&old, c.join("OLD.owp")).unwrap();
        std::os::unix::fs::symlink(&fresh, c.join("NEW.owp")).unwrap();
        // A link is old when it is: links to files that are kept stay whatever their age.
        std::os::unix::fs::symlink(&held_old, c.join("HELD.owp")).unwrap();
        // Outside the hierarchy, reached through a link: never touched.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        age(&outside, 2 * 86_400);
        std::os::unix::fs::symlink(&outside, h.join("escape")).unwrap();

        let opts = Options {
            hierarchy: dir.path().join("hierarchy"),
            catalog: c.clone(),
            // Everything written before now is old enough: links made a moment ago too.
            age: Duration::ZERO,
            ..Options::default()
        };
        let holder = Holder {
            pid: 42,
            name: "owtest-01020304".into(),
        };
        let held: HashMap<PathBuf, Vec<Holder>> =
            [(held_old.canonicalize().unwrap(), vec![holder.clone()])].into();
        let later = SystemTime::now() + Duration::from_secs(1);

        let dry = Options {
            dry_run: true,
            ..opts.clone()
        };
        let r = clean(&dry, later, &held).unwrap();
        assert_eq!(r.removed.len(), 2, "{r:?}");
        assert!(old.exists() && fresh.exists(), "-n removes nothing");

        let opts = Options {
            age: Duration::from_secs(86_400),
            ..opts
        };
        let r = clean(&opts, SystemTime::now(), &held).unwrap();
        let canon = |p: &Path| p.canonicalize().unwrap();
        assert_eq!(r.removed, vec![canon(&h).join("OLD.owp")]);
        assert_eq!(r.kept_open, vec![(canon(&held_old), vec![holder])]);
        assert!(!old.exists() && held_old.exists() && fresh.exists() && outside.exists());
        // The links are new: none is old enough yet, even the dangling one.
        assert!(r.links_removed.is_empty());
        age_link_dir(&c);
        let r = clean(&opts, SystemTime::now(), &held).unwrap();
        assert_eq!(r.links_removed, vec![c.join("OLD.owp")]);
        assert!(c.join("NEW.owp").symlink_metadata().is_ok());
        assert!(c.join("HELD.owp").symlink_metadata().is_ok());

        let mut out = Vec::new();
        describe(&r, false, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("open in pid 42 (owtest-01020304)"), "{out}");
        assert!(
            out.ends_with("0 file(s) and 1 link(s) removed, 1 kept open\n"),
            "{out}"
        );
    }

    /// Links' own times cannot be set through std: make them old by re-creating them
    /// through `touch -h`.
    fn age_link_dir(c: &Path) {
        for e in std::fs::read_dir(c).unwrap().flatten() {
            let st = std::process::Command::new("touch")
                .args(["-h", "-d", "3 days ago"])
                .arg(e.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
    }

    #[test]
    fn this_process_is_seen_holding_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("held");
        let _f = File::create(&p).unwrap();
        let held = open_files(Path::new("/proc")).unwrap();
        let h = held.get(&p.canonicalize().unwrap()).expect("held by us");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].pid, std::process::id());
    }

    #[test]
    fn a_missing_hierarchy_is_an_error_naming_it() {
        let opts = Options {
            hierarchy: PathBuf::from("/nonexistent/hierarchy"),
            ..Options::default()
        };
        let e = clean(&opts, SystemTime::now(), &HashMap::new()).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/hierarchy: "), "{e}");
    }
}
