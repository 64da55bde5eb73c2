//! The data store (protocol.md §7.7), in the reference's layout so an existing datadir
//! keeps working, and so does going back:
//!
//! ```text
//! {datadir}/hierarchy/{root class}/{child class}/…/{sid hex}.owp   the files
//! {datadir}/catalog/                                               kept, empty
//! ```
//!
//! Fetch-Session finds a file through the in-memory index (SID → class and path),
//! built at start from `hierarchy/`: only directories whose names follow the class tree
//! (each a child of its parent directory's class) and only files named exactly
//! `<32 lowercase hex>.owp` count. The sizes found are returned so the caller can
//! initialise the per-class disk usage.
//!
//! The reference also links each file into `catalog/` by SID; it rebuilds that
//! directory at its own start, so it finds our files if it replaces us. We keep no
//! links: the index already answers the lookup, and a link per session is a second
//! inode to allocate and free (on ext4 without a journal, each allocation scans past
//! the inodes freed in the last seconds, so with a session's churn it grows slower the
//! busier the server is). At start, `catalog/` is emptied of the reference's links,
//! which would point at files we may delete.

use crate::policy::{ClassIdx, ClassTree};
use owamp::Sid;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("data store: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data store: class {0} is not in the limits tree")]
    NoSuchClass(ClassIdx),
    #[error("data store: session {0} already exists")]
    Exists(String),
    #[error("data store: {op}: the blocking task failed: {reason}")]
    Task { op: &'static str, reason: String },
}

/// Run a store operation on tokio's blocking pool. Control serves every connection
/// from one thread: mkdir/open/unlink/stat on a slow or hung disk must not stall the
/// other connections (docs/processes.md).
async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task {
            op,
            reason: e.to_string(),
        })?
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A file found by the start-up scan: its SID, class and size in bytes.
pub type FoundFile = (Sid, ClassIdx, u64);

/// One stored session file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    pub class: ClassIdx,
    /// The real file under `hierarchy/`.
    pub path: PathBuf,
}

#[derive(Debug)]
struct Inner {
    datadir: PathBuf,
    tree: ClassTree,
    files: Mutex<HashMap<Sid, StoredFile>>,
}

/// The store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

/// `<32 lowercase hex>.owp` → the SID; anything else is not ours.
pub fn parse_file_name(name: &str) -> Option<Sid> {
    let hex = name.strip_suffix(".owp")?;
    if hex.len() != 32
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    Sid::from_hex(hex).ok()
}

pub fn file_name(sid: &Sid) -> String {
    format!("{}.owp", sid.to_hex())
}

impl Store {
    /// Open `datadir`, empty `catalog/` and index `hierarchy/`. Returns the store and, per file
    /// found, its class and size (for [`crate::policy::Policy::add_existing_disk`]).
    ///
    /// Empty session files are removed instead (see [`Store::open_reporting`]).
    pub fn open(datadir: &Path, tree: &ClassTree) -> Result<(Store, Vec<FoundFile>), StoreError> {
        Store::open_reporting(datadir, tree).map(|(s, f, _)| (s, f))
    }

    /// [`Store::open`], also returning the empty session files it removed. A file is
    /// empty only when its session was accepted but never started (a receiving tester
    /// writes the header at Start-Sessions, protocol.md §7.8) and control died before it could
    /// delete it: it holds no data, and left in place it would be fetchable as garbage.
    pub fn open_reporting(
        datadir: &Path,
        tree: &ClassTree,
    ) -> Result<(Store, Vec<FoundFile>, Vec<PathBuf>), StoreError> {
        let hierarchy = datadir.join("hierarchy");
        let catalog = datadir.join("catalog");
        fs::create_dir_all(&hierarchy).map_err(io_err("create", &hierarchy))?;
        match fs::remove_dir_all(&catalog) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &catalog)(e)),
        }
        fs::create_dir_all(&catalog).map_err(io_err("create", &catalog))?;

        let mut files = HashMap::new();
        let mut found = Vec::new();
        let mut removed = Vec::new();
        for root in tree.children(None) {
            let Some(c) = tree.get(root) else { continue };
            let mut out = Scan {
                files: &mut files,
                found: &mut found,
                removed: &mut removed,
            };
            scan(tree, root, &hierarchy.join(&c.name), &mut out)?;
        }
        let store = Store {
            inner: Arc::new(Inner {
                datadir: datadir.to_path_buf(),
                tree: tree.clone(),
                files: Mutex::new(files),
            }),
        };
        Ok((store, found, removed))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Sid, StoredFile>> {
        self.inner.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn datadir(&self) -> &Path {
        &self.inner.datadir
    }

    /// Create the file of a new receive session of `class`, opened read-write.
    pub fn create(&self, sid: &Sid, class: ClassIdx) -> Result<(File, PathBuf), StoreError> {
        if self.lock().contains_key(sid) {
            return Err(StoreError::Exists(sid.to_hex()));
        }
        let names = self
            .inner
            .tree
            .chain_names(class)
            .map_err(|_| StoreError::NoSuchClass(class))?;
        let mut dir = self.inner.datadir.join("hierarchy");
        for n in names {
            dir.push(n);
        }
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = dir.join(file_name(sid));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        self.lock().insert(
            *sid,
            StoredFile {
                class,
                path: path.clone(),
            },
        );
        Ok((file, path))
    }

    pub fn get(&self, sid: &Sid) -> Option<StoredFile> {
        self.lock().get(sid).cloned()
    }

    /// Open a stored session for reading (Fetch-Session, protocol.md §2.6). `Ok(None)`:
    /// no such session (Fetch-Ack Accept=1), also when its file was removed behind our
    /// back (by an operator, or `owampd-cleanup`).
    pub fn open_for_fetch(&self, sid: &Sid) -> Result<Option<(File, StoredFile)>, StoreError> {
        let Some(entry) = self.get(sid) else {
            return Ok(None);
        };
        match File::open(&entry.path) {
            Ok(f) => Ok(Some((f, entry))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("open", &entry.path)(e)),
        }
    }

    /// Remove a session's file. Returns what was removed and the file's size (to
    /// release from the disk accounting), or `None` if unknown.
    pub fn delete(&self, sid: &Sid) -> Result<Option<(StoredFile, u64)>, StoreError> {
        let Some(entry) = self.lock().remove(sid) else {
            return Ok(None);
        };
        let size = fs::metadata(&entry.path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&entry.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &entry.path)(e)),
        }
        Ok(Some((entry, size)))
    }

    /// [`Store::create`] on the blocking pool.
    pub async fn create_async(
        &self,
        sid: &Sid,
        class: ClassIdx,
    ) -> Result<(File, PathBuf), StoreError> {
        let (store, sid) = (self.clone(), *sid);
        blocking("create", move || store.create(&sid, class)).await
    }

    /// [`Store::open_for_fetch`] on the blocking pool.
    pub async fn open_for_fetch_async(
        &self,
        sid: &Sid,
    ) -> Result<Option<(File, StoredFile)>, StoreError> {
        let (store, sid) = (self.clone(), *sid);
        blocking("open", move || store.open_for_fetch(&sid)).await
    }

    /// [`Store::delete`] on the blocking pool.
    pub async fn delete_async(&self, sid: &Sid) -> Result<Option<(StoredFile, u64)>, StoreError> {
        let (store, sid) = (self.clone(), *sid);
        blocking("remove", move || store.delete(&sid)).await
    }

    /// The size of a stored session's file (None if unknown or unreadable), on the
    /// blocking pool.
    pub async fn file_size_async(&self, sid: &Sid) -> Option<u64> {
        let path = self.get(sid)?.path;
        blocking("stat", move || {
            Ok(fs::metadata(&path).ok().map(|m| m.len()))
        })
        .await
        .ok()
        .flatten()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// What a rebuild collects.
struct Scan<'a> {
    files: &'a mut HashMap<Sid, StoredFile>,
    found: &'a mut Vec<FoundFile>,
    removed: &'a mut Vec<PathBuf>,
}

fn scan(
    tree: &ClassTree,
    class: ClassIdx,
    dir: &Path,
    out: &mut Scan<'_>,
) -> Result<(), StoreError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", dir)(e)),
    };
    for ent in rd {
        let ent = ent.map_err(io_err("read", dir))?;
        let path = ent.path();
        // symlink_metadata: a symlink planted in the hierarchy is never followed.
        let meta = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        let Some(name) = ent.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if meta.is_dir() {
            if let Some(child) = tree
                .children(Some(class))
                .find(|&c| tree.get(c).is_some_and(|c| c.name == name))
            {
                scan(tree, child, &path, out)?;
            }
        } else if meta.is_file()
            && let Some(sid) = parse_file_name(&name)
        {
            if meta.len() == 0 {
                // Accepted, never started (see `open_reporting`); best effort.
                if fs::remove_file(&path).is_ok() {
                    out.removed.push(path);
                }
                continue;
            }
            // The same SID under two classes: keep the first one seen.
            if let std::collections::hash_map::Entry::Vacant(v) = out.files.entry(sid) {
                v.insert(StoredFile {
                    class,
                    path: path.clone(),
                });
                out.found.push((sid, class, meta.len()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitClass;
    use config::limits::ClassId;
    use std::io::{Read, Write};

    fn tree() -> ClassTree {
        let c =
            |name: &str, parent: Option<usize>| LimitClass::unlimited(name, parent.map(ClassId));
        ClassTree::new(vec![
            c("root", None),
            c("regular", Some(0)),
            c("other", Some(0)),
        ])
        .unwrap()
    }

    fn sid(n: u8) -> Sid {
        Sid([n; 16])
    }

    #[test]
    fn file_names() {
        let s = Sid([0xAB; 16]);
        assert_eq!(file_name(&s), format!("{}.owp", "ab".repeat(16)));
        assert_eq!(parse_file_name(&file_name(&s)), Some(s));
        assert_eq!(parse_file_name(&format!("{}.owp", "AB".repeat(16))), None);
        assert_eq!(parse_file_name("abc.owp"), None);
        assert_eq!(parse_file_name(&"ab".repeat(16)), None);
    }

    /// The blocking-pool wrappers do what the plain calls do.
    #[tokio::test]
    async fn async_wrappers_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(d.path(), &tree()).unwrap();
        let (mut f, path) = store.create_async(&sid(9), 1).await.unwrap();
        f.write_all(b"twelve bytes").unwrap();
        assert!(path.ends_with(format!("root/regular/{}", file_name(&sid(9)))));
        assert_eq!(store.file_size_async(&sid(9)).await, Some(12));
        assert!(matches!(
            store.create_async(&sid(9), 1).await,
            Err(StoreError::Exists(_))
        ));
        assert!(store.open_for_fetch_async(&sid(9)).await.unwrap().is_some());
        let (gone, size) = store.delete_async(&sid(9)).await.unwrap().unwrap();
        assert_eq!((gone.class, size), (1, 12));
        assert!(!path.exists());
        assert!(store.open_for_fetch_async(&sid(9)).await.unwrap().is_none());
        assert_eq!(store.file_size_async(&sid(9)).await, None);
    }

    #[test]
    fn create_fetch_delete() {
        let d = tempfile::tempdir().unwrap();
        let (store, found) = Store::open(d.path(), &tree()).unwrap();
        assert!(found.is_empty());
        let (mut f, path) = store.create(&sid(1), 1).unwrap();
        assert_eq!(
            path,
            d.path()
                .join("hierarchy/root/regular")
                .join(file_name(&sid(1)))
        );
        f.write_all(b"hello").unwrap();
        assert!(matches!(
            store.create(&sid(1), 1),
            Err(StoreError::Exists(_))
        ));
        let (mut r, entry) = store.open_for_fetch(&sid(1)).unwrap().unwrap();
        assert_eq!(entry.class, 1);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert!(store.open_for_fetch(&sid(2)).unwrap().is_none());
        let (gone, size) = store.delete(&sid(1)).unwrap().unwrap();
        assert_eq!((gone.class, size), (1, 5));
        assert!(!path.exists());
        assert!(store.delete(&sid(1)).unwrap().is_none());
        // A session is one inode: nothing is linked into the catalog.
        assert_eq!(fs::read_dir(d.path().join("catalog")).unwrap().count(), 0);
    }

    #[test]
    fn a_file_removed_behind_our_back_is_not_fetchable() {
        let d = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(d.path(), &tree()).unwrap();
        let (_, path) = store.create(&sid(7), 1).unwrap();
        fs::remove_file(&path).unwrap();
        assert!(store.open_for_fetch(&sid(7)).unwrap().is_none());
        // Its entry goes on delete, which does not mind the file being gone.
        assert_eq!(store.delete(&sid(7)).unwrap().unwrap().1, 0);
        assert!(store.is_empty());
    }

    #[test]
    fn rebuild_follows_the_class_tree_only() {
        let d = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(d.path(), &tree()).unwrap();
            store
                .create(&sid(1), 0)
                .unwrap()
                .0
                .write_all(&[0; 10])
                .unwrap();
            store
                .create(&sid(2), 1)
                .unwrap()
                .0
                .write_all(&[0; 20])
                .unwrap();
            store.create(&sid(3), 2).unwrap();
        }
        let h = d.path().join("hierarchy");
        // Not class-tree paths or not SID names: ignored.
        fs::create_dir_all(h.join("root/unknown")).unwrap();
        fs::write(h.join("root/unknown").join(file_name(&sid(4))), b"x").unwrap();
        fs::create_dir_all(h.join("regular")).unwrap(); // regular is not a root
        fs::write(h.join("regular").join(file_name(&sid(5))), b"x").unwrap();
        fs::write(h.join("root/notes.txt"), b"x").unwrap();
        // The reference's catalog links are removed.
        let stale = d.path().join("catalog").join(file_name(&sid(9)));
        std::os::unix::fs::symlink("/nonexistent", &stale).unwrap();

        let (store, mut found, removed) = Store::open_reporting(d.path(), &tree()).unwrap();
        found.sort_by_key(|(s, _, _)| s.0);
        assert_eq!(found, vec![(sid(1), 0, 10), (sid(2), 1, 20)]);
        assert_eq!(store.len(), 2);
        // sid(3) was created and never written: a session that never started.
        assert_eq!(removed.len(), 1);
        assert!(removed[0].ends_with(file_name(&sid(3))), "{removed:?}");
        assert!(!removed[0].exists());
        assert!(store.open_for_fetch(&sid(3)).unwrap().is_none());
        assert!(fs::symlink_metadata(&stale).is_err());
        assert!(d.path().join("catalog").is_dir());
        let (mut r, _) = store.open_for_fetch(&sid(2)).unwrap().unwrap();
        let mut b = Vec::new();
        r.read_to_end(&mut b).unwrap();
        assert_eq!(b.len(), 20);
        assert!(store.open_for_fetch(&sid(4)).unwrap().is_none());
    }
}
