//! Evaluation for instructrec: ranking metrics, the one evaluation path every model goes through,
//! the paper's protocols, and reports that tie each number to its data, seed and configuration.

pub mod experiment;
pub mod external;
mod files;
pub mod harness;
pub mod heldout;
pub mod instruct;
pub mod metrics;
pub mod paper;
pub mod pipeline;
mod plot;
pub mod protocol;
pub mod queries;
pub mod report;
pub mod scenarios;
pub mod scorer;
pub mod synthetic;
pub mod validation;

pub use harness::{
    build_cases, build_query_cases, evaluate, evaluate_cases, with_candidates, EvalCase,
    Evaluation, Setting,
};
pub use heldout::{check_stage, HeldOutStage, StageInfo};
pub use instruct::{
    standardised, title_scores, InstructRecScorer, InstructionRenderer, Normalisation,
    PermutedPrompts,
};
pub use metrics::{MetricAccumulator, Metrics};
pub use protocol::Protocol;
pub use queries::{read_queries, QueryKind, QueryLine};
pub use report::{ModelReport, Report, TrainingLog, TrainingStop};
pub use scorer::{Case, Request, Scorer};
