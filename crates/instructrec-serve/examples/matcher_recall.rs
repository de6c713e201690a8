//! Recall of the server's matching stages (BM25, the two-tower model, the model's own T2
//! generation) against held-out test items, on one seeded sample of test users, each asked as
//! the server asks it for a returning user who types nothing (docs/serving.md). This is what
//! `serve --matched N` should be chosen from.
//!
//!   matcher_recall --data DIR [--model DIR] [--two-tower DIR] [--users N] [--seed S]
//!                  [--depths 10,20,50]
//!
//! BM25 always runs; the two-tower model with --two-tower; generation with --model.

use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use instructrec_data::seed::seeded_sample;
use instructrec_data::{Fold, Prepared, UserId};
use instructrec_instructions::TemplateLibrary;
use instructrec_model::Seq2Seq;
use instructrec_serve::matcher::recall;
use instructrec_serve::{Bm25Matcher, GenerationMatcher, Matcher, Options, TwoTowerMatcher};

fn main() -> anyhow::Result<()> {
    let (mut data, mut model, mut two_tower) = (None, None, None);
    let (mut users, mut seed, mut depths) = (1000, 42, vec![10, 20, 50]);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => data = Some(PathBuf::from(value()?)),
            "--model" => model = Some(PathBuf::from(value()?)),
            "--two-tower" => two_tower = Some(PathBuf::from(value()?)),
            "--users" => users = value()?.parse().context("--users")?,
            "--seed" => seed = value()?.parse().context("--seed")?,
            "--depths" => {
                depths = value()?
                    .split(',')
                    .map(|d| d.trim().parse().context("--depths"))
                    .collect::<anyhow::Result<_>>()?
            }
            _ => bail!("unknown argument {flag}; usage: matcher_recall --data DIR [--model DIR] [--two-tower DIR] [--users N] [--seed S] [--depths 10,20,50]"),
        }
    }
    let data = data.context("--data DIR (a prepared dataset) is required")?;
    let prepared = Prepared::load(&data).with_context(|| data.display().to_string())?;
    let all: Vec<UserId> = (0..prepared.dataset.sequences.len() as u32)
        .map(UserId)
        .collect();
    let sample = seeded_sample(all, users, seed);

    let mut matchers: Vec<Box<dyn Matcher>> = vec![Box::new(Bm25Matcher::fit(&prepared))];
    if let Some(dir) = &two_tower {
        matchers.push(Box::new(TwoTowerMatcher::load(dir, &prepared)?));
    }
    if let Some(dir) = &model {
        // The server's defaults: the same instruction a served request would render.
        let options = Options::default();
        matchers.push(Box::new(GenerationMatcher::new(
            Seq2Seq::load_on(dir, options.placement)?,
            &prepared,
            TemplateLibrary::builtin(),
            options.history_budget,
            options.token_limits(),
        )?));
    }
    println!(
        "{} test users of {} (seed {seed}); history before the test item as the query, no text",
        sample.len(),
        data.display()
    );
    println!(
        "| matcher | {} | seconds |",
        depths
            .iter()
            .map(|d| format!("@{d}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(depths.len()));
    for m in &matchers {
        let bar = ProgressBar::new(sample.len() as u64).with_style(ProgressStyle::with_template(
            "{msg} {bar:30} {pos}/{len} users ({eta})",
        )?);
        bar.set_message(m.name());
        let start = std::time::Instant::now();
        let r = recall(m.as_ref(), &prepared, &sample, Fold::Test, &depths, || {
            bar.inc(1)
        })?;
        bar.finish_and_clear();
        let cells: Vec<String> = r
            .iter()
            .map(|r| format!("{:.3} ± {:.3}", r.value, r.std_error))
            .collect();
        println!(
            "| {} | {} | {:.0} |",
            m.name(),
            cells.join(" | "),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
