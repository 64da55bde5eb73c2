//! The command lines of owping, owstats, owfetch and owup (protocol.md §8.1), with the
//! reference's option strings: connection `64A:k:S:u:`, test `c:D:E:F:i:L:P:s:z:`,
//! output `a:b:d:Mn:N:pQRv::U`, owping's `ftT:`, and `h`. Added here: `-B ifname`
//! (connection), `--json` (output), and `-V`/`--version` (every program).

use crate::getopt::{GetoptError, Opt, getopt};
use crate::parse::{
    ParseError, default_slots, parse_dscp, parse_f64, parse_nonneg_f64, parse_percentiles,
    parse_slots, parse_u32,
};
use config::PortRange;
use owamp::{ModeSet, Slot};
use std::path::PathBuf;
use thiserror::Error;

/// owping clamps the padding here (owping.c `MAX_PADDING_SIZE`).
pub const MAX_PADDING: u32 = 65_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptsError {
    #[error(transparent)]
    Getopt(#[from] GetoptError),
    #[error(transparent)]
    Value(#[from] ParseError),
    #[error("invalid value {text:?} for -A: expected letters from A, E, O")]
    AuthMode { text: String },
    #[error("invalid value {text:?} for -n: expected one of n, u, m, s")]
    Units { text: String },
    #[error("invalid test port range specified (-P {text:?}): {detail}")]
    Ports { text: String, detail: String },
    #[error("invalid option '-D': can only set one '-D'")]
    TwoDscp,
    #[error("-4 and -6 flags cannot be set together")]
    BothFamilies,
    #[error("{0}")]
    Operands(&'static str),
}

/// The options that open a control connection (owping, owfetch, owup).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnOpts {
    pub v4only: bool,
    pub v6only: bool,
    /// `-A`; `None` = the default (AEO, reduced to O without a pass-phrase; protocol.md §1.8).
    pub auth_modes: Option<ModeSet>,
    pub pffile: Option<PathBuf>,
    pub srcaddr: Option<String>,
    pub identity: Option<String>,
    pub bind_device: Option<String>,
}

/// owping's test options.
#[derive(Clone, Debug, PartialEq)]
pub struct TestOpts {
    pub count: u32,
    pub dscp: Option<u8>,
    pub end_delay: Option<f64>,
    pub to: bool,
    pub from: bool,
    pub save_to: Option<PathBuf>,
    pub save_from: Option<PathBuf>,
    pub slots: Vec<Slot>,
    pub padding: u32,
    /// `-L`; `None` = rtt_bound + 2 s.
    pub loss_threshold: Option<f64>,
    pub ports: PortRange,
    pub delay_start: f64,
}

impl Default for TestOpts {
    fn default() -> Self {
        TestOpts {
            count: 100,
            dscp: None,
            end_delay: None,
            to: false,
            from: false,
            save_to: None,
            save_from: None,
            slots: default_slots(),
            padding: 0,
            loss_threshold: None,
            ports: PortRange {
                low: 8760,
                high: 9960,
            },
            delay_start: 0.0,
        }
    }
}

/// The output options shared by owping, owstats and owfetch.
#[derive(Clone, Debug, PartialEq)]
pub struct OutOpts {
    pub percentiles: Vec<f64>,
    pub bucket_width: f64,
    pub savedir: Option<PathBuf>,
    pub machine: bool,
    pub units: char,
    /// `-N`: summaries of this many packets each; 0 = whole session.
    pub sub_session: u32,
    pub print_files: bool,
    pub quiet: bool,
    pub raw: bool,
    /// `-v[N]`: per-packet lines, the first N only when N > 0.
    pub records: bool,
    pub record_limit: u32,
    pub unix_ts: bool,
    pub json: bool,
}

impl Default for OutOpts {
    fn default() -> Self {
        OutOpts {
            percentiles: Vec::new(),
            bucket_width: 0.0001,
            savedir: None,
            machine: false,
            units: 'm',
            sub_session: 0,
            print_files: false,
            quiet: false,
            raw: false,
            records: false,
            record_limit: 0,
            unix_ts: false,
            json: false,
        }
    }
}

impl OutOpts {
    /// The reference's precedence rules, with their warnings: `-R` implies `-Q`;
    /// `-Q` cancels `-v` and `-M`; `-M` cancels `-v`.
    pub fn resolve(&mut self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if self.raw {
            self.quiet = true;
        }
        if self.records && self.quiet {
            warnings.push("Ignoring '-v', '-Q' set");
            self.records = false;
        }
        if self.machine && self.quiet {
            warnings.push("Ignoring '-M', '-Q' set");
            self.machine = false;
        }
        if self.records && self.machine {
            warnings.push("Ignoring '-v', '-M' set");
            self.records = false;
        }
        warnings
    }

    /// Whether anything is printed from a session's data (statistics or raw lines).
    pub fn wants_data(&self) -> bool {
        !self.quiet || self.raw || self.json
    }
}

/// Which program's command line this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Owping,
    Owstats,
    Owfetch,
    Owup,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Owping => "owping",
            Program::Owstats => "owstats",
            Program::Owfetch => "owfetch",
            Program::Owup => "owup",
        }
    }

    fn optstring(self) -> String {
        const CONN: &str = "64A:k:S:u:B:";
        const TEST: &str = "c:D:E:F:i:L:P:s:z:ftT:";
        const OUT: &str = "a:b:d:Mn:N:pQRv::U";
        let mut s = String::new();
        match self {
            Program::Owping => {
                s.push_str(CONN);
                s.push_str(TEST);
                s.push_str(OUT);
            }
            Program::Owstats => s.push_str(OUT),
            Program::Owfetch => {
                s.push_str(CONN);
                s.push_str(OUT);
            }
            Program::Owup => s.push_str(CONN),
        }
        s.push_str("hV");
        s
    }

    fn long_opts(self) -> &'static [&'static str] {
        match self {
            Program::Owping | Program::Owstats | Program::Owfetch => &["json", "help", "version"],
            Program::Owup => &["help", "version"],
        }
    }
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandLine {
    pub help: bool,
    /// `-V`/`--version`: print the version and exit.
    pub version: bool,
    pub conn: ConnOpts,
    pub test: TestOpts,
    pub out: OutOpts,
    pub operands: Vec<String>,
    /// Notes for stderr (the `Ignoring ...` lines).
    pub warnings: Vec<&'static str>,
}

fn required(v: Option<String>) -> String {
    // getopt guarantees a value for options declared with ':'.
    v.unwrap_or_default()
}

/// Parses the arguments (without argv\[0\]) of `prog`.
pub fn parse_command_line(prog: Program, args: &[String]) -> Result<CommandLine, OptsError> {
    let parsed = getopt(args, &prog.optstring(), prog.long_opts())?;
    let mut conn = ConnOpts::default();
    let mut test = TestOpts::default();
    let mut out = OutOpts::default();
    let mut help = false;
    let mut version = false;
    for opt in parsed.opts {
        let (c, v) = match opt {
            Opt::Long("json") => {
                out.json = true;
                continue;
            }
            Opt::Long("version") => {
                version = true;
                continue;
            }
            Opt::Long(_) => {
                help = true;
                continue;
            }
            Opt::Short(c, v) => (c, v),
        };
        match c {
            '4' => conn.v4only = true,
            '6' => conn.v6only = true,
            'A' => {
                let t = required(v);
                let m = ModeSet::from_letters(&t).map_err(|_| OptsError::AuthMode { text: t })?;
                conn.auth_modes = Some(m);
            }
            'k' => conn.pffile = Some(PathBuf::from(required(v))),
            'S' => conn.srcaddr = Some(required(v)),
            'u' => conn.identity = Some(required(v)),
            'B' => conn.bind_device = Some(required(v)),
            'c' => test.count = parse_u32("-c", &required(v))?,
            'D' => {
                if test.dscp.is_some() {
                    return Err(OptsError::TwoDscp);
                }
                test.dscp = Some(parse_dscp(&required(v))?);
            }
            'E' => test.end_delay = Some(parse_nonneg_f64("-E", &required(v))?),
            'F' => {
                test.save_from = Some(PathBuf::from(required(v)));
                test.from = true;
            }
            'f' => test.from = true,
            'T' => {
                test.save_to = Some(PathBuf::from(required(v)));
                test.to = true;
            }
            't' => test.to = true,
            'i' => test.slots = parse_slots(&required(v))?,
            's' => test.padding = parse_u32("-s", &required(v))?.min(MAX_PADDING),
            'L' => {
                let l = parse_nonneg_f64("-L", &required(v))?;
                // The reference treats 0 as "unset" (`lossThreshold <= 0.0`).
                test.loss_threshold = (l > 0.0).then_some(l);
            }
            'P' => {
                let t = required(v);
                test.ports = PortRange::parse(&t).map_err(|e| OptsError::Ports {
                    text: t.clone(),
                    detail: e.to_string(),
                })?;
            }
            'z' => test.delay_start = parse_nonneg_f64("-z", &required(v))?,
            'a' => out.percentiles = parse_percentiles(&required(v))?,
            'b' => {
                let t = required(v);
                let b = parse_f64("-b", &t, "positive float expected")?;
                if b <= 0.0 || !b.is_finite() {
                    return Err(ParseError::Value {
                        opt: "-b",
                        text: t,
                        expected: "positive float expected",
                    }
                    .into());
                }
                out.bucket_width = b;
            }
            'd' => out.savedir = Some(PathBuf::from(required(v))),
            'M' => out.machine = true,
            'n' => {
                let t = required(v);
                // OWPStatsScaleFactor looks at the first character only.
                match t.chars().next() {
                    Some(u @ ('n' | 'u' | 'm' | 's')) => out.units = u,
                    _ => return Err(OptsError::Units { text: t }),
                }
            }
            'N' => out.sub_session = parse_u32("-N", &required(v))?,
            'p' => out.print_files = true,
            'Q' => out.quiet = true,
            'R' => out.raw = true,
            'v' => {
                out.records = true;
                if let Some(n) = v {
                    out.record_limit = parse_u32("-v", &n)?;
                }
            }
            'U' => out.unix_ts = true,
            'V' => version = true,
            // 'h' and anything getopt let through that we do not handle.
            _ => help = true,
        }
    }
    if conn.v4only && conn.v6only {
        return Err(OptsError::BothFamilies);
    }
    let warnings = out.resolve();
    if prog == Program::Owping && !test.to && !test.from {
        test.to = true;
        test.from = true;
    }
    let operands = parsed.operands;
    if !help && !version {
        let ok = match prog {
            Program::Owping => (1..=2).contains(&operands.len()),
            Program::Owstats => !operands.is_empty(),
            Program::Owfetch => operands.len() >= 3 && operands.len() % 2 == 1,
            Program::Owup => operands.len() == 1,
        };
        if !ok {
            return Err(OptsError::Operands(match prog {
                Program::Owping => "expected: testaddr [servaddr]",
                Program::Owstats => "expected: sessionfile [sessionfile]*",
                Program::Owfetch => "expected: servaddr [SID savefile]+",
                Program::Owup => "expected: servaddr",
            }));
        }
    }
    Ok(CommandLine {
        help,
        version,
        conn,
        test,
        out,
        operands,
        warnings,
    })
}

/// The usage text (stderr), in the reference's layout.
pub fn usage(prog: Program) -> String {
    let conn = [
        "              [Connection Args]",
        "",
        "   -A authmode    requested modes: [A]uthenticated, [E]ncrypted, [O]pen",
        "   -k passphrasefile     passphrasefile to use with Authenticated/Encrypted modes",
        "   -S srcaddr     specify the local address or interface for control connection and tests",
        "   -B ifname      bind the control connection and tests to this interface",
        "   -u username    username to use with Authenticated/Encrypted modes",
        "   -4             connect using IPv4 addresses only",
        "   -6             connect using IPv6 addresses only",
    ]
    .map(|l| format!("{l}\n"))
    .concat();
    let test = [
        "              [Test Args]",
        "   -c count       number of test packets",
        "   -D DSCP        RFC 2474 style DSCP value for TOS byte",
        "   -E enddelay    time the local sender waits after its last packet (seconds)",
        "   -f | -F file   perform one-way test from testhost [and save results to file]",
        "   -i wait        mean average time between packets (seconds)",
        "   -L timeout     maximum time to wait for a packet before declaring it lost (seconds)",
        "   -P portrange   port range to use during the test",
        "   -s padding     size of the padding added to each packet (bytes)",
        "   -t | -T file   perform one-way test to testhost [and save results to file]",
        "   -z delayStart  time to wait before executing test (seconds)",
    ]
    .map(|l| format!("{l}\n"))
    .concat();
    let out = [
        "              [Output Args]",
        "",
        "   -a alpha       report an additional percentile level for the delays",
        "   -b bucketwidth bin size for histogram calculations",
        "   -d dir         directory for the -p summary files",
        "   -M             print machine (perl) readable summary",
        "   -n units       'n','u','m', or 's'",
        "   -N count       number of test packets (to summarize per sub-session)",
        "   -p             write each summary to a file named after its times",
        "   -Q             run the test and exit without reporting statistics",
        "   -R             print RAW data: \"SEQNO STIME SS SERR RTIME RS RERR TTL\\n\"",
        "   -v[N]          print out individual delays. You can supply an optional N here to limit the print to the first N packets",
        "   -U             Adds UNIX timestamps when printing individual delays",
        "   --json         print one JSON document per session (with -R: the records)",
    ]
    .map(|l| format!("{l}\n"))
    .concat();
    let name = prog.name();
    let mut s = String::new();
    let (operands, parts): (&str, Vec<&String>) = match prog {
        Program::Owping => ("[arguments] testaddr [servaddr]", vec![&test, &conn, &out]),
        Program::Owstats => ("[arguments] sessionfile [sessionfile]*", vec![&out]),
        Program::Owfetch => ("[arguments] servaddr [SID savefile]+", vec![&conn, &out]),
        Program::Owup => ("[arguments] servaddr", vec![&conn]),
    };
    s.push_str(&format!(
        "usage: {name} {operands}\n[arguments] are as follows: \n\n   -h             print this message and exit\n   -V, --version  print the version and exit\n"
    ));
    for p in parts {
        s.push('\n');
        s.push_str(p);
    }
    s.push_str(&buildinfo::usage_version_line());
    s
}
