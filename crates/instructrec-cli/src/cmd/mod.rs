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
