//! `instructrec export`: an instruction set as the files transformers' Seq2SeqTrainer reads.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use instructrec_instructions::{export, ExportOptions};

#[derive(Args)]
pub struct ExportArgs {
    /// The instruction folder `instructions build` wrote.
    #[arg(long)]
    instructions: PathBuf,
    /// The prepared dataset the instructions were built from.
    #[arg(long)]
    data: PathBuf,
    /// The export folder: new, empty, or an earlier export, which is replaced.
    #[arg(long)]
    out: PathBuf,
    /// Also write added_tokens.json: the titles our tokenizer gives one token each.
    #[arg(long)]
    item_tokens: bool,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let form = instructrec_train::tokenizer::title_form()?;
    let form = |t: &str| form(t).map_err(|e| e.to_string());
    let options = ExportOptions {
        item_tokens: args.item_tokens.then_some(&form as _),
    };
    let manifest = export(&args.instructions, &args.data, &args.out, &options)?;
    for (name, file) in &manifest.files {
        println!("{name}: {} lines", file.lines);
    }
    println!("manifest: {}", args.out.join("manifest.json").display());
    Ok(())
}
