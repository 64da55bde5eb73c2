//! A small POSIX/GNU-style `getopt` (protocol.md §8.1): the reference tools are plain C
//! `getopt` programs, and scripts (pScheduler) depend on exactly that syntax: clustered
//! flags (`-QR`), attached or separate values (`-c10`, `-c 10`), an *optional* value that
//! must be attached (`-v10`, while `-v 10` is `-v` plus an operand), operands mixed with
//! options (glibc permutes them), and `--` to end the options. One long option,
//! `--json`, is our extension (a `--name` is looked up in `long`).

use thiserror::Error;

/// What an option takes, as the `:` / `::` suffixes of a C optstring say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    None,
    Required,
    /// Only when attached (`-v10`).
    Optional,
}

/// One parsed option, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opt {
    Short(char, Option<String>),
    Long(&'static str),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GetoptError {
    #[error("invalid option -- '{0}'")]
    Unknown(String),
    #[error("option requires an argument -- '{0}'")]
    MissingValue(char),
}

/// The parsed command line: options in order, then the operands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub opts: Vec<Opt>,
    pub operands: Vec<String>,
}

fn kind_of(spec: &str, c: char) -> Option<ArgKind> {
    if c == ':' {
        return None;
    }
    for (i, ch) in spec.char_indices() {
        if ch == c {
            let rest = spec.get(i + ch.len_utf8()..).unwrap_or("");
            return Some(if rest.starts_with("::") {
                ArgKind::Optional
            } else if rest.starts_with(':') {
                ArgKind::Required
            } else {
                ArgKind::None
            });
        }
    }
    None
}

/// Where the options end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ordering {
    /// glibc's default: operands may come between options (they are permuted to the end).
    Permute,
    /// `POSIXLY_CORRECT`: the first operand ends the options; everything after it is an
    /// operand (powstream sets this mode, so `powstream host -c 10` has three operands).
    RequireOrder,
}

/// Parses `args` (without the program name) against a C-style `spec` (e.g.
/// `"c:v::Q"`) and a list of accepted long flags (without `--`), permuting operands.
pub fn getopt(args: &[String], spec: &str, long: &[&'static str]) -> Result<Parsed, GetoptError> {
    getopt_ordered(args, spec, long, Ordering::Permute)
}

/// [`getopt`] with a choice of [`Ordering`].
pub fn getopt_ordered(
    args: &[String],
    spec: &str,
    long: &[&'static str],
    ordering: Ordering,
) -> Result<Parsed, GetoptError> {
    let mut out = Parsed::default();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if arg == "--" {
            out.operands.extend(args.iter().skip(i).cloned());
            break;
        }
        if let Some(name) = arg.strip_prefix("--") {
            match long.iter().find(|l| **l == name) {
                Some(l) => out.opts.push(Opt::Long(l)),
                None => return Err(GetoptError::Unknown(arg.clone())),
            }
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            // "-" alone and anything without a dash is an operand.
            out.operands.push(arg.clone());
            if ordering == Ordering::RequireOrder {
                out.operands.extend(args.iter().skip(i).cloned());
                break;
            }
            continue;
        };
        for (pos, c) in cluster.char_indices() {
            let rest = cluster.get(pos + c.len_utf8()..).unwrap_or("");
            match kind_of(spec, c) {
                None => return Err(GetoptError::Unknown(c.to_string())),
                Some(ArgKind::None) => out.opts.push(Opt::Short(c, None)),
                Some(ArgKind::Optional) => {
                    let v = (!rest.is_empty()).then(|| rest.to_string());
                    out.opts.push(Opt::Short(c, v));
                    break;
                }
                Some(ArgKind::Required) => {
                    let v = if !rest.is_empty() {
                        rest.to_string()
                    } else {
                        let next = args.get(i).ok_or(GetoptError::MissingValue(c))?;
                        i += 1;
                        next.clone()
                    };
                    out.opts.push(Opt::Short(c, Some(v)));
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn clusters_values_and_operands() {
        let p = getopt(
            &a(&["-QRc10", "host", "-v", "-v5", "-s", "3", "--", "-x"]),
            "c:v::QRs:",
            &[],
        )
        .unwrap();
        assert_eq!(
            p.opts,
            vec![
                Opt::Short('Q', None),
                Opt::Short('R', None),
                Opt::Short('c', Some("10".into())),
                Opt::Short('v', None),
                Opt::Short('v', Some("5".into())),
                Opt::Short('s', Some("3".into())),
            ]
        );
        assert_eq!(p.operands, a(&["host", "-x"]));
    }

    #[test]
    fn require_order_stops_at_the_first_operand() {
        let args = a(&["-p", "host", "-c", "10"]);
        let p = getopt_ordered(&args, "pc:", &[], Ordering::RequireOrder).unwrap();
        assert_eq!(p.opts, vec![Opt::Short('p', None)]);
        assert_eq!(p.operands, a(&["host", "-c", "10"]));
        let p = getopt(&args, "pc:", &[]).unwrap();
        assert_eq!(p.operands, a(&["host"]));
    }

    #[test]
    fn optional_value_is_never_taken_from_the_next_word() {
        let p = getopt(&a(&["-v", "10"]), "v::", &[]).unwrap();
        assert_eq!(p.opts, vec![Opt::Short('v', None)]);
        assert_eq!(p.operands, a(&["10"]));
    }

    #[test]
    fn errors() {
        assert_eq!(
            getopt(&a(&["-x"]), "c:", &[]),
            Err(GetoptError::Unknown("x".into()))
        );
        assert_eq!(
            getopt(&a(&["-c"]), "c:", &[]),
            Err(GetoptError::MissingValue('c'))
        );
        assert_eq!(
            getopt(&a(&["--nope"]), "c:", &["json"]),
            Err(GetoptError::Unknown("--nope".into()))
        );
        assert_eq!(
            getopt(&a(&["-:"]), "c:", &[]),
            Err(GetoptError::Unknown(":".into()))
        );
        let p = getopt(&a(&["--json", "-"]), "", &["json"]).unwrap();
        assert_eq!(p.opts, vec![Opt::Long("json")]);
        assert_eq!(p.operands, a(&["-"]));
    }
}
