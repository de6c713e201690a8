//! Classic baselines for instructrec, each evaluated through `instructrec_eval::Scorer`:
//! popularity, BM25 over item text, SASRec and BERT4Rec, the text search models DSSM and TEM,
//! and the two-tower matching model that mines hard negatives. The neural ones share one
//! training loop, [`trainer`].

pub mod bm25;
pub mod fit;
mod nn;
pub mod popularity;
pub mod seqrec;
pub mod textrec;
pub mod trainer;
pub mod twotower;

pub use bm25::{Bm25, Bm25Config};
pub use fit::{
    evaluate_all, fit, Baseline, FitOptions, Fitted, FullRankingMatcher, SearchTraining,
};
pub use popularity::Popularity;
pub use seqrec::{SeqRec, SeqRecConfig, Variant};
pub use textrec::{TextInput, TextModelKind, TextRec, TextRecConfig, TextSource, WordHash};
pub use trainer::{Stopping, Trainable, Trained};
pub use twotower::{TwoTower, TwoTowerConfig};
