//! The scenario table: one checkpoint's place in every scenario of the method, read from the
//! per-protocol reports `eval` wrote (each names its data, seed, lists and models), so the table
//! adds no number of its own. One row per scenario, list setting and model: HR@1 and NDCG@5 with
//! their standard errors, and the report each came from. A scenario given more than once (the
//! reports of several checkpoints, named apart by `eval --variant`, or of other models scored on
//! the same lists) gathers the rows of all its reports, so that they are compared case by case.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use instructrec_data::Fold;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::harness::Evaluation;
use crate::metrics::{paired, Paired};
use crate::report::asked_label;

/// `NAME=REPORT.json`: a scenario's label and the report that measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioSource {
    pub name: String,
    pub report: PathBuf,
}

impl std::str::FromStr for ScenarioSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((name, path)) if !name.trim().is_empty() && !path.is_empty() => Ok(Self {
                name: name.trim().to_string(),
                report: PathBuf::from(path),
            }),
            _ => Err(format!(
                "{s:?} is not NAME=REPORT.json (e.g. sequential=runs/report-sequential.json)"
            )),
        }
    }
}

/// One scenario, setting and model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioRow {
    pub scenario: String,
    /// The list setting ("1+9 sampled", "1+99 in 10 groups", "full ranking").
    pub setting: String,
    pub model: String,
    pub cases: usize,
    pub hr1: f64,
    pub hr1_se: f64,
    pub ndcg5: f64,
    pub ndcg5_se: f64,
    /// How the instruction model was asked, where it was chosen on validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asked: Option<String>,
    /// Per-case ranks, for the paired comparisons (not written again: the report has them).
    #[serde(skip)]
    pub ranks: Vec<u32>,
}

/// An instruction-model row against another model on the same cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub setting: String,
    pub model: String,
    pub against: String,
    /// The model's per-case value minus the other's.
    pub difference: Paired,
}

/// Where a scenario's rows came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioProvenance {
    pub scenario: String,
    pub report: String,
    pub report_sha256: String,
    pub protocol: String,
    pub command: String,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioTable {
    pub rows: Vec<ScenarioRow>,
    /// Every instruction-model row (its permuted-prompt control aside) against every other row
    /// of its scenario and setting, where both reports kept per-case ranks.
    pub comparisons: Vec<Comparison>,
    pub sources: Vec<ScenarioProvenance>,
}

/// The parts of a report the table reads.
#[derive(Deserialize)]
struct ReportFile {
    #[serde(default)]
    partial: bool,
    protocol: String,
    /// The lists scored: reports that share a scenario must have scored the same ones.
    #[serde(default)]
    candidates: Vec<ListsScored>,
    command: String,
    seed: u64,
    models: Vec<ModelFile>,
}

/// What identifies a report's lists (later reports say more about them, such as title ties).
#[derive(Deserialize, PartialEq)]
struct ListsScored {
    fold: String,
    size: usize,
    cases: usize,
    checksum: String,
}

#[derive(Deserialize)]
struct ModelFile {
    name: String,
    results: Vec<Evaluation>,
}

impl ScenarioTable {
    /// Reads every source's report; a missing or unreadable report, or one without results, is
    /// an error naming it.
    pub fn read(sources: &[ScenarioSource]) -> anyhow::Result<Self> {
        if sources.is_empty() {
            bail!("no scenario given: pass --scenario NAME=REPORT.json, once per scenario");
        }
        let mut table = Self {
            rows: Vec::new(),
            comparisons: Vec::new(),
            sources: Vec::new(),
        };
        // The lists of each scenario's first report, which its later reports must share.
        let mut lists: HashMap<String, Vec<ListsScored>> = HashMap::new();
        for source in sources {
            let path = &source.report;
            let bytes = std::fs::read(path)
                .with_context(|| format!("scenario {}: reading {}", source.name, path.display()))?;
            let report: ReportFile = serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "scenario {}: {} is not an eval report",
                    source.name,
                    path.display()
                )
            })?;
            if report.partial {
                bail!(
                    "scenario {}: {} is a partial report: the eval that wrote it failed or was \
                     stopped before the end (or is still running); run it again",
                    source.name,
                    path.display()
                );
            }
            let earlier = table.sources.iter().find(|s| s.scenario == source.name);
            if let Some(first) = earlier {
                // The lists decide whether cases pair up, not the protocol's name: mined lists
                // scored again as `sequential --candidates` are the same cases.
                if lists[&source.name] != report.candidates {
                    bail!(
                        "scenario {}: {} and {} did not score the same lists (fold, size, \
                         cases and checksum); give each its own scenario name",
                        source.name,
                        first.report,
                        path.display(),
                    );
                }
            }
            let before = table.rows.len();
            for model in &report.models {
                for e in &model.results {
                    // Validation rows (`eval --fold validation`, for choosing how to ask) must
                    // not read as test figures.
                    let setting = match e.fold {
                        Fold::Test => e.setting.to_string(),
                        Fold::Validation => format!("{}, validation fold", e.setting),
                    };
                    let same = table.rows.iter().find(|r| {
                        r.scenario == source.name && r.setting == setting && r.model == model.name
                    });
                    if let Some(same) = same {
                        // A baseline refitted with the same seed gives the same ranks: one row.
                        if same.ranks == e.ranks && !e.ranks.is_empty() {
                            continue;
                        }
                        bail!(
                            "scenario {}: {} ({setting}) is in two of its reports with different \
                             results ({}); name each checkpoint's rows apart with `eval --variant \
                             NAME`",
                            source.name,
                            model.name,
                            path.display()
                        );
                    }
                    let m = &e.metrics;
                    table.rows.push(ScenarioRow {
                        scenario: source.name.clone(),
                        setting,
                        model: model.name.clone(),
                        cases: m.cases,
                        hr1: m.hr1,
                        hr1_se: m.se.hr1,
                        ndcg5: m.ndcg5,
                        ndcg5_se: m.se.ndcg5,
                        asked: e.asked.clone(),
                        ranks: e.ranks.clone(),
                    });
                }
            }
            let first_of_scenario = earlier.is_none();
            if table.rows.len() == before && first_of_scenario {
                bail!(
                    "scenario {}: {} has no results",
                    source.name,
                    path.display()
                );
            }
            table.sources.push(ScenarioProvenance {
                scenario: source.name.clone(),
                report: path.display().to_string(),
                report_sha256: hex::encode(Sha256::digest(&bytes)),
                protocol: report.protocol,
                command: report.command,
                seed: report.seed,
            });
            lists
                .entry(source.name.clone())
                .or_insert(report.candidates);
        }
        table.comparisons = comparisons(&table.rows);
        Ok(table)
    }

    /// The table in markdown: scenario, setting, model, HR@1 and NDCG@5 (± standard error),
    /// the best HR@1 of each scenario and setting in bold; then where each scenario came from.
    pub fn markdown(&self, svg_name: &str) -> String {
        let mut md = String::from(
            "# Scenarios: one checkpoint against each scenario's baselines\n\n\
             Each row is read from a report of its scenario (below; a scenario may gather \
             several reports on the same lists), which names the data, the seed, the candidate \
             lists and every model's configuration. ± is one standard \
             error of the mean over the cases. `-permuted` rows ask the same model about each \
             case in another case's prompt; `-chosen` rows are asked, per setting, the way that \
             scored best on the validation fold (`eval --choose-form`).\n\n",
        );
        md.push_str(&format!("![HR@1 by scenario]({svg_name})\n\n"));
        md.push_str("| scenario | setting | model | cases | HR@1 | NDCG@5 |\n");
        md.push_str("|---|---|---|---|---|---|\n");
        for row in &self.rows {
            let best = self
                .rows
                .iter()
                .filter(|r| r.scenario == row.scenario && r.setting == row.setting)
                .all(|r| r.hr1 <= row.hr1);
            let hr1 = format!("{:.3} ± {:.3}", row.hr1, row.hr1_se);
            let hr1 = if best { format!("**{hr1}**") } else { hr1 };
            let model = asked_label(&row.model, row.asked.as_deref());
            md.push_str(&format!(
                "| {} | {} | {model} | {} | {hr1} | {:.4} ± {:.4} |\n",
                row.scenario, row.setting, row.cases, row.ndcg5, row.ndcg5_se
            ));
        }
        md.push_str(
            "\n## Paired differences\n\nThe instruction model minus each other model on the same \
             cases (mean per-case difference ± its standard error; z = difference / standard \
             error).\n\n| scenario | setting | model | against | HR@1 | z | NDCG@5 |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for c in &self.comparisons {
            let d = &c.difference;
            let z = if d.hr1_se > 0.0 {
                format!("{:+.1}", d.hr1 / d.hr1_se)
            } else {
                "-".into()
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {:+.3} ± {:.3} | {z} | {:+.4} ± {:.4} |\n",
                c.scenario, c.setting, c.model, c.against, d.hr1, d.hr1_se, d.ndcg5, d.ndcg5_se
            ));
        }
        md.push_str(
            "\n## Sources\n\n| scenario | protocol | report | SHA-256 | seed | command |\n",
        );
        md.push_str("|---|---|---|---|---|---|\n");
        for s in &self.sources {
            md.push_str(&format!(
                "| {} | {} | {} | `{}` | {} | `{}` |\n",
                s.scenario,
                s.protocol,
                s.report,
                &s.report_sha256[..16],
                s.seed,
                s.command
            ));
        }
        md
    }
}

/// The instruction-model rows (named `instructrec...`, not `-permuted`) against every other row
/// of the same scenario and setting.
fn comparisons(rows: &[ScenarioRow]) -> Vec<Comparison> {
    let ours =
        |r: &ScenarioRow| r.model.starts_with("instructrec") && !r.model.ends_with("-permuted");
    let mut out = Vec::new();
    for a in rows.iter().filter(|r| ours(r)) {
        for b in rows
            .iter()
            .filter(|b| b.model != a.model && b.scenario == a.scenario && b.setting == a.setting)
        {
            if let Some(difference) = paired(&a.ranks, &b.ranks) {
                out.push(Comparison {
                    scenario: a.scenario.clone(),
                    setting: a.setting.clone(),
                    model: a.model.clone(),
                    against: b.model.clone(),
                    difference,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(models: &[(&str, f64)]) -> String {
        let models: Vec<serde_json::Value> = models
            .iter()
            .map(|(name, hr1)| {
                serde_json::json!({
                    "name": name,
                    "results": [{
                        "setting": {"kind": "sampled", "size": 10},
                        "fold": "test",
                        "metrics": {
                            "cases": 100, "hr1": hr1, "hr3": 0.0, "hr5": 0.0, "hr10": 0.0,
                            "ndcg3": 0.0, "ndcg5": 0.5, "ndcg10": 0.0, "mrr": 0.0,
                            "se": {"hr1": 0.05, "ndcg5": 0.04, "hr10": 0.0, "ndcg10": 0.0}
                        },
                        "eval_wall_s": 1.0,
                        "ranks": if *hr1 > 0.5 { [1, 1, 2] } else { [2, 1, 2] }
                    }]
                })
            })
            .collect();
        serde_json::json!({
            "protocol": "sequential", "command": "instructrec eval", "seed": 42,
            "models": models
        })
        .to_string()
    }

    #[test]
    fn rows_come_from_the_reports_with_their_provenance_and_bad_sources_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        std::fs::write(&a, report(&[("bm25", 0.4), ("instructrec-mean", 0.6)])).unwrap();
        let sources = vec![format!("sequential={}", a.display()).parse().unwrap()];
        let table = ScenarioTable::read(&sources).unwrap();
        assert_eq!(table.rows.len(), 2);
        assert_eq!(table.rows[1].model, "instructrec-mean");
        assert_eq!(table.rows[1].setting, "1+9 sampled");
        assert_eq!(table.sources[0].seed, 42);
        // A validation-fold report's rows say so.
        let v = dir.path().join("v.json");
        std::fs::write(
            &v,
            report(&[("bm25", 0.4)]).replace("\"test\"", "\"validation\""),
        )
        .unwrap();
        let choice = ScenarioTable::read(&[format!("choice={}", v.display()).parse().unwrap()]);
        assert_eq!(
            choice.unwrap().rows[0].setting,
            "1+9 sampled, validation fold"
        );
        let md = table.markdown("s.svg");
        assert!(
            md.contains(
                "| sequential | 1+9 sampled | instructrec-mean | 100 | **0.600 ± 0.050** |"
            ),
            "{md}"
        );
        assert!(md.contains("| bm25 | 100 | 0.400 ± 0.050 |"), "{md}");
        // Paired on the stored ranks: the model hit case 0 where BM25 missed it.
        assert_eq!(table.comparisons.len(), 1);
        let c = &table.comparisons[0];
        assert_eq!(
            (c.model.as_str(), c.against.as_str()),
            ("instructrec-mean", "bm25")
        );
        assert!((c.difference.hr1 - 1.0 / 3.0).abs() < 1e-12);
        assert!(
            md.contains("| sequential | 1+9 sampled | instructrec-mean | bm25 | +0.333 ±"),
            "{md}"
        );
        table.write(&dir.path().join("out")).unwrap();
        assert!(std::fs::read_to_string(dir.path().join("out.svg"))
            .unwrap()
            .starts_with("<svg"));

        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, report(&[])).unwrap();
        let e = ScenarioTable::read(&[format!("search={}", empty.display()).parse().unwrap()])
            .unwrap_err();
        assert!(format!("{e:#}").contains("search"), "{e:#}");
        let mut partial: serde_json::Value =
            serde_json::from_str(&report(&[("bm25", 0.4)])).unwrap();
        partial["partial"] = true.into();
        let stopped = dir.path().join("stopped.json");
        std::fs::write(&stopped, partial.to_string()).unwrap();
        let e = ScenarioTable::read(&[format!("hard={}", stopped.display()).parse().unwrap()])
            .unwrap_err();
        assert!(format!("{e:#}").contains("is a partial report"), "{e:#}");
        // A second checkpoint's report on the same lists joins the scenario: its BM25 row is
        // the same one, its instruction model is compared with the first's case by case.
        let b = dir.path().join("b.json");
        std::fs::write(&b, report(&[("bm25", 0.4), ("instructrec-cat-mean", 0.2)])).unwrap();
        let both: Vec<ScenarioSource> = [&a, &b]
            .iter()
            .map(|p| format!("sequential={}", p.display()).parse().unwrap())
            .collect();
        let table = ScenarioTable::read(&both).unwrap();
        let models: Vec<&str> = table.rows.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(models, ["bm25", "instructrec-mean", "instructrec-cat-mean"]);
        assert_eq!(table.sources.len(), 2);
        let c = table
            .comparisons
            .iter()
            .find(|c| c.model == "instructrec-mean" && c.against == "instructrec-cat-mean")
            .unwrap();
        assert!((c.difference.hr1 - 1.0 / 3.0).abs() < 1e-12);
        // Two different results under one name cannot be told apart.
        let clash = dir.path().join("clash.json");
        std::fs::write(&clash, report(&[("instructrec-mean", 0.2)])).unwrap();
        let e = ScenarioTable::read(&[
            both[0].clone(),
            format!("sequential={}", clash.display()).parse().unwrap(),
        ])
        .unwrap_err();
        assert!(format!("{e:#}").contains("eval --variant"), "{e:#}");
        // Nor can reports of other lists share a scenario.
        let mut other: serde_json::Value =
            serde_json::from_str(&report(&[("instructrec-cat-mean", 0.2)])).unwrap();
        other["candidates"] =
            serde_json::json!([{"fold": "test", "size": 10, "cases": 3, "checksum": "another"}]);
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, other.to_string()).unwrap();
        let e = ScenarioTable::read(&[
            both[0].clone(),
            format!("sequential={}", elsewhere.display())
                .parse()
                .unwrap(),
        ])
        .unwrap_err();
        assert!(format!("{e:#}").contains("did not score the same"), "{e:#}");

        let e = ScenarioTable::read(&["x=/nowhere.json".parse().unwrap()]).unwrap_err();
        assert!(format!("{e:#}").contains("/nowhere.json"), "{e:#}");
        assert!("no-equals".parse::<ScenarioSource>().is_err());
    }
}
