//! Shared building blocks of the Zuora to data-lake exporter.
//!
//! # Layout
//! - [`zuora`]: the AQuA client (OAuth, submit, poll, cancel, stream a file), its tolerant wire types, its typed
//!   errors and the `incrementalTime` rendering rules.
//! - [`catalogue`]: the list of exported objects (name, ZOQL, deleted column, S3 target), read from TOML.
//! - [`secret`]: a string that never shows up in logs or `Debug` output.
#![warn(missing_docs)]

pub mod aws;
pub mod catalogue;
pub mod config;
pub mod csv_count;
pub mod ledger;
pub mod messages;
pub mod queue;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod zuora;
