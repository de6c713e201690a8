//! The data layer of instructrec: import real interaction data and item text, filter it,
//! split it, and fix the candidate sets every model is evaluated on.

mod error;
mod manifest;
mod prepared;
mod store;
mod types;

pub use error::DataError;
pub use manifest::{Counts, Dropped, Manifest, PrepareOptions, Source};
pub use prepared::Prepared;
pub use types::{
    CandidateSet, Dataset, Fold, Interaction, Item, ItemId, ItemSplit, Review, User, UserId,
};
