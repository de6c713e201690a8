pub mod data;
pub mod eval;
pub mod instructions;
pub mod train;
pub mod recommend;
pub mod serve;
