pub mod data;
pub mod instructions;
