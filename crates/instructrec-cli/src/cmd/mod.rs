pub mod data;
pub mod eval;
pub mod export;
pub mod instructions;
pub mod pretrain;
pub mod recommend;
pub mod run;
pub mod scenarios;
pub mod serve;
pub mod setup;
pub mod train;

/// Every duration flag takes the same human forms (`90s`, `20m`, `1h 30m`).
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} in {s:?}: give a duration such as 90s, 20m or 1h 30m"))
}

/// Where a scoring model runs and the precision of its weights (eval, recommend, serve).
#[derive(clap::Args)]
pub struct PlacementArgs {
    /// Run the model on cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: instructrec_model::DeviceSpec,
    /// The weights' precision: f32, or bf16 (half the memory; scores within about 1%).
    #[arg(long = "dtype", default_value = "f32")]
    precision: instructrec_model::Precision,
}

impl PlacementArgs {
    pub fn placement(&self) -> instructrec_model::Placement {
        instructrec_model::Placement {
            device: self.device,
            precision: self.precision,
        }
    }
}
