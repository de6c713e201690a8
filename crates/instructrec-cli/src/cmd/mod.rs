pub mod data;
pub mod eval;
pub mod instructions;
pub mod train;
