//! SHIM, to delete at merge: the part of the `config` crate's API the master uses
//! (`ServerConf::load`, `SrcNode::parse`, `PortRange::parse`, `Pfs::load`,
//! `Limits::load`), written minimally so the master can be built and tested before the
//! real crate lands. At merge: `use config::...` in its place and delete this file.
//! Behaviour follows spec §7.11; `.limits`/`.pfs` are only checked for readability here.

use std::path::{Path, PathBuf};

pub use ipc::master::{Limits, LogLevel, Pfs, PortRange};

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: unknown keyword \"{keyword}\"")]
    UnknownKey {
        path: PathBuf,
        line: usize,
        keyword: String,
    },
    #[error("{path}:{line}: bad value for {keyword}: {reason}")]
    BadValue {
        path: PathBuf,
        line: usize,
        keyword: String,
        reason: String,
    },
    #[error("invalid {what} \"{value}\"")]
    Parse { what: &'static str, value: String },
}

/// `-S` / `srcnode`: `node:port`, `[v6]:port`, `:port`, or a bare node (port 861).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrcNode {
    pub host: Option<String>,
    pub port: u16,
}

const OWAMP_PORT: u16 = 861;

impl SrcNode {
    pub fn parse(s: &str) -> Result<SrcNode, ConfError> {
        let bad = || ConfError::Parse {
            what: "srcnode",
            value: s.to_string(),
        };
        let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
        let (host, p) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (h, None),
                a => (h, Some(a.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if s.matches(':').count() == 1 {
            let (h, p) = s.split_once(':').ok_or_else(bad)?;
            (h, Some(p))
        } else {
            (s, None)
        };
        Ok(SrcNode {
            host: (!host.is_empty()).then(|| host.to_string()),
            port: p.map(port).transpose()?.unwrap_or(OWAMP_PORT),
        })
    }
}

/// `0` (ephemeral: 0-0), `N` or `low-high` with 0 < low <= high.
pub fn parse_port_range(s: &str) -> Result<PortRange, ConfError> {
    let bad = || ConfError::Parse {
        what: "port range",
        value: s.to_string(),
    };
    let num = |p: &str| p.trim().parse::<u16>().map_err(|_| bad());
    let (low, high) = match s.split_once('-') {
        Some((l, h)) => (num(l)?, num(h)?),
        None => {
            let n = num(s)?;
            (n, n)
        }
    };
    if (low == 0) != (high == 0) || low > high {
        return Err(bad());
    }
    Ok(PortRange { low, high })
}

pub fn parse_log_level(s: &str) -> Option<LogLevel> {
    Some(match s {
        "fatal" => LogLevel::Fatal,
        "warning" => LogLevel::Warning,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "all" => LogLevel::All,
        "none" => LogLevel::None,
        _ => return None,
    })
}

/// `authmode` letters from {A, E, O}, any case, to the mode bits 1 (open),
/// 2 (authenticated), 4 (encrypted).
pub fn parse_authmode(s: &str) -> Option<u32> {
    let mut m = 0;
    for c in s.chars() {
        m |= match c.to_ascii_uppercase() {
            'O' => 1,
            'A' => 2,
            'E' => 4,
            _ => return None,
        };
    }
    (m != 0).then_some(m)
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConf {
    pub authmode: Option<u32>,
    pub datadir: Option<PathBuf>,
    pub vardir: Option<PathBuf>,
    pub srcnode: Option<SrcNode>,
    pub testports: Option<PortRange>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub rootfolly: bool,
    pub facility: Option<String>,
    pub loglevel: Option<LogLevel>,
    pub loglocation: bool,
    pub verbose: bool,
    pub diskfudge: f64,
    pub dieby: u32,
    pub controltimeout: u32,
    pub pbkdf2_count: u32,
    pub enddelay: f64,
    pub maxcontrolsessions: u32,
}

impl Default for ServerConf {
    fn default() -> Self {
        ServerConf {
            authmode: None,
            datadir: None,
            vardir: None,
            srcnode: None,
            testports: None,
            user: None,
            group: None,
            rootfolly: false,
            facility: None,
            loglevel: None,
            loglocation: false,
            verbose: false,
            diskfudge: 1.0,
            dieby: 5,
            controltimeout: 1800,
            pbkdf2_count: 2048,
            enddelay: 1.0,
            maxcontrolsessions: 0,
        }
    }
}

impl ServerConf {
    /// `{confdir}/owamp-server.conf` (else the older `owampd.conf`); a missing file is
    /// fine unless `required` (`-c` given) (spec §7.11).
    pub fn load(confdir: &Path, required: bool) -> Result<ServerConf, ConfError> {
        let mut path = confdir.join("owamp-server.conf");
        if !path.exists() && confdir.join("owampd.conf").exists() {
            path = confdir.join("owampd.conf");
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(ServerConf::default());
            }
            Err(source) => return Err(ConfError::Io { path, source }),
        };
        let mut c = ServerConf::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let body = raw.split('#').next().unwrap_or("").trim();
            let mut words = body.split_whitespace();
            let Some(key) = words.next() else { continue };
            let keyword = key.to_ascii_lowercase();
            let value = words.next().unwrap_or("");
            let bad = |reason: &str| ConfError::BadValue {
                path: path.clone(),
                line,
                keyword: keyword.clone(),
                reason: reason.to_string(),
            };
            let need = |v: &str| {
                if v.is_empty() {
                    Err(bad("missing value"))
                } else {
                    Ok(v.to_string())
                }
            };
            let num = |v: &str| v.parse::<u32>().map_err(|_| bad(v));
            let float = |v: &str| v.parse::<f64>().map_err(|_| bad(v));
            match keyword.as_str() {
                "authmode" => c.authmode = Some(parse_authmode(value).ok_or_else(|| bad(value))?),
                "datadir" => c.datadir = Some(PathBuf::from(need(value)?)),
                "vardir" => c.vardir = Some(PathBuf::from(need(value)?)),
                "srcnode" => c.srcnode = Some(SrcNode::parse(value).map_err(|_| bad(value))?),
                "testports" => c.testports = Some(parse_port_range(value).map_err(|_| bad(value))?),
                "user" => c.user = Some(need(value)?),
                "group" => c.group = Some(need(value)?),
                "rootfolly" => c.rootfolly = true,
                "facility" => c.facility = Some(need(value)?),
                "loglevel" => c.loglevel = Some(parse_log_level(value).ok_or_else(|| bad(value))?),
                "loglocation" => c.loglocation = true,
                "verbose" => c.verbose = true,
                "diskfudge" => {
                    let f = float(value)?;
                    if !(1.0..=10.0).contains(&f) {
                        return Err(bad("must be 1.0 to 10.0"));
                    }
                    c.diskfudge = f;
                }
                "dieby" => c.dieby = num(value)?,
                "controltimeout" => c.controltimeout = num(value)?,
                "pbkdf2_count" => c.pbkdf2_count = num(value)?,
                "enddelay" => {
                    let f = float(value)?;
                    if f.is_nan() || f < 0.0 {
                        return Err(bad("must be >= 0"));
                    }
                    c.enddelay = f;
                }
                k if k.starts_with("maxcontrolsess") => c.maxcontrolsessions = num(value)?,
                _ => {
                    return Err(ConfError::UnknownKey {
                        path,
                        line,
                        keyword: key.to_string(),
                    });
                }
            }
        }
        Ok(c)
    }
}

/// Stand-in for `config::Pfs::load`: checks the file is readable if present.
pub fn load_pfs(confdir: &Path) -> Result<Pfs, ConfError> {
    readable_if_present(&confdir.join("owamp-server.pfs"))?;
    Ok(Pfs::default())
}

/// Stand-in for `config::Limits::load`: checks the file is readable if present.
pub fn load_limits(confdir: &Path, _pfs: Option<&Pfs>) -> Result<Limits, ConfError> {
    readable_if_present(&confdir.join("owamp-server.limits"))?;
    Ok(Limits::default())
}

fn readable_if_present(path: &Path) -> Result<(), ConfError> {
    match std::fs::read(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ConfError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
