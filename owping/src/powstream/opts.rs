//! powstream's command line (powstream(1) of perfSONAR owamp 5.x): its options, with
//! the same C `getopt` syntax as the other clients (clustered flags, attached or
//! separate values) and, as the reference sets `POSIXLY_CORRECT`, the first operand
//! ends the options. Added: `-D` (pScheduler passes it; the reference's optstring
//! lacks it), `-B` is the reference's too, and `--json`.
//!
//! Every bad value is refused here with one line naming the option, so powstream never
//! starts measuring with a command line it only half understood.

use crate::getopt::{GetoptError, Opt, Ordering, getopt_ordered};
use crate::opts::ConnOpts;
use crate::parse::{ParseError, parse_dscp, parse_f64, parse_nonneg_f64, parse_u32};
use config::{Facility, LogLevel, PortRange};
use owamp::{ModeSet, Num64, Slot, SlotKind};
use std::path::PathBuf;
use thiserror::Error;

/// The reference clamps the padding here (powstream.c `MAX_PADDING_SIZE`).
pub const MAX_PADDING: u32 = 0xFFFF;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PowOptsError {
    #[error(transparent)]
    Getopt(#[from] GetoptError),
    #[error(transparent)]
    Value(#[from] ParseError),
    #[error("invalid value {text:?} for -A: expected letters from A, E, O")]
    AuthMode { text: String },
    #[error("invalid test port range (-P {text:?}): {detail}")]
    Ports { text: String, detail: String },
    #[error(
        "invalid test port range (-P {text:?}): it must hold at least 2 ports, one for each of the two sessions that overlap"
    )]
    PortsTooFew { text: String },
    #[error("-D can only be given once")]
    TwoDscp,
    #[error("-B can only be given once")]
    TwoInterfaces,
    #[error("-4 and -6 cannot be given together")]
    BothFamilies,
    #[error(
        "invalid value {text:?} for -e: unknown syslog facility (user, daemon, local0..local7, ...)"
    )]
    Facility { text: String },
    #[error("invalid value {text:?} for -g: expected one of NONE, FATAL, WARN, INFO, DEBUG, ALL")]
    LogLevel { text: String },
    #[error("invalid value {text:?} for {opt}: a positive number of seconds expected")]
    NotPositive { opt: &'static str, text: String },
    #[error("invalid value 0 for -c: a session needs at least one packet")]
    ZeroCount,
    #[error(
        "-N {n} must divide -c {count}: each session is summarised in sub-sessions of -N packets"
    )]
    SubSessions { n: u32, count: u32 },
    #[error("expected: testaddr [servaddr], got {0}")]
    Operands(String),
}

/// powstream's options after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct PowOpts {
    pub conn: ConnOpts,
    /// `-I`: seconds between attempts after a failed one (default 60).
    pub retry_delay: u32,
    /// `-t`: we send, the server receives (default: the server sends to us).
    pub sender: bool,
    /// `-c`: packets per session (default 300).
    pub count: u32,
    /// `-E`: how long our sender waits after its last packet plus the loss timeout
    /// before it reports the session over (default 1 s).
    pub end_delay: Option<f64>,
    /// `-i`: the mean of the exponential send schedule, seconds (default 0.1).
    pub mean_wait: f64,
    /// `-L`: the loss timeout, seconds (default 10).
    pub loss_timeout: f64,
    /// `-P` (default 8760-9960).
    pub ports: PortRange,
    /// `-s` (clamped to 65535).
    pub padding: u32,
    /// `-z`: extra delay before the first session, seconds.
    pub delay_start: f64,
    /// `-D`: DSCP of the test packets, as owping's `-D`.
    pub dscp: Option<u8>,
    /// `-b`: histogram bucket width of the summaries, seconds (default 0.0001).
    pub bucket_width: f64,
    /// `-d`: where the files go (default: the working directory).
    pub savedir: Option<PathBuf>,
    /// `-e` (default user).
    pub facility: Facility,
    /// `-g` (default INFO).
    pub log_level: LogLevel,
    /// `-N`: packets per sub-session summary; 0 = none.
    pub sub_session: u32,
    /// `-p`: print each completed file's path.
    pub print_files: bool,
    /// `-R`: messages to syslog only, not stderr.
    pub syslog_only: bool,
    /// `-v`, counted.
    pub verbose: u32,
    /// `-U`: UNIX times in the summaries too.
    pub unix_ts: bool,
    /// `--json`: one JSON document per summary on stdout.
    pub json: bool,
    pub testaddr: String,
    pub servaddr: String,
}

impl PowOpts {
    /// The one slot of every session: exponential with mean `-i` (powstream.c never
    /// sends anything else).
    pub fn slots(&self) -> Vec<Slot> {
        vec![Slot {
            kind: SlotKind::Exponential,
            param: Num64::from_secs_f64(self.mean_wait),
        }]
    }

    /// About how long one session lasts, seconds.
    pub fn session_secs(&self) -> f64 {
        f64::from(self.count) * self.mean_wait
    }

    /// `-I` as the reference applies it: never longer than a session (so a failed
    /// attempt does not cost more than the session it was for), and at least 1 s here,
    /// where the reference would retry a refused connection in a busy loop.
    pub fn retry_secs(&self) -> u64 {
        let session = self.session_secs().floor();
        let capped = if session < f64::from(self.retry_delay) {
            session as u64
        } else {
            u64::from(self.retry_delay)
        };
        capped.max(1)
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Help,
    /// `-V`/`--version`, as every program of ours has.
    Version,
    Run(Box<PowOpts>),
}

const OPTSTRING: &str = "46A:k:S:B:u:I:c:D:E:i:L:s:tz:P:b:d:e:g:N:pRvUhV";

fn required(v: Option<String>) -> String {
    // getopt guarantees a value for options declared with ':'.
    v.unwrap_or_default()
}

fn positive(opt: &'static str, text: &str) -> Result<f64, PowOptsError> {
    let v = parse_f64(opt, text, "a positive number of seconds expected")?;
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(PowOptsError::NotPositive {
            opt,
            text: text.to_string(),
        })
    }
}

/// `-g`: the reference's level names, plus `WARN` (what its `-h` says, though its
/// parser wants `warning`).
fn log_level(text: &str) -> Option<LogLevel> {
    if text.eq_ignore_ascii_case("warn") {
        return Some(LogLevel::Warning);
    }
    LogLevel::parse(text)
}

/// Parses powstream's arguments (without argv\[0\]).
pub fn parse(args: &[String]) -> Result<Command, PowOptsError> {
    let parsed = getopt_ordered(
        args,
        OPTSTRING,
        &["json", "help", "version"],
        Ordering::RequireOrder,
    )?;
    let mut o = PowOpts {
        conn: ConnOpts::default(),
        retry_delay: 60,
        sender: false,
        count: 300,
        end_delay: None,
        mean_wait: 0.1,
        loss_timeout: 10.0,
        ports: PortRange {
            low: 8760,
            high: 9960,
        },
        padding: 0,
        delay_start: 0.0,
        dscp: None,
        bucket_width: 0.0001,
        savedir: None,
        facility: Facility::User,
        log_level: LogLevel::Info,
        sub_session: 0,
        print_files: false,
        syslog_only: false,
        verbose: 0,
        unix_ts: false,
        json: false,
        testaddr: String::new(),
        servaddr: String::new(),
    };
    for opt in parsed.opts {
        let (c, v) = match opt {
            Opt::Long("json") => {
                o.json = true;
                continue;
            }
            Opt::Long("version") => return Ok(Command::Version),
            Opt::Long(_) => return Ok(Command::Help),
            Opt::Short(c, v) => (c, v),
        };
        match c {
            '4' => o.conn.v4only = true,
            '6' => o.conn.v6only = true,
            'A' => {
                let t = required(v);
                let m =
                    ModeSet::from_letters(&t).map_err(|_| PowOptsError::AuthMode { text: t })?;
                o.conn.auth_modes = Some(m);
            }
            'k' => o.conn.pffile = Some(PathBuf::from(required(v))),
            'S' => o.conn.srcaddr = Some(required(v)),
            'B' => {
                if o.conn.bind_device.is_some() {
                    return Err(PowOptsError::TwoInterfaces);
                }
                o.conn.bind_device = Some(required(v));
            }
            'u' => o.conn.identity = Some(required(v)),
            'I' => o.retry_delay = parse_u32("-I", &required(v))?,
            'c' => o.count = parse_u32("-c", &required(v))?,
            'D' => {
                if o.dscp.is_some() {
                    return Err(PowOptsError::TwoDscp);
                }
                o.dscp = Some(parse_dscp(&required(v))?);
            }
            'E' => o.end_delay = Some(positive("-E", &required(v))?),
            'i' => o.mean_wait = positive("-i", &required(v))?,
            'L' => o.loss_timeout = positive("-L", &required(v))?,
            's' => o.padding = parse_u32("-s", &required(v))?.min(MAX_PADDING),
            't' => o.sender = true,
            'z' => o.delay_start = parse_nonneg_f64("-z", &required(v))?,
            'P' => {
                let t = required(v);
                let r = PortRange::parse(&t).map_err(|e| PowOptsError::Ports {
                    text: t.clone(),
                    detail: e.to_string(),
                })?;
                if !r.is_ephemeral() && u32::from(r.high) - u32::from(r.low) < 1 {
                    return Err(PowOptsError::PortsTooFew { text: t });
                }
                o.ports = r;
            }
            'b' => o.bucket_width = positive("-b", &required(v))?,
            'd' => o.savedir = Some(PathBuf::from(required(v))),
            'e' => {
                let t = required(v);
                o.facility = Facility::parse(&t).ok_or(PowOptsError::Facility { text: t })?;
            }
            'g' => {
                let t = required(v);
                o.log_level = log_level(&t).ok_or(PowOptsError::LogLevel { text: t })?;
            }
            'N' => o.sub_session = parse_u32("-N", &required(v))?,
            'p' => o.print_files = true,
            'R' => o.syslog_only = true,
            'v' => o.verbose += 1,
            'U' => o.unix_ts = true,
            'V' => return Ok(Command::Version),
            // 'h' and anything getopt let through that we do not handle.
            _ => return Ok(Command::Help),
        }
    }
    if o.conn.v4only && o.conn.v6only {
        return Err(PowOptsError::BothFamilies);
    }
    if o.count == 0 {
        return Err(PowOptsError::ZeroCount);
    }
    if o.sub_session > 0 && (o.sub_session > o.count || !o.count.is_multiple_of(o.sub_session)) {
        return Err(PowOptsError::SubSessions {
            n: o.sub_session,
            count: o.count,
        });
    }
    let n = parsed.operands.len();
    let mut operands = parsed.operands.into_iter();
    match (operands.next(), operands.next()) {
        (Some(test), serv) if n <= 2 => {
            o.servaddr = serv.unwrap_or_else(|| test.clone());
            o.testaddr = test;
        }
        (None, _) => return Err(PowOptsError::Operands("nothing".into())),
        _ => {
            return Err(PowOptsError::Operands(format!(
                "{n} operands (options must come before testaddr)"
            )));
        }
    }
    Ok(Command::Run(Box::new(o)))
}

/// The usage text (stderr), in the reference's layout and option order, in our words.
pub fn usage() -> String {
    let lines = [
        "usage: powstream [arguments] testaddr [servaddr]",
        "[arguments] are as follows: ",
        "",
        "   -h             print this message and exit",
        "   -V, --version  print the version and exit",
        "",
        "              [Test Args]",
        "",
        "   -t             the tests go from this host to testaddr (default: from testaddr to here)",
        "   -c count       packets in each complete session (default 300)",
        "   -D DSCP        RFC 2474 DSCP value of the test packets (as owping -D)",
        "   -E endDelay    how long our sender waits after a session before stopping it (seconds)",
        "   -i wait        mean time between packets, exponentially distributed (seconds, default 0.1)",
        "   -L timeout     how long to wait for a packet before counting it lost (seconds, default 10)",
        "   -P portrange   local test ports to use (at least 2 ports, or 0 for any)",
        "   -s padding     bytes of padding added to each packet",
        "   -z delayStart  extra wait before the first session starts (seconds)",
        "",
        "              [Connection Args]",
        "",
        "   -4             use IPv4 only",
        "   -6             use IPv6 only",
        "   -A authmode    modes to ask for: [A]uthenticated, [E]ncrypted, [O]pen",
        "   -k pffile      pass-phrase file for the Authenticated and Encrypted modes",
        "   -S srcaddr     local address or interface for the control connections and tests",
        "   -B interface   bind the control connections and tests to this interface",
        "   -u username    identity for the Authenticated and Encrypted modes",
        "   -I retryDelay  seconds between attempts after a failed one (default 60)",
        "",
        "              [Output Args]",
        "",
        "   -b bucketWidth histogram bin size of the summaries (seconds, default 0.0001)",
        "   -d dir         directory for the session and summary files (default: here)",
        "   -e facility    syslog facility for messages (default user)",
        "   -g loglevel    least severe messages reported: NONE, FATAL, WARN, INFO, DEBUG, ALL",
        "   -N count       also summarise every count packets (must divide -c)",
        "   -p             print the name of each file once it is complete",
        "   -R             messages to syslog only, not to stderr",
        "   -v             more detail in messages",
        "   -U             UNIX timestamps in the summaries too",
        "   --json         one JSON document per summary on stdout",
    ];
    let mut s = lines.map(|l| format!("{l}\n")).concat();
    s.push_str(&buildinfo::usage_version_line());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &[&str]) -> Result<PowOpts, PowOptsError> {
        let args: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        match parse(&args)? {
            Command::Run(o) => Ok(*o),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_references() {
        let o = run(&["host"]).unwrap();
        assert_eq!(o.count, 300);
        assert_eq!(o.retry_delay, 60);
        assert_eq!(o.loss_timeout, 10.0);
        assert_eq!(o.slots()[0].param, Num64(0x1999_9999));
        assert_eq!((o.ports.low, o.ports.high), (8760, 9960));
        assert_eq!(o.facility, Facility::User);
        assert_eq!(o.log_level, LogLevel::Info);
        assert_eq!((o.testaddr.as_str(), o.servaddr.as_str()), ("host", "host"));
    }

    #[test]
    fn pscheduler_command_line() {
        let o = run(&[
            "-p",
            "-d",
            "/tmp/x",
            "-g",
            "WARN",
            "-D",
            "46",
            "-s",
            "20",
            "-P",
            "9000-9100",
            "-c",
            "600",
            "-i",
            "0.1",
            "-L",
            "5",
            "-4",
            "-t",
            "-S",
            "10.0.0.1",
            "[10.0.0.2]:861",
        ])
        .unwrap();
        assert!(o.print_files && o.sender && o.conn.v4only);
        assert_eq!(o.dscp, Some(46));
        assert_eq!(o.log_level, LogLevel::Warning);
        assert_eq!(o.testaddr, "[10.0.0.2]:861");
        // Clustered flags and attached values.
        let o = run(&["-pt", "-c600", "-N60", "h"]).unwrap();
        assert!(o.print_files && o.sender);
        assert_eq!((o.count, o.sub_session), (600, 60));
    }

    #[test]
    fn refusals() {
        assert_eq!(run(&["-c", "0", "h"]), Err(PowOptsError::ZeroCount));
        assert!(matches!(
            run(&["-c", "10", "-N", "3", "h"]),
            Err(PowOptsError::SubSessions { .. })
        ));
        assert!(matches!(
            run(&["-P", "9000-9000", "h"]),
            Err(PowOptsError::PortsTooFew { .. })
        ));
        assert!(run(&["-P", "0", "h"]).is_ok());
        assert!(matches!(
            run(&["-L", "0", "h"]),
            Err(PowOptsError::NotPositive { .. })
        ));
        assert!(run(&["-i", "-1", "h"]).is_err());
        assert!(matches!(
            run(&["-g", "loud", "h"]),
            Err(PowOptsError::LogLevel { .. })
        ));
        assert!(matches!(
            run(&["-e", "nope", "h"]),
            Err(PowOptsError::Facility { .. })
        ));
        assert_eq!(run(&["-4", "-6", "h"]), Err(PowOptsError::BothFamilies));
        assert!(matches!(run(&[]), Err(PowOptsError::Operands(_))));
        // POSIX order: an option after the address is an operand.
        assert!(matches!(
            run(&["h", "-c", "10"]),
            Err(PowOptsError::Operands(_))
        ));
        assert!(matches!(run(&["-x", "h"]), Err(PowOptsError::Getopt(_))));
    }

    #[test]
    fn retry_delay_is_capped_by_the_session() {
        let o = run(&["-c", "100", "-i", "0.1", "h"]).unwrap();
        assert_eq!(o.retry_secs(), 10);
        let o = run(&["-I", "0", "h"]).unwrap();
        assert_eq!(o.retry_secs(), 1);
        let o = run(&["-I", "5", "h"]).unwrap();
        assert_eq!(o.retry_secs(), 5);
    }

    #[test]
    fn help_ends_with_the_version() {
        assert!(usage().ends_with(&format!("\n\nVersion: {}\n", buildinfo::version())));
    }

    #[test]
    fn dash_v_asks_for_the_version() {
        assert_eq!(parse(&["-V".to_string()]), Ok(Command::Version));
        assert_eq!(parse(&["--version".to_string()]), Ok(Command::Version));
        assert_eq!(parse(&["-h".to_string()]), Ok(Command::Help));
    }
}
