use std::path::Path;

use crate::{DataError, Prepared};

pub(crate) fn load(dir: &Path) -> Result<Prepared, DataError> {
    Err(DataError::File { path: dir.to_path_buf(), message: "loading is not written yet".into() })
}

pub(crate) fn save(_p: &Prepared, dir: &Path) -> Result<(), DataError> {
    Err(DataError::File { path: dir.to_path_buf(), message: "saving is not written yet".into() })
}
