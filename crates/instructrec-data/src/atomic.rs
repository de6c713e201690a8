//! Writing a file so that a reader, or a run killed at any moment, finds either the old contents
//! or the new ones, never a partial file. The new contents go to a temporary file in the target's
//! directory (a rename is atomic only within one file system), which is fsynced and renamed over
//! the target; the directory is fsynced too, so that the rename itself survives a crash.
//! Directories of outputs ([`replace_dir`]) are staged whole beside their target the same way,
//! and replace only what is provably an earlier output ([`replaceable`]).
//!
//! File errors are the underlying `io::Error`s, not wrapped: each caller names the path once, in
//! its own error type.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::lock::OutputLock;
use crate::DataError;

/// Replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |tmp| fs::write(tmp, bytes))
}

/// Replaces `path` with what `fill` writes to the temporary file it is given. `fill` gets a path
/// rather than a writer so that libraries which only save to a path (candle's safetensors) can
/// write through it too.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    stage(path, fill)?.commit()
}

/// New contents for a file, complete and fsynced beside it but not yet in its place: staging
/// several files before committing any lets a failure while writing one leave all the old ones.
/// Dropped uncommitted, the temporary file is removed.
#[must_use = "a staged file replaces its target only when committed"]
pub struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// Writes the new contents of `path` (through `fill`, as in [`write_atomic_with`]) to a fresh
/// temporary file beside it, creating the directory if need be.
pub fn stage(path: &Path, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<Staged> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    let staged = Staged {
        tmp: reserve(dir, &name.to_string_lossy())?,
        target: path.to_path_buf(),
        committed: false,
    };
    fill(&staged.tmp)?;
    File::open(&staged.tmp)?.sync_all()?;
    Ok(staged)
}

impl Staged {
    /// Renames the new contents into place.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.tmp, &self.target)?;
        self.committed = true;
        sync_dir(parent(&self.target))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the error that left it uncommitted is the one worth reporting.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates an empty file with a name of its own: the process id and a counter keep concurrent
/// writers of one target (threads, or two runs) from sharing a temporary file, and the file is
/// created like any other output file (the umask applies, unlike `tempfile`'s private files).
/// The name starts with a dot and names the target, so that one left by a killed run is hidden
/// and recognisable.
fn reserve(dir: &Path, name: &str) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}-{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(_) => return Ok(tmp),
            // Left by an earlier run that had the same process id.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Replaces directory `dir` whole with what `fill` writes into the staging directory it is
/// given: a sibling `.<name>.tmp-*` renamed into place once complete, after an existing `dir`
/// is moved aside (`.<name>.old-*`, removed last), so the path never shows a partial output.
/// The output's lock is held throughout, so a second writer is refused and the staging and
/// set-aside folders a killed run left are provably ours to remove. An existing `dir` is
/// replaced only when `check_existing` (asked under the lock) accepts it: only the caller
/// knows what its own outputs look like (see [`replaceable`]).
pub fn replace_dir<E: From<DataError>>(
    dir: &Path,
    check_existing: impl FnOnce() -> Result<(), E>,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let name = dir
        .file_name()
        .ok_or_else(|| DataError::file(dir, "output path has no directory name"))?
        .to_string_lossy()
        .to_string();
    let parent = parent(dir);
    let lock = OutputLock::acquire(dir).map_err(DataError::from)?;
    if dir.exists() {
        check_existing()?;
    }
    lock.remove_leftovers(&["tmp-", "old-"], None)
        .map_err(DataError::from)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(parent)
        .map_err(|e| DataError::io(parent, e))?;
    fill(staging.path())?;
    // Move the old output aside (onto an empty placeholder, which rename may replace), move the
    // new one in, then delete the old one.
    let old = if dir.exists() {
        let aside = tempfile::Builder::new()
            .prefix(&format!(".{name}.old-"))
            .tempdir_in(parent)
            .map_err(|e| DataError::io(parent, e))?;
        fs::rename(dir, aside.path()).map_err(|e| DataError::io(dir, e))?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = fs::rename(staging.path(), dir) {
        if let Some(aside) = &old {
            // Best effort to put the old output back; the error reported is the first one.
            let _ = fs::rename(aside.path(), dir);
        }
        return Err(DataError::io(dir, e).into());
    }
    let _ = staging.keep();
    drop(old);
    Ok(())
}

/// Whether `dir` may be replaced as an output of `writer`: it is empty, or every file under it
/// is the `record` file or one the record lists (`listed` reads the list, relative path to
/// SHA-256, from the record's bytes) with its recorded SHA-256. A user's folder can hold a file
/// named like the record (a web project's has a manifest.json), so the record's presence
/// proves nothing. The reason is for the caller's refusal.
pub fn replaceable(
    dir: &Path,
    record: &str,
    listed: impl FnOnce(&[u8]) -> Result<BTreeMap<String, String>, String>,
    writer: &str,
) -> Result<(), String> {
    if !dir.is_dir() {
        return Err("not a directory".into());
    }
    let files = files_under(dir).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Ok(());
    }
    let bytes = fs::read(dir.join(record)).map_err(|e| format!("{record}: {e}"))?;
    let checksums = listed(&bytes)?;
    for file in files.iter().filter(|f| *f != record) {
        let recorded = checksums
            .get(file)
            .ok_or_else(|| format!("it holds {file}, which {writer} did not write"))?;
        let bytes = fs::read(dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
        if &sha256_hex(&bytes) != recorded {
            return Err(format!("{file} changed after {writer}"));
        }
    }
    Ok(())
}

/// SHA-256 of `bytes` in lower-case hex, as outputs record their files'.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every file under `dir`, as a relative path with `/` separators.
fn files_under(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                let parts: Vec<_> = path.iter().map(|p| p.to_string_lossy()).collect();
                out.push(parts.join("/"));
            }
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened as files elsewhere; the rename is still atomic.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_creates_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/out.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names(path.parent().unwrap()), ["out.json"]);
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_its_own_error() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("out.txt");
        write_atomic(&path, b"old").unwrap();
        let e = write_atomic_with(&path, |tmp| {
            fs::write(tmp, b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(root.path()), ["out.txt"]);
    }

    #[test]
    fn staged_files_replace_their_targets_only_when_committed() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        write_atomic(&a, b"old a").unwrap();
        write_atomic(&b, b"old b").unwrap();
        let staged_a = stage(&a, |tmp| fs::write(tmp, b"new a")).unwrap();
        let staged_b = stage(&b, |tmp| fs::write(tmp, b"new b")).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        drop(staged_b);
        staged_a.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(fs::read(&b).unwrap(), b"old b");
        assert_eq!(names(root.path()), ["a", "b"]);
    }

    #[test]
    fn concurrent_writers_of_one_file_leave_one_whole_version() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("shared");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let path = &path;
                s.spawn(move || write_atomic(path, &[t; 100_000]).unwrap());
            }
        });
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 100_000);
        assert!(bytes.iter().all(|&b| b == bytes[0]));
        assert_eq!(names(root.path()), ["shared"]);
    }

    #[cfg(unix)]
    #[test]
    fn files_get_the_permissions_of_any_other_output_file() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let plain = root.path().join("plain");
        fs::write(&plain, b"x").unwrap();
        let atomic = root.path().join("atomic");
        write_atomic(&atomic, b"x").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode(&atomic), mode(&plain));
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let e = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
