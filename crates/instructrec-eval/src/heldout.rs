//! The held-out protocol's stages: instruction models tuned while instruction types are added,
//! none of them on the held-out scenario. Which lines a model saw is read from the line filter
//! `instructrec train` records in every checkpoint; a stage that may have seen a vague-intention
//! (I1) line is refused, since its score would no longer measure generalisation.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context};
use instructrec_instructions::{IntentionKind, LineFilter, TrainingRecord};
use serde::Serialize;

/// The intention whose lines no stage may have been tuned on: vague intentions, the query of
/// personalised search <P1,I1,T3>.
pub const HELD_OUT_INTENTION: IntentionKind = IntentionKind::Vague;

/// One stage as given on the command line, `NAME=DIR`: a label and a checkpoint directory
/// (config.json, model.safetensors, tokenizer.json, trainer_state.json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOutStage {
    pub name: String,
    pub dir: PathBuf,
}

impl FromStr for HeldOutStage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, dir)) if !name.trim().is_empty() && !dir.is_empty() => Ok(HeldOutStage {
                name: name.trim().to_string(),
                dir: PathBuf::from(dir),
            }),
            _ => Err(format!(
                "stage {s:?} is not NAME=DIR (e.g. S1=runs/heldout/s1/last)"
            )),
        }
    }
}

/// What a stage's checkpoint records about its tuning, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageInfo {
    pub name: String,
    /// The report's model row that holds this stage's results.
    pub model: String,
    pub dir: String,
    /// The instruction lines it was tuned on, in words.
    pub trained_on: String,
    pub filter: LineFilter,
    pub seed: u64,
    /// Optimizer steps taken and training lines available to them.
    pub steps: u64,
    pub train_examples: usize,
    pub train_wall_s: f64,
}

/// Reads a stage's training record and checks that its recorded line filter rules out the
/// held-out intention; `model` names the report row its results will go to.
pub fn check_stage(stage: &HeldOutStage, model: String) -> anyhow::Result<StageInfo> {
    let record = TrainingRecord::read(&stage.dir).with_context(|| {
        format!(
            "stage {}: reading the training record of {}",
            stage.name,
            stage.dir.display()
        )
    })?;
    let Some(filter) = record.lines else {
        bail!(
            "stage {}: {}/trainer_state.json does not record which instruction lines were \
             trained on (made before `instructrec train` recorded its line filter, or not tuned \
             on instruction lines), so it cannot be shown to have left out the held-out \
             scenario; train it again with --without-intention {HELD_OUT_INTENTION}",
            stage.name,
            stage.dir.display()
        );
    };
    if filter.admits_intention(HELD_OUT_INTENTION) {
        bail!(
            "stage {}: {} was tuned on {}, which includes {HELD_OUT_INTENTION} (vague \
             intention) lines, the held-out scenario; a held-out stage must be trained with \
             --without-intention {HELD_OUT_INTENTION} or an --intention list without it",
            stage.name,
            stage.dir.display(),
            filter.describe()
        );
    }
    Ok(StageInfo {
        name: stage.name.clone(),
        model,
        dir: stage.dir.display().to_string(),
        trained_on: filter.describe(),
        filter,
        seed: record.seed,
        steps: record.steps,
        train_examples: record.train_examples,
        train_wall_s: record.elapsed_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_as_name_and_directory() {
        let s: HeldOutStage = "S1=runs/a=b/last".parse().unwrap();
        assert_eq!(s.name, "S1");
        assert_eq!(s.dir, PathBuf::from("runs/a=b/last"));
        for bad in ["S1", "=dir", "S1="] {
            assert!(bad
                .parse::<HeldOutStage>()
                .unwrap_err()
                .contains("NAME=DIR"));
        }
    }
}
