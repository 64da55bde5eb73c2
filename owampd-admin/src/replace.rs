//! Writing a small file so that a reader (owampd starting, owping -k) sees the old
//! contents or the new ones, never half of either: the new text goes to a temporary
//! file beside the target, with the target's mode and owner, is synced, and then takes
//! its place by rename(2) (or link(2) when the file must not exist yet).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: exists already", path.display())]
    Exists { path: PathBuf },
    #[error("{}: cannot keep its owner {uid}:{gid} ({source})", path.display())]
    Owner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: nix::Error,
    },
}

/// How the target is to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// It must not exist; it is created with this mode.
    New { mode: u32 },
    /// It exists; its mode and owner are kept.
    Existing,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReplaceError + '_ {
    move |source| ReplaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The temporary file's name: hidden, beside the target, unique to this process.
fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Puts `contents` at `target` atomically (see the module comment). A target that is a
/// symbolic link is followed: the file it names is replaced, the link stays.
pub fn replace_file(target: &Path, contents: &[u8], how: Target) -> Result<(), ReplaceError> {
    let target = match how {
        Target::Existing => target.canonicalize().map_err(io(target))?,
        Target::New { .. } => target.to_path_buf(),
    };
    let (mode, owner) = match how {
        Target::New { mode } => {
            if target.symlink_metadata().is_ok() {
                return Err(ReplaceError::Exists { path: target });
            }
            (mode, None)
        }
        Target::Existing => {
            let m = target.metadata().map_err(io(&target))?;
            (m.mode() & 0o7777, Some((m.uid(), m.gid())))
        }
    };
    let tmp = temp_path(&target);
    let result = write_temp(&tmp, contents, mode, owner).and_then(|file| {
        match how {
            // link(2) fails if the name was taken meanwhile: never clobber.
            Target::New { .. } => std::fs::hard_link(&tmp, &target).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    ReplaceError::Exists {
                        path: target.clone(),
                    }
                } else {
                    io(&target)(e)
                }
            }),
            Target::Existing => std::fs::rename(&tmp, &target).map_err(io(&target)),
        }?;
        drop(file);
        Ok(())
    });
    // After link(2) the temporary name is still there; after a failure too.
    let _ = std::fs::remove_file(&tmp);
    result?;
    // The directory entry itself must reach the disk for the change to survive a crash.
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

fn write_temp(
    tmp: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<File, ReplaceError> {
    // Private while it is written, whatever the umask; the final mode comes after.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io(tmp))?;
    f.write_all(contents).map_err(io(tmp))?;
    if let Some((uid, gid)) = owner {
        let m = f.metadata().map_err(io(tmp))?;
        if (m.uid(), m.gid()) != (uid, gid) {
            nix::unistd::fchown(
                &f,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|source| ReplaceError::Owner {
                path: tmp.to_path_buf(),
                uid,
                gid,
                source,
            })?;
        }
    }
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(tmp))?;
    f.sync_all().map_err(io(tmp))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_get_their_mode_and_are_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pfs");
        replace_file(&p, b"a 00\n", Target::New { mode: 0o600 }).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"a 00\n");
        assert_eq!(p.metadata().unwrap().mode() & 0o7777, 0o600);
        let e = replace_file(&p, b"b 11\n", Target::New { mode: 0o600 }).unwrap_err();
        assert!(matches!(e, ReplaceError::Exists { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"a 00\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn existing_files_keep_their_mode_and_links_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.pfs");
        std::fs::write(&real, "a 00\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.pfs");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_file(&link, b"b 11\n", Target::Existing).unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"b 11\n");
        assert_eq!(real.metadata().unwrap().mode() & 0o7777, 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp left"
        );
    }

    #[test]
    fn a_missing_existing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = replace_file(&dir.path().join("none"), b"", Target::Existing).unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
    }
}
