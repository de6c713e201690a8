//! `instructrec scenarios`: the scenario table, from the reports `eval` wrote.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use instructrec_eval::scenarios::{ScenarioSource, ScenarioTable};

#[derive(Args)]
pub struct ScenariosArgs {
    /// A scenario's label and the eval report (JSON) that measured it, NAME=REPORT.json;
    /// repeat, in table order. A label given again adds that report's rows to the scenario
    /// (another checkpoint on the same lists, its rows named by `eval --variant`).
    #[arg(long = "scenario", value_name = "NAME=REPORT.json", required = true)]
    scenarios: Vec<ScenarioSource>,
    /// Table path without extension: writes <out>.json, <out>.md and <out>.svg.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ScenariosArgs) -> Result<()> {
    let table = ScenarioTable::read(&args.scenarios)?;
    table.write(&args.out)?;
    println!(
        "{} rows from {} reports: {}",
        table.rows.len(),
        table.sources.len(),
        args.out.with_extension("md").display()
    );
    Ok(())
}
