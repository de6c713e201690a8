use std::path::PathBuf;

/// Everything that can stop training. Input errors name the file and line so that a bad row in
/// a million-line JSONL file can be found.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Input {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Model(#[from] instructrec_model::ModelError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] tokenizers::Error),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error("validation metric failed: {0}")]
    Metric(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
