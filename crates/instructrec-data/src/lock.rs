//! One writer per output. Every command that writes a directory (a prepared dataset, an
//! instruction set, a checkpoint folder) first takes an exclusive lock on a file beside it,
//! `.<name>.lock`, so that a second run writing the same output gets a clear error instead of
//! racing on the first one's temporary files. While the lock is held, the temporary files and
//! folders that a killed run of the same command left behind are provably nobody else's, so the
//! holder removes them ([`OutputLock::remove_leftovers`]).
//!
//! The lock is the operating system's advisory lock (`flock` on Unix), released by the kernel
//! when the process dies, so a killed run never leaves a stale lock; the file itself is removed
//! when the lock is dropped.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{output}: another instructrec run is writing it (it holds {lock}); wait for it to \
         finish or stop it, or choose another output"
    )]
    Busy { output: PathBuf, lock: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Held for as long as a command writes `output`.
#[derive(Debug)]
pub struct OutputLock {
    output: PathBuf,
    path: PathBuf,
    file: File,
}

impl OutputLock {
    /// Takes the lock of `output` (a file or a directory, which need not exist yet), creating
    /// its parent directory if need be.
    pub fn acquire(output: &Path) -> Result<Self, LockError> {
        let name = output.file_name().ok_or_else(|| LockError::Io {
            path: output.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        })?;
        let parent = parent(output);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let path = parent.join(format!(".{}.lock", name.to_string_lossy()));
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Busy {
                        output: output.to_path_buf(),
                        lock: path,
                    })
                }
                Err(TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
            // The previous holder removes the file when it lets go: a lock taken on a file
            // that was removed meanwhile guards nothing, since the next run creates a new one.
            if same_file(&file, &path) {
                return Ok(Self {
                    output: output.to_path_buf(),
                    path,
                    file,
                });
            }
        }
    }

    /// Removes what killed runs left beside the output: entries of its parent directory whose
    /// names start with `.<name>.` followed by one of `markers` (e.g. `tmp-`), and, when
    /// `inside` is set, entries of the output directory itself that `is_leftover` recognises.
    /// Returns what was removed, for the caller to report.
    pub fn remove_leftovers(
        &self,
        markers: &[&str],
        inside: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Vec<PathBuf>, LockError> {
        let name = self
            .output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.");
        let beside = |entry: &str| {
            entry
                .strip_prefix(&prefix)
                .is_some_and(|rest| markers.iter().any(|m| rest.starts_with(m)))
        };
        let mut removed = remove_matching(parent(&self.output), &beside)?;
        log_removed(&removed);
        if let Some(is_leftover) = inside {
            removed.extend(self.remove_leftovers_in(Path::new(""), is_leftover)?);
        }
        Ok(removed)
    }

    /// Removes the entries of the output's folder `sub` (relative; empty for the output itself)
    /// that `is_leftover` recognises, as [`OutputLock::remove_leftovers`] does for the output.
    pub fn remove_leftovers_in(
        &self,
        sub: &Path,
        is_leftover: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<PathBuf>, LockError> {
        let dir = self.output.join(sub);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let removed = remove_matching(&dir, is_leftover)?;
        log_removed(&removed);
        Ok(removed)
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so that no other run can be holding this very file.
        // Best effort: a lock file left behind is harmless, the kernel lock is what counts.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

fn log_removed(paths: &[PathBuf]) {
    for path in paths {
        tracing::info!("removed {}, left by an interrupted run", path.display());
    }
}

fn remove_matching(dir: &Path, matches: &dyn Fn(&str) -> bool) -> Result<Vec<PathBuf>, LockError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io { path, source }
    };
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !matches(&name) || name.ends_with(".lock") {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().map_err(io_err(&path))?.is_dir();
        if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .map_err(io_err(&path))?;
        removed.push(path);
    }
    removed.sort();
    Ok(removed)
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_of_one_output_is_refused_until_the_first_lets_go() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let first = OutputLock::acquire(&out).unwrap();
        let e = OutputLock::acquire(&out).unwrap_err();
        assert!(matches!(e, LockError::Busy { .. }), "{e}");
        assert!(e
            .to_string()
            .contains("another instructrec run is writing it"));
        // Another output beside it is independent.
        let _other = OutputLock::acquire(&root.path().join("other")).unwrap();
        drop(first);
        assert!(!root.path().join(".out.lock").exists());
        OutputLock::acquire(&out).unwrap();
    }

    #[test]
    fn leftovers_of_the_same_output_are_removed_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::create_dir(root.path().join(".out.tmp-abc")).unwrap();
        fs::write(root.path().join(".out.tmp-abc/items.jsonl"), "x").unwrap();
        fs::write(root.path().join(".out.old-x"), "x").unwrap();
        fs::write(root.path().join(".outer.tmp-abc"), "x").unwrap();
        fs::write(root.path().join(".other.tmp-abc"), "x").unwrap();
        fs::write(out.join(".train.jsonl.12-0.tmp"), "x").unwrap();
        fs::write(out.join("train.jsonl"), "x").unwrap();
        let lock = OutputLock::acquire(&out).unwrap();
        let inside = |n: &str| n.starts_with('.') && n.ends_with(".tmp");
        let removed = lock
            .remove_leftovers(&["tmp-", "old-"], Some(&inside))
            .unwrap();
        let names: Vec<_> = removed
            .iter()
            .map(|p| p.strip_prefix(root.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [".out.old-x", ".out.tmp-abc", "out/.train.jsonl.12-0.tmp"]
        );
        assert!(root.path().join(".outer.tmp-abc").exists());
        assert!(root.path().join(".other.tmp-abc").exists());
        assert!(out.join("train.jsonl").exists());
    }
}
