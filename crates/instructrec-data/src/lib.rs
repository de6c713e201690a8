//! The data layer of instructrec: import real interaction data and item text, filter it,
//! split it, and fix the candidate sets every model is evaluated on.
//!
//! ```no_run
//! use instructrec_data::{prepare, ImportSource, PrepareOptions};
//! let input = ImportSource::Dir { dir: "../shared/datasets/amazon-games".into(), format: None };
//! let (prepared, report) = prepare(&input, &PrepareOptions::default())?;
//! println!("{report}");
//! prepared.save("prepared/amazon-games".as_ref())?;
//! # Ok::<(), instructrec_data::DataError>(())
//! ```

pub mod atomic;
mod bench;
pub mod candidates;
mod error;
pub mod import;
pub mod lock;
mod manifest;
mod prepare;
mod prepared;
pub mod seed;
mod stats;
mod store;
mod types;

pub use bench::{bench, Bench, BenchRun};
pub use error::DataError;
pub use import::{Format, ImportSource, Imported, ImportedItem};
pub use lock::{LockError, OutputLock};
pub use manifest::{Counts, Dropped, Manifest, PrepareOptions, Source};
pub use prepare::{prepare, prepare_imported, PrepareReport, PrepareTimings, FORMAT_VERSION};
pub use prepared::Prepared;
pub use stats::{Stats, StatsTable};
pub use types::{
    CandidateSet, Dataset, Fold, Interaction, Item, ItemId, ItemSplit, Review, User, UserId,
    UserRef, MIN_USER_INTERACTIONS,
};
