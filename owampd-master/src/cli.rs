//! The command line of owampd(8), exactly the reference's short options.

use std::path::PathBuf;

use clap::Parser;

/// Every option takes one value or none, as in owampd(8). As with getopt(3), the word
/// after an option that takes a value is its value even when it starts with `-`
/// (`-U -1000` is uid 1000). clap's own `-h`/`-V` are off: `-h` prints the reference's
/// usage, `-V`/`--version` (ours; the reference has none) our version line.
#[derive(Debug, Default, Parser)]
#[command(
    name = "owampd",
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true,
    // getopt(3) semantics: a repeated option is not an error, the last one wins.
    args_override_self = true
)]
pub struct Cli {
    /// Authentication modes, letters from {A, E, O}.
    #[arg(short = 'a', value_name = "authmode", allow_hyphen_values = true)]
    pub authmode: Option<String>,
    #[arg(short = 'c', value_name = "confdir", allow_hyphen_values = true)]
    pub confdir: Option<PathBuf>,
    #[arg(short = 'd', value_name = "datadir", allow_hyphen_values = true)]
    pub datadir: Option<PathBuf>,
    #[arg(short = 'e', value_name = "facility", allow_hyphen_values = true)]
    pub facility: Option<String>,
    /// Allow running as root without -U ("rootfolly").
    #[arg(short = 'f')]
    pub rootfolly: bool,
    #[arg(short = 'G', value_name = "group", allow_hyphen_values = true)]
    pub group: Option<String>,
    #[arg(short = 'h')]
    pub help: bool,
    #[arg(short = 'P', value_name = "portrange", allow_hyphen_values = true)]
    pub testports: Option<String>,
    #[arg(short = 'R', value_name = "vardir", allow_hyphen_values = true)]
    pub vardir: Option<PathBuf>,
    #[arg(short = 'S', value_name = "nodename:port", allow_hyphen_values = true)]
    pub srcnode: Option<String>,
    #[arg(short = 'U', value_name = "user", allow_hyphen_values = true)]
    pub user: Option<String>,
    #[arg(short = 'v')]
    pub verbose: bool,
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// Foreground: no daemon, logs also on stderr.
    #[arg(short = 'Z')]
    pub foreground: bool,
}

/// The usage text of `owampd -h`: the reference's, with `-V`, then the version line.
pub fn usage() -> String {
    format!("{USAGE_OPTIONS}{}", buildinfo::usage_version_line())
}

const USAGE_OPTIONS: &str = "\
usage: owampd [options]
where \"options\" are:

   -a authmode       Default supported authmodes:[E]ncrypted,[A]uthenticated,[O]pen
   -c confdir        Configuration directory
   -d datadir        Data directory
   -e facility       Syslog \"facility\" to log errors
   -f                Allow owampd to run as root
   -G group          Run as group \"group\" :-gid also valid
   -h                Print this message and exit
   -P portrange      Port range for receivers to use (0 or low-high)
   -R vardir         Location for pid file
   -S nodename:port  Srcaddr to bind to
   -U user           Run as user \"user\" :-uid also valid
   -v                verbose output
   -V, --version     Print the version and exit
   -Z                Do not daemonize
";

/// A bad command line, as one line (clap's first line, without its `error: ` prefix)
/// for `owampd: <line>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// What getopt(3) itself refuses: an unknown option or one missing its value. The
    /// usage follows on stderr and the exit status is 2, as for getopt tools.
    Usage(String),
    /// An operand (owampd takes none): exit status 1, as the reference's.
    Operand(String),
}

impl CliError {
    pub fn line(&self) -> &str {
        match self {
            CliError::Usage(l) | CliError::Operand(l) => l,
        }
    }
}

/// Parse argv.
pub fn parse<I, T>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args).map_err(|e| {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or("bad command line");
        let line = first.strip_prefix("error: ").unwrap_or(first).to_string();
        let operand = e.kind() == clap::error::ErrorKind::UnknownArgument
            && matches!(
                e.get(clap::error::ContextKind::InvalidArg),
                Some(clap::error::ContextValue::String(a)) if !a.starts_with('-')
            );
        if operand {
            CliError::Operand(line)
        } else {
            CliError::Usage(line)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_options() {
        let c = parse([
            "owampd",
            "-a",
            "AE",
            "-c",
            "/c",
            "-d",
            "/d",
            "-e",
            "local5",
            "-f",
            "-G",
            "g",
            "-P",
            "9000-9100",
            "-R",
            "/r",
            "-S",
            ":8861",
            "-U",
            "u",
            "-v",
            "-Z",
        ])
        .expect("parse");
        assert_eq!(c.authmode.as_deref(), Some("AE"));
        assert_eq!(c.confdir, Some(PathBuf::from("/c")));
        assert_eq!(c.datadir, Some(PathBuf::from("/d")));
        assert_eq!(c.facility.as_deref(), Some("local5"));
        assert!(c.rootfolly && c.verbose && c.foreground && !c.help);
        assert_eq!(c.group.as_deref(), Some("g"));
        assert_eq!(c.testports.as_deref(), Some("9000-9100"));
        assert_eq!(c.vardir, Some(PathBuf::from("/r")));
        assert_eq!(c.srcnode.as_deref(), Some(":8861"));
        assert_eq!(c.user.as_deref(), Some("u"));
    }

    #[test]
    fn last_repeated_option_wins() {
        let c = parse(["owampd", "-S", ":1", "-S", ":2", "-Z", "-Z"]).expect("parse");
        assert_eq!(c.srcnode.as_deref(), Some(":2"));
    }

    #[test]
    fn values_may_start_with_a_dash() {
        let c = parse(["owampd", "-U", "-1000", "-G", "-1000"]).expect("parse");
        assert_eq!(c.user.as_deref(), Some("-1000"));
        assert_eq!(c.group.as_deref(), Some("-1000"));
    }

    #[test]
    fn h_is_ours_and_version_is_the_only_long_option() {
        assert!(parse(["owampd", "-h"]).expect("parse").help);
        assert!(parse(["owampd", "--help"]).is_err());
        assert!(parse(["owampd", "-V"]).expect("parse").version);
        assert!(parse(["owampd", "--version"]).expect("parse").version);
    }

    #[test]
    fn errors_are_one_line() {
        for (args, opt) in [
            (["owampd", "-x"], "-x"),
            (["owampd", "-a"], "-a"),
            (["owampd", "--x"], "--x"),
        ] {
            match parse(args) {
                Err(CliError::Usage(l)) => assert!(!l.contains('\n') && l.contains(opt), "{l}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        match parse(["owampd", "extra"]) {
            Err(CliError::Operand(l)) => assert!(!l.contains('\n') && l.contains("extra"), "{l}"),
            other => panic!("{other:?}"),
        }
    }
}
