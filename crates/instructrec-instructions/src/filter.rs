//! Which instruction lines a model is tuned on, and where a tuned checkpoint records it, so that
//! an evaluation can check what the model saw without depending on the trainer.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::aspects::{IntentionKind, PreferenceKind, Strategy, TaskForm};
use instructrec_data::DataError;

/// The labels of an instruction line; a line written by another tool may lack any of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Labels {
    pub preference: Option<PreferenceKind>,
    pub intention: Option<IntentionKind>,
    pub task: Option<TaskForm>,
    pub strategy: Option<Strategy>,
}

/// Which lines of an instruction file to train on: those whose preference, intention, task form
/// and strategy are among the given ones (an empty list keeps every value), and whose intention
/// is not in `without_intentions`. A small CPU budget is better spent on the scenarios that will
/// be evaluated; leaving an intention out keeps a scenario unseen for the held-out protocol. The
/// trainer records the filter in each checkpoint ([`TrainingRecord`]), so an evaluation can
/// check what was seen. Serialised by label (`"preferences": ["P1"]`, `"strategies":
/// ["plain"]`), as checkpoints have always recorded it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LineFilter {
    #[serde(default)]
    pub preferences: Vec<PreferenceKind>,
    #[serde(default)]
    pub intentions: Vec<IntentionKind>,
    #[serde(default)]
    pub without_intentions: Vec<IntentionKind>,
    #[serde(default)]
    pub tasks: Vec<TaskForm>,
    #[serde(default)]
    pub strategies: Vec<Strategy>,
    /// How often each kept line is used per epoch: the product of the weights of its labels
    /// (1 for a label without one). This is the mixture of instruction types a run trains on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<LineWeight>,
}

/// One label of an instruction line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Preference(PreferenceKind),
    Intention(IntentionKind),
    Task(TaskForm),
    Strategy(Strategy),
}

impl Label {
    fn on(self, line: &Labels) -> bool {
        match self {
            Self::Preference(p) => line.preference == Some(p),
            Self::Intention(i) => line.intention == Some(i),
            Self::Task(t) => line.task == Some(t),
            Self::Strategy(s) => line.strategy == Some(s),
        }
    }
}

/// `T3=2`: every line with that label counts twice per epoch; `T0=0.5`: a seeded half of them
/// once. Written and read in that form, on the command line, in recipes and in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct LineWeight {
    pub label: Label,
    pub weight: f64,
}

impl std::fmt::Display for LineWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.label {
            Label::Preference(p) => write!(f, "{p}")?,
            Label::Intention(i) => write!(f, "{i}")?,
            Label::Task(t) => write!(f, "{t}")?,
            Label::Strategy(s) => write!(f, "{s}")?,
        }
        write!(f, "={}", self.weight)
    }
}

impl std::str::FromStr for LineWeight {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (label, weight) = s
            .split_once('=')
            .ok_or_else(|| format!("weight {s:?} is not LABEL=WEIGHT (e.g. T3=2)"))?;
        let label = label
            .parse()
            .map(Label::Preference)
            .or_else(|_| label.parse().map(Label::Intention))
            .or_else(|_| label.parse().map(Label::Task))
            .or_else(|_| label.parse().map(Label::Strategy))
            .map_err(|_| {
                format!(
                    "weight {s:?}: {label:?} is not a preference (P0-P2), intention (I0-I2), \
                     task form (T0-T3) or strategy (plain, reversed, tied, chain)"
                )
            })?;
        let weight: f64 = weight
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| format!("weight {s:?}: {weight:?} is not a number of at least 0"))?;
        Ok(Self { label, weight })
    }
}

impl From<LineWeight> for String {
    fn from(w: LineWeight) -> String {
        w.to_string()
    }
}

impl TryFrom<String> for LineWeight {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl LineFilter {
    /// Whether a line with these labels is kept. A line without a label passes where that label
    /// is not asked for.
    pub fn keeps(&self, line: &Labels) -> bool {
        fn ok<T: PartialEq>(wanted: &[T], got: Option<T>) -> bool {
            wanted.is_empty() || got.is_some_and(|g| wanted.contains(&g))
        }
        ok(&self.preferences, line.preference)
            && ok(&self.intentions, line.intention)
            && !line
                .intention
                .is_some_and(|i| self.without_intentions.contains(&i))
            && ok(&self.tasks, line.task)
            && ok(&self.strategies, line.strategy)
    }

    /// How many times per epoch a kept line with these labels is used: the product of its
    /// labels' weights.
    pub fn weight(&self, line: &Labels) -> f64 {
        self.weights
            .iter()
            .filter(|w| w.label.on(line))
            .map(|w| w.weight)
            .product()
    }

    /// Whether lines with this intention can pass the filter. (A line without an intention
    /// passes unless `intentions` is given.)
    pub fn admits_intention(&self, intention: IntentionKind) -> bool {
        (self.intentions.is_empty() || self.intentions.contains(&intention))
            && !self.without_intentions.contains(&intention)
    }

    pub fn describe(&self) -> String {
        fn labels<T: std::fmt::Display>(list: &[T], sep: &str) -> String {
            let labels: Vec<String> = list.iter().map(ToString::to_string).collect();
            labels.join(sep)
        }
        let mut parts = Vec::new();
        if !self.preferences.is_empty() {
            parts.push(format!("preference {}", labels(&self.preferences, " or ")));
        }
        if !self.intentions.is_empty() {
            parts.push(format!("intention {}", labels(&self.intentions, " or ")));
        }
        if !self.without_intentions.is_empty() {
            parts.push(format!(
                "intention not {}",
                labels(&self.without_intentions, " nor ")
            ));
        }
        if !self.tasks.is_empty() {
            parts.push(format!("task {}", labels(&self.tasks, " or ")));
        }
        if !self.strategies.is_empty() {
            parts.push(format!("strategy {}", labels(&self.strategies, " or ")));
        }
        if !self.weights.is_empty() {
            parts.push(format!("weights {}", labels(&self.weights, ",")));
        }
        if parts.is_empty() {
            "every line".to_string()
        } else {
            parts.join(" and ")
        }
    }
}

/// The file of a checkpoint directory in which the trainer records its run.
pub const TRAINING_RECORD_FILE: &str = "trainer_state.json";

/// What a checkpoint's training record says about the run that made it, as far as an evaluation
/// needs it: the trainer writes these fields among others, and this reads only them.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRecord {
    pub seed: u64,
    /// Optimizer steps taken.
    pub steps: u64,
    pub train_examples: usize,
    /// Training wall time summed over all invocations.
    pub elapsed_secs: f64,
    /// The instruction lines trained on; `None` when not from instruction lines or made before
    /// the trainer recorded them.
    pub lines: Option<LineFilter>,
}

#[derive(Deserialize)]
struct RecordFile {
    seed: u64,
    step: u64,
    train_examples: usize,
    elapsed_secs: f64,
    config: RecordedConfig,
}

#[derive(Deserialize)]
struct RecordedConfig {
    #[serde(default)]
    lines: Option<LineFilter>,
}

impl TrainingRecord {
    /// Reads the record of checkpoint directory `dir`.
    pub fn read(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(TRAINING_RECORD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        let file: RecordFile = serde_json::from_str(&text).map_err(|e| DataError::File {
            path,
            message: format!("unreadable training record: {e}"),
        })?;
        Ok(Self {
            seed: file.seed,
            steps: file.step,
            train_examples: file.train_examples,
            elapsed_secs: file.elapsed_secs,
            lines: file.config.lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(intention: Option<IntentionKind>) -> Labels {
        Labels {
            intention,
            ..Labels::default()
        }
    }

    #[test]
    fn intention_lists_keep_and_drop_lines() {
        use IntentionKind::{None as I0, Specific as I2, Vague as I1};
        let kept = |filter: &LineFilter| -> Vec<Option<IntentionKind>> {
            [Some(I0), Some(I1), Some(I2), None]
                .into_iter()
                .filter(|&i| filter.keeps(&labels(i)))
                .collect()
        };
        let without_i1 = LineFilter {
            without_intentions: vec![I1],
            ..LineFilter::default()
        };
        assert_eq!(kept(&without_i1), [Some(I0), Some(I2), None]);
        assert!(!without_i1.admits_intention(I1) && without_i1.admits_intention(I2));
        assert_eq!(without_i1.describe(), "intention not I1");
        let only = LineFilter {
            intentions: vec![I0, I2],
            ..LineFilter::default()
        };
        assert_eq!(kept(&only), [Some(I0), Some(I2)]);
        assert!(!only.admits_intention(I1) && only.admits_intention(I0));
        assert!(LineFilter::default().admits_intention(I1));
        assert_eq!(LineFilter::default().describe(), "every line");
        // Dropping wins over keeping.
        let both = LineFilter {
            intentions: vec![I1],
            without_intentions: vec![I1],
            ..LineFilter::default()
        };
        assert!(!both.admits_intention(I1));
        assert!(kept(&both).is_empty());
        assert_eq!(both.describe(), "intention I1 and intention not I1");
    }

    #[test]
    fn weights_multiply_over_a_line_labels_and_read_back_in_their_written_form() {
        let filter = LineFilter {
            weights: vec!["T3=2".parse().unwrap(), "P0=1.5".parse().unwrap()],
            ..LineFilter::default()
        };
        let line = |preference, task| Labels {
            preference: Some(preference),
            task: Some(task),
            ..Labels::default()
        };
        assert_eq!(
            filter.weight(&line(PreferenceKind::None, TaskForm::Rerank)),
            3.0
        );
        assert_eq!(
            filter.weight(&line(PreferenceKind::Implicit, TaskForm::Rerank)),
            2.0
        );
        assert_eq!(
            filter.weight(&line(PreferenceKind::Implicit, TaskForm::Pointwise)),
            1.0
        );
        assert_eq!(filter.weight(&Labels::default()), 1.0);
        let json = serde_json::to_value(&filter).unwrap();
        assert_eq!(json["weights"], serde_json::json!(["T3=2", "P0=1.5"]));
        assert_eq!(serde_json::from_value::<LineFilter>(json).unwrap(), filter);
        assert_eq!(filter.describe(), "weights T3=2,P0=1.5");
        for bad in ["T3", "T9=2", "T3=-1", "T3=x", "plain=nan"] {
            assert!(bad.parse::<LineWeight>().is_err(), "{bad} parsed");
        }
        assert_eq!(
            "chain=0.25".parse::<LineWeight>().unwrap().label,
            Label::Strategy(Strategy::Chain)
        );
    }

    /// A `trainer_state.json` as checkpoints written before the filter was typed hold it.
    const RECORDED: &str = r#"{
      "format": 1, "step": 200, "epoch": 0, "seed": 42, "train_examples": 47165,
      "elapsed_secs": 293.5, "best_metric": 0.585,
      "config": {
        "seed": 42, "epochs": 1, "max_steps": 200, "lr": 0.005,
        "lines": {
          "preferences": ["P1"], "intentions": [], "without_intentions": ["I1"],
          "tasks": ["T3"], "strategies": ["plain"]
        },
        "time_budget": null
      }
    }"#;

    #[test]
    fn a_recorded_filter_reads_back_typed_and_writes_the_same_labels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TRAINING_RECORD_FILE), RECORDED).unwrap();
        let record = TrainingRecord::read(dir.path()).unwrap();
        let want = LineFilter {
            preferences: vec![PreferenceKind::Implicit],
            intentions: Vec::new(),
            without_intentions: vec![IntentionKind::Vague],
            tasks: vec![TaskForm::Rerank],
            strategies: vec![Strategy::Plain],
            weights: Vec::new(),
        };
        assert_eq!(record.lines.as_ref(), Some(&want));
        assert_eq!((record.seed, record.steps), (42, 200));
        assert_eq!(
            want.describe(),
            "preference P1 and intention not I1 and task T3 and strategy plain"
        );
        let written: serde_json::Value = serde_json::to_value(&want).unwrap();
        let recorded: serde_json::Value = serde_json::from_str(RECORDED).unwrap();
        assert_eq!(written, recorded["config"]["lines"]);

        // Without the field: not recorded, not an error.
        let mut old = recorded;
        old["config"].as_object_mut().unwrap().remove("lines");
        std::fs::write(dir.path().join(TRAINING_RECORD_FILE), old.to_string()).unwrap();
        assert_eq!(TrainingRecord::read(dir.path()).unwrap().lines, None);
        let missing = TrainingRecord::read(&dir.path().join("nowhere")).unwrap_err();
        assert!(
            missing.to_string().contains(TRAINING_RECORD_FILE),
            "{missing}"
        );
    }

    #[test]
    fn labels_parse_and_unknown_ones_list_the_allowed() {
        assert_eq!("P1".parse::<PreferenceKind>(), Ok(PreferenceKind::Implicit));
        assert_eq!("I2".parse::<IntentionKind>(), Ok(IntentionKind::Specific));
        assert_eq!("T3".parse::<TaskForm>(), Ok(TaskForm::Rerank));
        assert_eq!("chain".parse::<Strategy>(), Ok(Strategy::Chain));
        assert_eq!(
            "P7".parse::<PreferenceKind>().unwrap_err(),
            "unknown preference \"P7\"; expected one of P0, P1, P2"
        );
        let e = "rerank".parse::<TaskForm>().unwrap_err();
        assert!(e.contains("T0, T1, T2, T3"), "{e}");
        let e = "Plain".parse::<Strategy>().unwrap_err();
        assert!(e.contains("plain, reversed, tied, chain"), "{e}");
        for i in IntentionKind::ALL {
            assert_eq!(i.label().parse::<IntentionKind>(), Ok(i));
        }
    }
}
