//! Command line + `owamp-server.conf` → one validated plan, or one line saying what is
//! wrong (spec §7.11: command-line options override the file).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use ipc::master::{ControlSettings, LogLevel};

use crate::cli::Cli;
use crate::shim_config::{self as config, ConfError, ServerConf, SrcNode};
use crate::shim_sandbox as sandbox;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Conf(#[from] ConfError),
    /// `origin` is the option (`-d`) or the conf keyword and file.
    #[error("{origin} \"{value}\": {reason}")]
    Bad {
        origin: String,
        value: String,
        reason: String,
    },
    #[error(
        "refusing to run as root without a user to run as: give -U user (or -f to really run as root)"
    )]
    RootWithoutUser,
    #[error("cannot find the current directory: {0}")]
    Cwd(std::io::Error),
}

/// Everything the master needs, validated, with absolute paths (it chdirs to `/` when
/// it daemonizes).
#[derive(Debug)]
pub struct Plan {
    pub foreground: bool,
    pub vardir: PathBuf,
    pub srcnode: SrcNode,
    pub facility: syslog::Facility,
    pub loglevel: LogLevel,
    pub control_path: PathBuf,
    pub settings: ControlSettings,
}

/// Where a value came from, for the error line.
fn origin(cli_given: bool, opt: &str, keyword: &str, conf_file: &Path) -> String {
    if cli_given {
        opt.to_string()
    } else {
        format!("{keyword} ({})", conf_file.display())
    }
}

/// An existing directory, made absolute.
fn existing_dir(p: &Path, origin: String) -> Result<PathBuf, SetupError> {
    let bad = |reason: String| SetupError::Bad {
        origin: origin.clone(),
        value: p.display().to_string(),
        reason,
    };
    let abs = p.canonicalize().map_err(|e| bad(e.to_string()))?;
    if !abs.is_dir() {
        return Err(bad("not a directory".into()));
    }
    Ok(abs)
}

/// The directory holding owampd-control and owampd-tester: `OWAMPD_LIBEXEC_DIR`, else
/// the directory of this executable.
fn libexec_dir() -> Result<PathBuf, SetupError> {
    if let Some(d) = std::env::var_os("OWAMPD_LIBEXEC_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().map_err(SetupError::Cwd)?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Now as an NTP 32.32 timestamp (RFC 5905; 2208988800 s from 1900 to 1970), shifted by
/// the debug offset like every clock reading of the reference.
pub fn ntp_now(offset_s: f64) -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs_f64() + offset_s + 2_208_988_800.0;
    // as-casts saturate; a clock before 1900 or after 2036 gives a wrong but harmless START.
    (secs * 4_294_967_296.0) as u64
}

pub fn plan(cli: &Cli) -> Result<Plan, SetupError> {
    let cwd = std::env::current_dir().map_err(SetupError::Cwd)?;
    let confdir = cwd.join(cli.confdir.as_deref().unwrap_or(Path::new(".")));
    let conf = ServerConf::load(&confdir, cli.confdir.is_some())?;
    let conf_file = confdir.join("owamp-server.conf");
    let pfs = config::load_pfs(&confdir)?;
    let limits = config::load_limits(&confdir, Some(&pfs))?;

    let authmodes = match &cli.authmode {
        Some(a) => config::parse_authmode(a).ok_or_else(|| SetupError::Bad {
            origin: "-a".into(),
            value: a.clone(),
            reason: "authmode must be letters from A, E, O".into(),
        })?,
        None => conf.authmode.unwrap_or(7),
    };

    let datadir = existing_dir(
        cli.datadir
            .as_deref()
            .or(conf.datadir.as_deref())
            .unwrap_or(&cwd),
        origin(cli.datadir.is_some(), "-d", "datadir", &conf_file),
    )?;
    let vardir = existing_dir(
        cli.vardir
            .as_deref()
            .or(conf.vardir.as_deref())
            .unwrap_or(&cwd),
        origin(cli.vardir.is_some(), "-R", "vardir", &conf_file),
    )?;

    let testports = match &cli.testports {
        Some(p) => Some(config::parse_port_range(p).map_err(|_| SetupError::Bad {
            origin: "-P".into(),
            value: p.clone(),
            reason: "port range must be 0 or low-high".into(),
        })?),
        None => conf.testports,
    }
    .filter(|r| r.low != 0);

    let srcnode = match &cli.srcnode {
        Some(s) => SrcNode::parse(s).map_err(|_| SetupError::Bad {
            origin: "-S".into(),
            value: s.clone(),
            reason: "expected node:port, [v6addr]:port or :port".into(),
        })?,
        None => conf.srcnode.clone().unwrap_or(SrcNode {
            host: None,
            port: 861,
        }),
    };

    let facility_name = cli
        .facility
        .clone()
        .or(conf.facility.clone())
        .unwrap_or_else(|| "daemon".into());
    let facility =
        syslog::Facility::from_str(&facility_name.to_ascii_lowercase()).map_err(|()| {
            SetupError::Bad {
                origin: origin(cli.facility.is_some(), "-e", "facility", &conf_file),
                value: facility_name.clone(),
                reason: "unknown syslog facility".into(),
            }
        })?;

    let run_as = run_as(cli, &conf, &conf_file)?;

    let debug_time_offset = match std::env::var("OWAMP_DEBUG_TIMEOFFSET") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| SetupError::Bad {
                origin: "OWAMP_DEBUG_TIMEOFFSET".into(),
                value: v.clone(),
                reason: "not a number of seconds".into(),
            })?,
        Err(_) => 0.0,
    };

    let libexec = libexec_dir()?;
    let control_path = libexec.join("owampd-control");
    if !control_path.is_file() {
        return Err(SetupError::Bad {
            origin: "control binary (OWAMPD_LIBEXEC_DIR or beside owampd)".into(),
            value: control_path.display().to_string(),
            reason: "not found".into(),
        });
    }

    Ok(Plan {
        foreground: cli.foreground,
        vardir,
        srcnode,
        facility,
        loglevel: conf.loglevel.unwrap_or(LogLevel::Info),
        control_path,
        settings: ControlSettings {
            authmodes,
            datadir,
            testports,
            diskfudge: conf.diskfudge,
            controltimeout_s: conf.controltimeout,
            enddelay_s: conf.enddelay,
            dieby_s: conf.dieby,
            maxcontrolsessions: conf.maxcontrolsessions,
            limits,
            pfs,
            tester_path: libexec.join("owampd-tester"),
            run_as,
            verbose: cli.verbose || conf.verbose,
            debug_time_offset,
            start_time_ntp: ntp_now(debug_time_offset),
            // Debug only (design.md "Sandbox"): never the default.
            seccomp_log_only: std::env::var_os("OWAMPD_SECCOMP_LOG_ONLY").is_some_and(|v| v == "1"),
        },
    })
}

/// spec §7.1: as root, a user to run as is required unless rootfolly; not as root, no
/// uid change happens at all.
fn run_as(
    cli: &Cli,
    conf: &ServerConf,
    conf_file: &Path,
) -> Result<Option<(u32, u32)>, SetupError> {
    if !sandbox::is_root() {
        return Ok(None);
    }
    let Some(user) = cli.user.as_ref().or(conf.user.as_ref()) else {
        if cli.rootfolly || conf.rootfolly {
            return Ok(None);
        }
        return Err(SetupError::RootWithoutUser);
    };
    let ids = sandbox::lookup_user(user).map_err(|e| SetupError::Bad {
        origin: origin(cli.user.is_some(), "-U", "user", conf_file),
        value: user.clone(),
        reason: e.to_string(),
    })?;
    let gid = match cli.group.as_ref().or(conf.group.as_ref()) {
        Some(g) => sandbox::lookup_group(g).map_err(|e| SetupError::Bad {
            origin: origin(cli.group.is_some(), "-G", "group", conf_file),
            value: g.clone(),
            reason: e.to_string(),
        })?,
        None => ids.gid,
    };
    Ok(Some((ids.uid, gid)))
}
