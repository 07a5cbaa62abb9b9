//! The v6build engine: recipe model, DAG, execution and release writer.

pub mod recipe;
pub mod ops;
