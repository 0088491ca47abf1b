//! Zuora AQuA (`/v1/batch-query`) client.
//!
//! Every call goes through [`ZuoraClient`], which owns the OAuth token cache and the retry policy. Responses are
//! decoded by the tolerant types in [`types`]: Zuora sends the same field as a string or a number depending on the
//! endpoint and the year, and a client that insists on one shape breaks. Errors say whether they are worth
//! retrying ([`ZuoraError::is_retryable`]), so callers decide between "put it back on the queue" and "dead-letter it".

mod client;
mod config;
mod describe;
mod error;
mod time;
mod token;
pub mod types;

pub use client::{FileStream, ZuoraClient};
pub use config::{DataCenter, RetryPolicy, ZUORA_DOMAIN, ZuoraConfig, is_zuora_url};
pub use describe::{Described, DescribedField, UNKNOWN_TYPE, is_deleted_flag, relations_named, typed_columns};
pub use error::ZuoraError;
pub use time::{parse_incremental_time, render_incremental_time, wall_clock_to_utc};
pub use types::{
    Batch, BatchQueryRequest, BatchStatus, DeletedFormat, DeletedSpec, Job, JobStatus, Phase, Query, ZuoraTime,
    is_zuora_id,
};

/// Zuora keeps deleted rows this many days: an increment whose window starts earlier cannot report the deletions
/// older than that (Zuora's AQuA documentation, "Export deleted data").
pub const DELETED_ROWS_KEPT_DAYS: i64 = 30;

/// A stateful session no job used for this many days starts again: its next job is a full load of every query
/// (Zuora's AQuA documentation, "Stateful AQuA").
pub const SESSION_RESET_IDLE_DAYS: i64 = 180;
