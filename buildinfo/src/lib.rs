//! The version every binary of owampd-rs reports (`-V`/`--version`, the `Version:` line
//! that ends each `-h`, owampd's first log line): Cargo's package version, with the git
//! revision it was built from as semver build metadata when built from a checkout
//! (`0.1.0+git.c283d67a1b2c`).
//!
//! A crate of its own, with no dependencies, because the binaries share no other crate
//! that suits: the clients and owampd-control link the protocol crate, which the master
//! must not; `ipc` is the IPC layer and `config` the file parsers, and neither should
//! rebuild (with everything above it) whenever the checked-out commit changes, which a
//! build script reading git makes this crate do. Any new binary (powstream) gets the
//! same lines from [`version`], [`usage_version_line`] and [`version_output`].
#![forbid(unsafe_code)]

use std::sync::OnceLock;

/// Cargo's version, plus `+git.<revision>` when the build saw a git checkout (or
/// `OWAMPD_GIT_REVISION` was set at build time).
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| with_revision(env!("CARGO_PKG_VERSION"), env!("OWAMPD_GIT_REVISION")))
}

fn with_revision(cargo: &str, revision: &str) -> String {
    if revision.is_empty() {
        cargo.to_string()
    } else {
        format!("{cargo}+git.{revision}")
    }
}

/// The end of every `-h` text, as the reference's usage ends: a blank line, then
/// `Version: …`.
pub fn usage_version_line() -> String {
    format!("\nVersion: {}\n", version())
}

/// What `-V`/`--version` prints on stdout: `<program> <version>`.
pub fn version_output(program: &str) -> String {
    format!("{program} {}\n", version())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_version_with_optional_revision() {
        assert_eq!(with_revision("1.2.3", ""), "1.2.3");
        assert_eq!(with_revision("1.2.3", "abc123"), "1.2.3+git.abc123");
        assert!(version().starts_with(env!("CARGO_PKG_VERSION")));
        assert!(usage_version_line().starts_with("\nVersion: "));
        assert!(usage_version_line().ends_with('\n'));
        assert_eq!(version_output("owping"), format!("owping {}\n", version()));
    }

    /// Built from this repository's checkout, the revision is the commit checked out
    /// (unless git is missing or refuses this checkout: then none at all).
    #[test]
    fn revision_is_the_checked_out_commit() {
        let head = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let built = env!("OWAMPD_GIT_REVISION");
        match head {
            Some(h) if std::env::var_os("OWAMPD_GIT_REVISION").is_none() => {
                assert_eq!(built, h);
                assert_eq!(version(), format!("{}+git.{h}", env!("CARGO_PKG_VERSION")));
            }
            _ => assert!(built.bytes().all(|b| b.is_ascii_alphanumeric())),
        }
    }
}
