//! `instructrec run`: the whole pipeline on one dataset, as a recipe (recipes/default.toml)
//! renders it. Each stage is the same subcommand a user would type. Stages whose output already
//! exists are skipped and training resumes, so a killed run picks up where it stopped.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use instructrec_recipe::{command_line, Recipe, Stage, Workspace};
use instructrec_train::trainer::ensure_finished;

#[derive(Args)]
pub struct RunArgs {
    /// The recipe: a TOML file (its keys are merged over the default recipe's), or a shipped
    /// one by name: `default` (the full pipeline) or `quick` (a demo in a few minutes).
    #[arg(long, default_value = "default")]
    recipe: String,
    /// Print the recipe (the commented default one without --recipe) and stop.
    #[arg(long)]
    print_recipe: bool,
    /// Print the stages' commands and stop.
    #[arg(long)]
    print_commands: bool,
    /// Working directory (default: the recipe's `work`).
    #[arg(long)]
    work: Option<PathBuf>,
    /// The input data (default: the recipe's `data.input`).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where training and evaluation run (default: the recipe's `device`): cpu, cuda, cuda:N.
    #[arg(long)]
    device: Option<instructrec_model::DeviceSpec>,
    /// Stop after the evaluation instead of serving.
    #[arg(long)]
    no_serve: bool,
}

impl RunArgs {
    fn recipe(&self) -> anyhow::Result<Recipe> {
        let mut recipe = Recipe::resolve(&self.recipe)?;
        if let Some(work) = &self.work {
            recipe.work.clone_from(work);
        }
        if let Some(input) = &self.input {
            recipe.data.input.clone_from(input);
        }
        if let Some(device) = self.device {
            recipe.device = device;
        }
        Ok(recipe)
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let recipe = args.recipe()?;
    if args.print_recipe {
        print!("{}", recipe.to_commented_toml());
        return Ok(());
    }
    let stages = recipe.stages(&recipe.work);
    if args.print_commands {
        for stage in &stages {
            println!("{}", stage.command_line());
        }
        return Ok(());
    }
    // A recipe that cannot be run fails here, before hours of earlier stages.
    for stage in &stages {
        crate::parse(&stage.argv).with_context(|| format!("the recipe's {} stage", stage.name))?;
    }
    Workspace::new(&recipe.work).keep(&recipe)?;
    for stage in &stages {
        run_stage(stage)?;
    }
    for report in recipe.reports() {
        println!("report: {}", report.display());
    }
    if !args.no_serve {
        run_stage(&recipe.serve_stage(&recipe.work))?;
    }
    Ok(())
}

fn run_stage(stage: &Stage) -> anyhow::Result<()> {
    let Some(argv) = stage.to_run() else {
        return Ok(());
    };
    println!("\n$ {}", command_line(argv));
    crate::execute(argv)?;
    if let Some(out) = &stage.trains {
        ensure_finished(out).with_context(|| format!("the {} stage", stage.name))?;
    }
    Ok(())
}
