//! Records the git revision of the checkout being built, if any, as
//! `OWAMPD_GIT_REVISION` for `src/lib.rs`. A packager building from a tarball (no git)
//! may set `OWAMPD_GIT_REVISION` in the environment instead; without either the
//! version is Cargo's alone.

use std::path::Path;
use std::process::Command;

const ENV: &str = "OWAMPD_GIT_REVISION";

/// One line of `git` output, run in this crate's directory; `None` when git is missing,
/// this is not a checkout, or git refuses (e.g. a checkout owned by another user).
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Rebuild when the checked-out commit changes: HEAD itself, the branch it points to
/// (loose or packed). Only existing files are named, since cargo reruns a build script
/// whose watched file is missing on every build.
fn watch_head() {
    let watch = |p: &Path| {
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    };
    let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) else {
        return;
    };
    watch(&Path::new(&git_dir).join("HEAD"));
    let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .unwrap_or_else(|| git_dir.clone());
    let common = Path::new(&common);
    watch(&common.join("packed-refs"));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&common.join(branch));
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed={ENV}");
    let from_env = std::env::var(ENV)
        .ok()
        .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()));
    let revision = match from_env {
        Some(r) => Some(r),
        None => {
            watch_head();
            git(&["rev-parse", "--short=12", "HEAD"])
        }
    };
    println!("cargo:rustc-env={ENV}={}", revision.unwrap_or_default());
}
