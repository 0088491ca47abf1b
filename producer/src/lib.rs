//! The producer: export requests become Zuora AQuA jobs on the jobs queue, and no job Zuora runs is forgotten.
//!
//! # Layout
//! - [`audit`]: `producer audit`, the lake compared with Zuora row by row, and its repair.
//! - [`increment`]: the session's increment key, and the design note on why no increment is lost.
//! - [`plan`]: a request's jobs (increment, backfill, full-export windows); pure.
//! - [`service`]: serving requests (write-ahead ledger, idempotent submit, enqueue) and reconciliation.
//! - [`status`]: the freshness report of `producer status`.
//! - [`cli`]: the command line and the wiring of real services.

pub mod audit;
pub mod cli;
pub mod increment;
pub mod plan;
pub mod service;
pub mod status;
