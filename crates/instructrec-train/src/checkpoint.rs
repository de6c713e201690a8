//! Checkpoint directories, written so that a kill at any moment never leaves a partial
//! checkpoint at the target path.
//!
//! A checkpoint is filled in a sibling temporary directory, every file and the directory are
//! fsynced, and then it takes the target's place. A directory cannot be renamed over a non-empty
//! one, so an existing target is first moved aside to `.<name>.old`; if the process dies between
//! the two renames, [`recover`] puts the complete old one back.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::error::{io_err, Result, TrainError};

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
// instructrec-instructions owns the name: the held-out evaluation reads the recorded line
// filter from this file without depending on the trainer.
pub const STATE_FILE: &str = instructrec_instructions::TRAINING_RECORD_FILE;

pub(crate) fn sibling(path: &Path, suffix: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: "path has no file name".into(),
        })?
        .to_string_lossy();
    Ok(path.with_file_name(format!(".{name}.{suffix}")))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Writes `tensors` to `path`, naming the file when that fails (a full disk, say): candle's own
/// error gives only the OS's reason.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    })
}

/// Creates directory `target` with the files `fill` writes into the directory it is given.
pub fn write_dir_atomic(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    // A fixed name, not per process: the temporary directory of a killed run is removed here
    // instead of lingering beside the checkpoint.
    let tmp = sibling(target, "tmp")?;
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    if let Err(e) = fill(&tmp) {
        // Best effort: the error being reported matters more than a leftover temp dir.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
        let path = entry.map_err(io_err(&tmp))?.path();
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&path))?;
    }
    fsync_dir(&tmp)?;
    let old = sibling(target, "old")?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    if target.exists() {
        fs::rename(target, &old).map_err(io_err(target))?;
    }
    fs::rename(&tmp, target).map_err(io_err(target))?;
    fsync_dir(parent)?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(())
}

/// The checkpoint at `target` if there is one, restoring the previous complete checkpoint when
/// a write was interrupted between its two renames.
pub fn recover(target: &Path) -> Result<Option<PathBuf>> {
    if target.is_dir() {
        return Ok(Some(target.to_path_buf()));
    }
    let old = sibling(target, "old")?;
    if old.is_dir() {
        tracing::warn!(
            "{} was being replaced when the last run stopped; restoring the previous checkpoint",
            target.display()
        );
        fs::rename(&old, target).map_err(io_err(target))?;
        return Ok(Some(target.to_path_buf()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
        fs::write(dir.join(name), text).map_err(io_err(dir))
    }

    #[test]
    fn replaces_a_checkpoint_whole_and_keeps_it_on_failure() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("last");
        write_dir_atomic(&target, |d| write(d, "a", "1")).unwrap();
        write_dir_atomic(&target, |d| write(d, "a", "2")).unwrap();
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "2");

        let failed = write_dir_atomic(&target, |d| {
            write(d, "a", "3")?;
            Err(TrainError::Config("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "2");
        let leftovers: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the checkpoint itself remains");
    }

    /// candle's own error for a failed write (a full disk, or here a directory in the way)
    /// carried only the OS's reason, so a full disk while saving the optimizer named no file.
    #[test]
    fn a_failed_tensor_write_names_the_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join(OPTIMIZER_FILE);
        fs::create_dir(&path).unwrap();
        let t = Tensor::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let tensors = HashMap::from([("m".to_string(), t)]);
        let e = save_tensors(&tensors, &path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn recovers_from_a_kill_between_the_renames() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("last");
        write_dir_atomic(&target, |d| write(d, "a", "1")).unwrap();
        fs::rename(&target, sibling(&target, "old").unwrap()).unwrap();
        assert_eq!(recover(&target).unwrap(), Some(target.clone()));
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "1");
        assert_eq!(recover(&root.path().join("none")).unwrap(), None);
    }
}
