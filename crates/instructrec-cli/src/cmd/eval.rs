//! `instructrec eval`: fit (or load) baselines and evaluate them under a protocol, writing a
//! report (JSON, markdown, SVG).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use instructrec_baselines::{fit, Baseline, FitOptions, SearchTraining};
use std::collections::HashSet;

use instructrec_data::{CandidateSet, Fold, Prepared, UserId};
use instructrec_eval::harness::{
    build_cases, build_query_cases, candidates_checksum, mine_hard_negatives, with_candidates,
    EvalCase, Evaluation,
};
use instructrec_eval::report::{write_atomic, CandidateInfo};
use instructrec_eval::{
    check_stage, evaluate, evaluate_cases, read_queries, InstructRecScorer, InstructionIndex,
    ModelReport, Normalisation, Protocol, QueryKind, Report, Scorer, Setting, Stage,
};
use instructrec_instructions::{IntentionKind, PreferenceKind, Split};
use instructrec_train::{Device, Seq2Seq, TokenLimits};
use sha2::{Digest, Sha256};

#[derive(Args)]
pub struct EvalArgs {
    /// Protocol: sequential, product-search, personalised-search, tournament (1+99 with the
    /// query of --query, in one pass and as 10 groups), hard-negatives (1+9 lists mined by the
    /// two-tower model, stored in <out>.candidates.jsonl), zero-shot (--instructrec tuned on
    /// another dataset) and held-out (the personalised-search I1 cases, one --stage per
    /// instruction model tuned without I1 lines).
    #[arg(long)]
    protocol: Protocol,
    /// A prepared directory (from `instructrec data prepare`).
    #[arg(long)]
    data: PathBuf,
    /// Comma-separated models: popularity, bm25, sasrec, bert4rec, dssm, tem (these two only
    /// under search protocols), two-tower.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "popularity,bm25,sasrec,bert4rec"
    )]
    models: Vec<Baseline>,
    /// Report path without extension: writes <out>.json, <out>.md and <out>.svg.
    #[arg(long)]
    out: PathBuf,
    /// Seed of everything sampled in training (initialisation, negatives, masks, batch order).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Saves trained weights here and reuses them when configuration and dataset match.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Per-model training time budget in seconds (overrides each model's default).
    #[arg(long)]
    time_budget_s: Option<f64>,
    #[arg(long)]
    max_epochs: Option<usize>,
    /// Validate on every n-th validation user during training (1 = all).
    #[arg(long)]
    validation_stride: Option<usize>,
    /// Cases scored per batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// CPU threads for tensor ops (sets RAYON_NUM_THREADS). On a busy 2-core machine 1 thread
    /// was several times faster than 2 for these small models.
    #[arg(long)]
    threads: Option<usize>,
    /// Skip full-catalogue ranking.
    #[arg(long)]
    no_full_ranking: bool,
    /// An instruction-tuned model directory (config.json, model.safetensors, tokenizer.json) to
    /// evaluate beside the baselines; needs --instructions.
    #[arg(long, requires = "instructions")]
    instructrec: Option<PathBuf>,
    /// Instructions built from the same prepared dataset (`instructrec instructions build`):
    /// the model reads its test instructions from there, and every model is evaluated on the
    /// users those instructions cover.
    #[arg(long)]
    instructions: Option<PathBuf>,
    /// Longest instruction and answer, in tokens, for the instruction-tuned model.
    #[arg(long, default_value_t = 256)]
    max_source_len: usize,
    #[arg(long, default_value_t = 40)]
    max_target_len: usize,
    /// Score the instruction-tuned model's candidates by their mean token log-likelihood
    /// instead of the sum (removes the sum's preference for short titles).
    #[arg(long)]
    length_normalise: bool,
    /// Search protocols: which fill is the query (explicit = P2, vague = I1, specific = I2).
    /// product-search always uses specific; personalised-search and tournament default to vague.
    #[arg(long)]
    query: Option<QueryKind>,
    /// A pretrained sentence encoder directory (all-MiniLM-L6-v2: config.json,
    /// model.safetensors, tokenizer.json) for DSSM and TEM; without it they train their own
    /// word embeddings.
    #[arg(long)]
    text_encoder: Option<PathBuf>,
    /// Search protocols: evaluate only the first N users (by id) of the query lines.
    #[arg(long)]
    max_users: Option<usize>,
    /// held-out: an instruction model of one tuning stage, NAME=DIR (repeat, in stage order).
    /// Each checkpoint's recorded line filter must rule out I1 lines.
    #[arg(long = "stage", value_name = "NAME=DIR")]
    stages: Vec<Stage>,
}

/// A search protocol's query: the lines' preference and the fill used as the query.
fn search_query(
    protocol: Protocol,
    query: Option<QueryKind>,
) -> anyhow::Result<(PreferenceKind, QueryKind)> {
    Ok(match (protocol, query) {
        (Protocol::ProductSearch, None | Some(QueryKind::Specific)) => {
            (PreferenceKind::None, QueryKind::Specific)
        }
        (Protocol::ProductSearch, Some(q)) => {
            anyhow::bail!("product-search queries are specific intentions, not {q}")
        }
        (Protocol::HeldOut, None | Some(QueryKind::Vague)) => {
            (PreferenceKind::Implicit, QueryKind::Vague)
        }
        (Protocol::HeldOut, Some(q)) => {
            anyhow::bail!(
                "the held-out scenario is personalised search with vague intentions, not {q}"
            )
        }
        (_, Some(QueryKind::Explicit)) => (PreferenceKind::Explicit, QueryKind::Explicit),
        (_, q) => (PreferenceKind::Implicit, q.unwrap_or(QueryKind::Vague)),
    })
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        // Read by candle's matmul and rayon's pool when they first start; nothing has yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if let Some(why) = args.protocol.missing() {
        anyhow::bail!(
            "protocol {} ({}) is not implemented: {why}",
            args.protocol,
            args.protocol.scenario()
        );
    }
    if args.protocol == Protocol::ZeroShot
        && (args.instructrec.is_none() || args.instructions.is_none())
    {
        anyhow::bail!(
            "zero-shot scores an instruction model tuned on another domain on this one: give \
             --instructrec (the tuned model) and --instructions (built from --data)"
        );
    }
    if args.instructrec.is_some()
        && !matches!(
            args.protocol,
            Protocol::Sequential
                | Protocol::ZeroShot
                | Protocol::ProductSearch
                | Protocol::PersonalisedSearch
        )
    {
        anyhow::bail!(
            "--instructrec is evaluated under the sequential, zero-shot, product-search and \
             personalised-search protocols: its instructions show 1+9 lists, so tournament and \
             hard-negatives have none to read (held-out takes --stage)"
        );
    }
    if (args.protocol == Protocol::HeldOut) == args.stages.is_empty() {
        anyhow::bail!(
            "--stage NAME=DIR gives the held-out protocol its instruction models (one per tuning \
             stage), and only that protocol takes it"
        );
    }
    // Checked before any baseline is fitted, so a stage that saw the held-out scenario costs
    // nothing.
    let stage_name = |stage: &Stage| format!("{} {}", scoring(&args).0, stage.name);
    let stages = args
        .stages
        .iter()
        .map(|stage| check_stage(stage, stage_name(stage)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut prepared = Prepared::load(&args.data)
        .with_context(|| format!("loading the prepared dataset {}", args.data.display()))?;
    let index = match &args.instructions {
        Some(dir) => {
            let index = InstructionIndex::read(
                &dir.join(Split::Test.file_name()),
                PreferenceKind::Implicit,
                IntentionKind::None,
            )?;
            restrict_to_users(&mut prepared, &index.users());
            Some(index)
        }
        None => None,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let catalogue = prepared.dataset.items.len();
    let mut options = FitOptions {
        seed: args.seed,
        time_budget_s: args.time_budget_s,
        max_epochs: args.max_epochs,
        validation_stride: args.validation_stride,
        checkpoint_dir: args.checkpoint_dir.clone(),
        text_encoder: args.text_encoder.clone(),
        search: None,
    };
    // The two-tower model that mined the hard negatives, reused if it is also evaluated.
    let mut miner = None;
    let (settings, mut report, query_cases, lines) = if args.protocol == Protocol::HardNegatives {
        let fitted = fit(Baseline::TwoTower, &prepared, &options)?;
        // The users of the stored 1+9 test lists: the same sample as the sequential protocol.
        let cases = build_cases(
            &prepared,
            Protocol::Sequential,
            Fold::Test,
            Setting::Sampled { size: 10 },
        )?;
        let (lists, sets) = mine_hard_negatives(
            fitted.scorer.as_ref(),
            &cases,
            catalogue,
            9,
            args.seed,
            args.batch_size,
        )?;
        let mut bytes = Vec::new();
        for l in &lists {
            serde_json::to_writer(&mut bytes, l)?;
            bytes.push(b'\n');
        }
        let path = PathBuf::from(format!("{}.candidates.jsonl", args.out.display()));
        write_atomic(&path, &bytes)?;
        let checksum = hex::encode(Sha256::digest(&bytes));
        tracing::info!(path = %path.display(), %checksum, lists = lists.len(), "mined lists");
        let cases = with_candidates(cases, &sets)?;
        let mut report = Report::new(&prepared, args.protocol, command, args.seed, &[])?;
        report.candidates.push(CandidateInfo {
            fold: Fold::Test,
            size: 10,
            cases: cases.len(),
            checksum,
        });
        miner = Some(fitted);
        (
            vec![Setting::Sampled { size: 10 }],
            report,
            Some(vec![cases]),
            None,
        )
    } else if args.protocol.needs_queries() {
        let dir = args.instructions.as_ref().with_context(|| {
            format!(
                "protocol {} reads its queries from --instructions",
                args.protocol
            )
        })?;
        let (preference, query) = search_query(args.protocol, args.query)?;
        let mut lines = read_queries(&dir.join(Split::Test.file_name()), preference, query)?;
        lines.sort_by_key(|l| l.user);
        if let Some(n) = args.max_users {
            lines.truncate(n);
        }
        let list_size = lines[0].candidates.len();
        let mut settings = match args.protocol {
            Protocol::Tournament => vec![
                Setting::Sampled { size: 100 },
                Setting::Tournament {
                    size: 100,
                    groups: 10,
                },
            ],
            _ => vec![Setting::Sampled { size: list_size }],
        };
        if !args.no_full_ranking {
            settings.push(Setting::FullRanking);
        }
        let mut report = Report::new(&prepared, args.protocol, command, args.seed, &[])?;
        report.scenario = match args.protocol {
            Protocol::ProductSearch => "<P0,I2,T3>".into(),
            Protocol::Tournament => format!("<P1,{},T3>, 100 candidates", query.aspect()),
            Protocol::HeldOut => format!("<P1,{},T3> left out of tuning", query.aspect()),
            _ => format!("<P1,{},T3>", query.aspect()),
        };
        let mut cases = Vec::new();
        for &setting in &settings {
            let c = build_query_cases(&prepared, args.protocol, &lines, setting)?;
            if !matches!(setting, Setting::FullRanking) {
                let sets: Vec<CandidateSet> = c.iter().map(as_candidate_set).collect();
                report.candidates.push(CandidateInfo {
                    fold: Fold::Test,
                    size: sets[0].negatives.len() + 1,
                    cases: sets.len(),
                    checksum: candidates_checksum(&sets),
                });
            }
            cases.push(c);
        }
        let excluded_targets = if args.protocol == Protocol::ProductSearch {
            let split = &prepared.item_split;
            split
                .validation
                .iter()
                .chain(&split.test)
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        options.search = Some(SearchTraining {
            instructions: dir.join(Split::Train.file_name()),
            query,
            excluded_targets,
        });
        (settings, report, Some(cases), Some(lines))
    } else {
        let sizes: Vec<usize> = [10, 100]
            .into_iter()
            .filter(|&s| prepared.candidates(Fold::Test, s).is_some())
            .collect();
        let mut settings: Vec<Setting> = sizes
            .iter()
            .map(|&size| Setting::Sampled { size })
            .collect();
        if !args.no_full_ranking {
            settings.push(Setting::FullRanking);
        }
        let lists: Vec<(Fold, usize)> = sizes.iter().map(|&s| (Fold::Test, s)).collect();
        let report = Report::new(&prepared, args.protocol, command, args.seed, &lists)?;
        (settings, report, None, None)
    };
    for &baseline in &args.models {
        tracing::info!(model = %baseline, "fitting");
        let fitted = match miner.take() {
            Some(m) if baseline == Baseline::TwoTower => m,
            other => {
                miner = other;
                fit(baseline, &prepared, &options)?
            }
        };
        let mut results = Vec::new();
        for (i, &setting) in settings.iter().enumerate() {
            let cases = query_cases.as_ref().map(|c| c[i].as_slice());
            let e = evaluate_test(fitted.scorer.as_ref(), &prepared, &args, setting, cases)?;
            if let Some(e) = e {
                tracing::info!(
                    model = %baseline,
                    %setting,
                    hr1 = e.metrics.hr1,
                    ndcg5 = e.metrics.ndcg5,
                    hr10 = e.metrics.hr10,
                    eval_s = e.eval_wall_s,
                    "evaluated"
                );
                results.push(e);
            }
        }
        report.models.push(ModelReport {
            name: baseline.to_string(),
            config: fitted.config,
            config_hash: fitted.config_hash,
            model_hash: fitted.model_hash,
            train_wall_s: fitted.train_wall_s,
            training: fitted.training,
            loaded_from: fitted.loaded_from.map(|p| p.display().to_string()),
            results,
        });
        // Write after every model so a long run leaves a usable partial report.
        report.write(&args.out)?;
    }
    if let (Some(lines), Some(cases)) = (&lines, &query_cases) {
        // Search protocols and held-out: every instruction model (--instructrec, then each
        // stage) answers the query lines' own instructions on the lines' own lists.
        let models = args
            .instructrec
            .iter()
            .map(|dir| (dir.as_path(), scoring(&args).0.to_string(), None))
            .chain(
                args.stages
                    .iter()
                    .zip(stages)
                    .map(|(stage, info)| (stage.dir.as_path(), info.model.clone(), Some(info))),
            );
        for (dir, name, stage) in models {
            let index = InstructionIndex::from_queries(lines);
            let model = evaluate_instruction_model(
                &args,
                dir,
                name,
                index,
                &prepared,
                settings[0],
                Some(&cases[0]),
            )?;
            report.models.push(model);
            report.stages.extend(stage);
            report.write(&args.out)?;
        }
    } else if let (Some(dir), Some(index)) = (&args.instructrec, index) {
        // The instructions show the 1+9 lists; longer lists need the tournament protocol.
        let name = scoring(&args).0.to_string();
        let setting = Setting::Sampled { size: 10 };
        let model = evaluate_instruction_model(&args, dir, name, index, &prepared, setting, None)?;
        report.models.push(model);
        report.write(&args.out)?;
    }
    println!("wrote {}.{{json,md,svg}}", args.out.display());
    Ok(())
}

/// Scores the test fold under `setting`: on `cases` where the protocol built them (from query
/// lines or mined lists), else on the protocol's stored lists.
fn evaluate_test(
    scorer: &dyn Scorer,
    prepared: &Prepared,
    args: &EvalArgs,
    setting: Setting,
    cases: Option<&[EvalCase]>,
) -> anyhow::Result<Option<Evaluation>> {
    match cases {
        Some(cases) => evaluate_cases(
            scorer,
            cases,
            prepared.dataset.items.len(),
            Fold::Test,
            setting,
            args.batch_size,
            args.seed,
        ),
        None => evaluate(
            scorer,
            prepared,
            args.protocol,
            Fold::Test,
            setting,
            args.batch_size,
        ),
    }
}

/// The instruction model's report name, how its candidates' token log-likelihoods become a
/// score, and that rule in words.
fn scoring(args: &EvalArgs) -> (&'static str, Normalisation, &'static str) {
    if args.length_normalise {
        (
            "instructrec-mean",
            Normalisation::Mean,
            "mean token log-likelihood of the candidate title",
        )
    } else {
        (
            "instructrec",
            Normalisation::Sum,
            "summed log-likelihood of the candidate title",
        )
    }
}

/// Loads an instruction-tuned model directory and scores it under `setting`, on `cases` when
/// the protocol built them from query lines, else on the protocol's stored lists.
fn evaluate_instruction_model(
    args: &EvalArgs,
    dir: &Path,
    name: String,
    index: InstructionIndex,
    prepared: &Prepared,
    setting: Setting,
    cases: Option<&[EvalCase]>,
) -> anyhow::Result<ModelReport> {
    let model_config = std::fs::read(dir.join("config.json"))
        .with_context(|| format!("reading {}/config.json", dir.display()))?;
    let model = Seq2Seq::load_hf_dir(dir, &Device::Cpu)
        .with_context(|| format!("loading the model {}", dir.display()))?;
    let limits = TokenLimits {
        source: args.max_source_len,
        target: args.max_target_len,
    };
    let (_, normalisation, score) = scoring(args);
    let scorer = InstructRecScorer::new(&name, model, prepared, index, limits, normalisation);
    let e = evaluate_test(&scorer, prepared, args, setting, cases)?;
    if let Some(e) = &e {
        tracing::info!(model = %name, %setting, hr1 = e.metrics.hr1, ndcg5 = e.metrics.ndcg5, "evaluated");
    }
    Ok(ModelReport {
        name,
        config: serde_json::json!({
            "model": serde_json::from_slice::<serde_json::Value>(&model_config)?,
            "max_source_len": args.max_source_len,
            "max_target_len": args.max_target_len,
            "score": score,
        }),
        config_hash: hex::encode(Sha256::digest(&model_config)),
        model_hash: file_sha256(&dir.join("model.safetensors"))?,
        train_wall_s: training_seconds(dir),
        training: None,
        loaded_from: Some(dir.display().to_string()),
        results: e.into_iter().collect(),
    })
}

/// A case's list in the stored form, for the report's checksum.
fn as_candidate_set(c: &EvalCase) -> CandidateSet {
    CandidateSet {
        user: c.case.user,
        positive: c.positive,
        negatives: c
            .candidates
            .iter()
            .copied()
            .filter(|&i| i != c.positive)
            .collect(),
    }
}

/// Keeps only the candidate lists of `users`, so that every model is scored on the same sample
/// of users the instruction stage wrote test instructions for.
fn restrict_to_users(prepared: &mut Prepared, users: &[UserId]) {
    let keep: HashSet<UserId> = users.iter().copied().collect();
    for lists in prepared.candidates.values_mut() {
        lists.retain(|set| keep.contains(&set.user));
    }
    tracing::info!(
        "evaluating on the {} users with test instructions",
        keep.len()
    );
}

/// Training wall time recorded in a checkpoint by `instructrec train`; 0 for a checkpoint made
/// elsewhere.
fn training_seconds(dir: &std::path::Path) -> f64 {
    std::fs::read(dir.join("trainer_state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["elapsed_secs"].as_f64())
        .unwrap_or(0.0)
}

fn file_sha256(path: &std::path::Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}
