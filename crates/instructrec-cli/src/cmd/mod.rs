pub mod data;
pub mod eval;
pub mod instructions;
pub mod recommend;
pub mod run;
pub mod serve;
pub mod train;
