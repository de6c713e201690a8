//! The one error type of the data layer.

use std::path::{Path, PathBuf};

/// Every error names the file, and the line and field where there is one, so the user can fix
/// the input without reading our code.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Field {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// The options cannot be honoured on this data (e.g. more negatives than items).
    #[error("{0}")]
    Options(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn field(path: &Path, line: usize, field: &str, message: impl Into<String>) -> Self {
        Self::Field {
            path: path.to_path_buf(),
            line,
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn line(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Self::Line {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

impl From<crate::lock::LockError> for DataError {
    fn from(e: crate::lock::LockError) -> Self {
        match e {
            crate::lock::LockError::Io { path, source } => Self::Io { path, source },
            busy => Self::Options(busy.to_string()),
        }
    }
}
