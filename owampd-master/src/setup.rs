//! Command line + `owamp-server.conf` → one validated plan, or one line saying what is
//! wrong (protocol.md §7.11: command-line options override the file).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use config::{Facility, Limits, LogLevel, Pfs, PortRange, RunAs, ServerConf, SrcNode};
use ipc::master::ControlSettings;

use crate::cli::Cli;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Conf(#[from] config::ConfError),
    #[error("{0}")]
    Pfs(#[from] config::PfsError),
    #[error("{0}")]
    Limits(#[from] config::LimitsError),
    /// `origin` is the option (`-d`) or the conf keyword and file.
    #[error("{origin} \"{value}\": {reason}")]
    Bad {
        origin: String,
        value: String,
        reason: String,
    },
    /// A command-line value the config crate's parser refused; its message names the value.
    #[error("{opt}: {reason}")]
    Opt { opt: &'static str, reason: String },
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
    /// Lines of owamp-server.conf read as the reference reads them rather than as
    /// written (`file:line: …`), one warning each once the log is open.
    pub conf_warnings: Vec<String>,
}

/// Where a value came from, for the error line: the option, the configuration file
/// that was read (`owamp-server.conf`, or the older `owampd.conf`) when it set the
/// value, else the default.
fn origin(cli_given: bool, opt: &str, keyword: &str, conf_file: Option<&Path>) -> String {
    match (cli_given, conf_file) {
        (true, _) => opt.to_string(),
        (false, Some(file)) => format!("{keyword} (in {})", file.display()),
        (false, None) => format!("{keyword} (default)"),
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

/// Where a packaged build installs owampd-control and owampd-tester, fixed once when
/// owampd is compiled: `OWAMPD_BUILD_LIBEXEC_DIR=/usr/libexec/owampd-rs cargo build`.
/// Unset (a development build), they are looked for beside owampd itself.
pub const BUILT_LIBEXEC_DIR: Option<&str> = option_env!("OWAMPD_BUILD_LIBEXEC_DIR");

// The daemon changes directory to `/`: a relative directory would move with it.
const _: () = assert!(
    match BUILT_LIBEXEC_DIR {
        Some(d) => !d.is_empty() && d.as_bytes()[0] == b'/',
        None => true,
    },
    "OWAMPD_BUILD_LIBEXEC_DIR must be an absolute path"
);

/// The runtime override of the directory holding owampd-control and owampd-tester.
pub const LIBEXEC_DIR_ENV: &str = "OWAMPD_LIBEXEC_DIR";

/// The directory holding owampd-control and owampd-tester, and where that choice came
/// from (for the error line): `OWAMPD_LIBEXEC_DIR`, else the directory fixed at build
/// time, else the directory of this executable.
fn libexec_dir(cwd: &Path) -> Result<(PathBuf, &'static str), SetupError> {
    if let Some(d) = std::env::var_os(LIBEXEC_DIR_ENV) {
        // Absolute: the daemon changes directory to `/`.
        return Ok((cwd.join(d), LIBEXEC_DIR_ENV));
    }
    if let Some(d) = BUILT_LIBEXEC_DIR {
        return Ok((
            PathBuf::from(d),
            "the libexec directory owampd was built with",
        ));
    }
    let exe = std::env::current_exe().map_err(SetupError::Cwd)?;
    Ok((
        exe.parent().map(Path::to_path_buf).unwrap_or_default(),
        "beside owampd",
    ))
}

/// Now as an NTP 32.32 timestamp (RFC 5905; 2208988800 s from 1900 to 1970), shifted by
/// the debug offset like every clock reading of the reference. The daemon's START time
/// is the master's only clock reading; every other one is `owamp::time`'s, which the
/// master does not link (docs/processes.md), hence this one line of arithmetic here.
pub fn ntp_now(offset_s: f64) -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs_f64() + offset_s + 2_208_988_800.0;
    // as-casts saturate; a clock before 1900 or after 2036 gives a wrong but harmless START.
    (secs * 4_294_967_296.0) as u64
}

/// The syslog crate's facility of the same name.
fn syslog_facility(f: Facility, origin: String) -> Result<syslog::Facility, SetupError> {
    syslog::Facility::from_str(f.as_str()).map_err(|()| SetupError::Bad {
        origin,
        value: f.as_str().to_string(),
        reason: "facility not supported by the syslog writer".into(),
    })
}

/// `config::RunAs` back to the text `sandbox::lookup_*` take (`name` or `-N`).
fn run_as_text(r: &RunAs) -> String {
    match r {
        RunAs::Name(n) => n.clone(),
        RunAs::Id(i) => format!("-{i}"),
    }
}

pub fn plan(cli: &Cli) -> Result<Plan, SetupError> {
    let cwd = std::env::current_dir().map_err(SetupError::Cwd)?;
    let confdir = match &cli.confdir {
        Some(c) => cwd.join(c),
        None => cwd.clone(),
    };
    let loaded = ServerConf::load(&confdir, cli.confdir.is_some())?;
    let conf_file = loaded.path.as_deref();
    // The file read, for the values it set.
    let set_in = |set: bool| conf_file.filter(|_| set);
    let conf = &loaded.conf;
    let pfs = Pfs::load(&confdir)?;
    let limits = Limits::load(&confdir, Some(&pfs))?;

    let authmodes = match &cli.authmode {
        Some(a) => config::server::parse_authmode(a).map_err(|e| SetupError::Opt {
            opt: "-a",
            reason: e.to_string(),
        })?,
        None => conf.authmode,
    };

    let datadir = existing_dir(
        cli.datadir
            .as_deref()
            .or(conf.datadir.as_deref())
            .unwrap_or(&cwd),
        origin(
            cli.datadir.is_some(),
            "-d",
            "datadir",
            set_in(conf.datadir.is_some()),
        ),
    )?;
    let vardir = existing_dir(
        cli.vardir
            .as_deref()
            .or(conf.vardir.as_deref())
            .unwrap_or(&cwd),
        origin(
            cli.vardir.is_some(),
            "-R",
            "vardir",
            set_in(conf.vardir.is_some()),
        ),
    )?;

    let testports = match &cli.testports {
        Some(p) => PortRange::parse(p).map_err(|e| SetupError::Opt {
            opt: "-P",
            reason: e.to_string(),
        })?,
        None => conf.testports,
    };
    let testports = (!testports.is_ephemeral()).then_some(testports);

    let srcnode = match &cli.srcnode {
        Some(s) => SrcNode::parse(s).map_err(|e| SetupError::Opt {
            opt: "-S",
            reason: e.to_string(),
        })?,
        None => conf.srcnode.clone(),
    };

    let facility = match &cli.facility {
        Some(f) => Facility::parse(f).ok_or_else(|| SetupError::Bad {
            origin: "-e".into(),
            value: f.clone(),
            reason: "unknown syslog facility".into(),
        })?,
        None => conf.facility,
    };
    let facility = syslog_facility(
        facility,
        origin(
            cli.facility.is_some(),
            "-e",
            "facility",
            set_in(conf.facility != ServerConf::default().facility),
        ),
    )?;

    let run_as = run_as(cli, conf, conf_file)?;

    let debug_time_offset = config::debug_time_offset().map_err(|e| SetupError::Bad {
        origin: config::DEBUG_TIME_OFFSET_ENV.into(),
        value: e.text,
        reason: "not a number of seconds".into(),
    })?;

    let (libexec, libexec_origin) = libexec_dir(&cwd)?;
    let control_path = libexec.join("owampd-control");
    if !control_path.is_file() {
        return Err(SetupError::Bad {
            origin: format!("control binary ({libexec_origin})"),
            value: control_path.display().to_string(),
            reason: "not found".into(),
        });
    }

    Ok(Plan {
        foreground: cli.foreground,
        vardir,
        srcnode,
        facility,
        loglevel: conf.loglevel,
        control_path,
        settings: ControlSettings {
            authmodes,
            datadir,
            testports,
            diskfudge: conf.diskfudge,
            controltimeout_s: conf.controltimeout,
            pbkdf2_count: conf.pbkdf2_count,
            enddelay_s: conf.enddelay,
            dieby_s: conf.dieby,
            maxcontrolsessions: conf.maxcontrolsessions,
            limits,
            pfs,
            tester_path: libexec.join("owampd-tester"),
            run_as,
            loglevel: conf.loglevel,
            debug_time_offset,
            start_time_ntp: ntp_now(debug_time_offset),
            // Debug only (docs/processes.md "Sandbox"): never the default.
            seccomp_log_only: std::env::var_os("OWAMPD_SECCOMP_LOG_ONLY").is_some_and(|v| v == "1"),
        },
        conf_warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
    })
}

/// protocol.md §7.1: as root, a user to run as is required unless rootfolly; not as root, no
/// uid change happens at all.
fn run_as(
    cli: &Cli,
    conf: &ServerConf,
    conf_file: Option<&Path>,
) -> Result<Option<(u32, u32)>, SetupError> {
    if !sandbox::is_root() {
        return Ok(None);
    }
    let user = cli.user.clone().or(conf.user.as_ref().map(run_as_text));
    let Some(user) = user else {
        if cli.rootfolly || conf.rootfolly {
            return Ok(None);
        }
        return Err(SetupError::RootWithoutUser);
    };
    let ids = sandbox::lookup_user(&user).map_err(|e| SetupError::Bad {
        origin: origin(cli.user.is_some(), "-U", "user", conf_file),
        value: user.clone(),
        reason: e.to_string(),
    })?;
    let gid = match cli.group.clone().or(conf.group.as_ref().map(run_as_text)) {
        Some(g) => sandbox::lookup_group(&g).map_err(|e| SetupError::Bad {
            origin: origin(cli.group.is_some(), "-G", "group", conf_file),
            value: g.clone(),
            reason: e.to_string(),
        })?,
        None => ids.gid,
    };
    Ok(Some((ids.uid, gid)))
}
