use std::path::PathBuf;

/// Everything that can stop training. Input errors name the file (and the line, for a bad row
/// of a JSON-lines file) so that it can be found.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error(transparent)]
    Data(#[from] instructrec_data::DataError),
    #[error(transparent)]
    Lock(#[from] instructrec_data::LockError),
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
    #[error(
        "--resume: {path} was trained with different settings: {changed}; repeat the original \
         flags (only a larger --max-steps or more --epochs may extend the run) or start a new --out"
    )]
    Changed { path: PathBuf, changed: String },
    #[error(
        "{path} stopped on its time budget at step {step} of {total}: run again to continue it \
         (or give it a longer budget)"
    )]
    Unfinished {
        path: PathBuf,
        step: u64,
        total: u64,
    },
    #[error("validation metric failed: {0}")]
    Metric(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
