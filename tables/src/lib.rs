//! The lake's side as tables: each published file applied, once, to its object's merged table (docs/tables.md).

pub mod cli;
pub mod delta;
pub mod error;
pub mod glue;
pub mod maintenance;
pub mod rows;
pub mod s3;
pub mod service;
pub mod source;
