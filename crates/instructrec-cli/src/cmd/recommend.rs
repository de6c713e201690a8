//! `instructrec recommend`: answer one instruction (plain or JSON), or talk in a terminal loop.

use clap::Args;
use instructrec_serve::{interactive, RecommendRequest, UserRef};

use super::serve::ModelData;

#[derive(Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    served: ModelData,
    /// The user's id in the source data (or `#N` for the dense id N); their history becomes
    /// the implicit preference.
    #[arg(long)]
    user: Option<UserRef>,
    /// What the user wants. With it, answers once; without it, starts the interactive loop.
    #[arg(long)]
    instruction: Option<String>,
    /// Stated taste, in the user's words.
    #[arg(long)]
    preference: Option<String>,
    /// The situation (time, place, device).
    #[arg(long)]
    context: Option<String>,
    /// Print the answer as JSON (with --instruction).
    #[arg(long)]
    json: bool,
    /// How many items to show.
    #[arg(short, default_value_t = instructrec_serve::DEFAULT_K)]
    k: usize,
}

pub fn run(args: RecommendArgs) -> anyhow::Result<()> {
    let rec = args.served.load()?;
    let user = args.user;
    if args.instruction.is_none() && args.preference.is_none() && !args.json {
        let stdin = std::io::stdin();
        return Ok(interactive::run(
            &rec,
            &mut stdin.lock(),
            &mut std::io::stdout().lock(),
            user,
            args.k,
        )?);
    }
    let request = RecommendRequest {
        user,
        intention: args.instruction,
        preference: args.preference,
        context: args.context,
        k: Some(args.k),
        ..RecommendRequest::default()
    };
    let answer = rec.recommend(&request)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        interactive::write_response(&mut std::io::stdout().lock(), &answer)?;
    }
    Ok(())
}
