//! Shared building blocks of the Zuora to data-lake exporter.
//!
//! # Layout
//! - [`zuora`]: the AQuA client (OAuth, submit, poll, cancel, stream a file), its tolerant wire types, its typed
//!   errors and the `incrementalTime` rendering rules.
//! - [`catalogue`]: the list of exported objects (name, ZOQL, deleted column, S3 target), read from TOML;
//!   [`zoql`]: the clauses of its queries, read one way wherever a query is rewritten.
//! - [`config`]: the deployment's configuration file, shared by both binaries.
//! - [`messages`]: the three message contracts (export request, job, completion).
//! - [`queue`], [`store`], [`aws`]: SQS and S3 behind small traits (with in-memory and local-directory twins),
//!   and the SDK set-up; [`services`]: the ones a configuration names, built once.
//! - [`ledger`]: the producer's durable record of requests and jobs.
//! - [`marks`]: the published marks, one per file, written once by the consumer; the latest per object.
//! - [`csv_count`]: quote-aware record counting on streaming bytes.
//! - [`merge`]: the reference lake merger (latest version per Id wins, deleted rows dropped).
//! - [`exit`]: the exit codes of both binaries, from what failed.
//! - [`secret`], [`shutdown`], [`logging`], [`clock`]: secrets that never print, the stop signal, the log set-up
//!   (JSON in containers), and where "now" comes from; [`metrics`]: CloudWatch embedded-metric-format lines.
#![warn(missing_docs)]

/// An error kept as the source of another (an SDK's, with all it says).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub mod aws;
pub mod catalogue;
pub mod clock;
pub mod config;
pub mod csv_count;
pub mod exit;
pub mod ledger;
pub mod logging;
pub mod marks;
pub mod merge;
pub mod messages;
pub mod metrics;
pub mod queue;
mod records;
pub mod secret;
pub mod services;
pub mod shutdown;
pub mod store;
pub mod zoql;
pub mod zuora;

/// What `--version` prints: the crate version, the commit built and the fingerprint of the built-in catalogues
/// (set by the binaries' build script, common/build/version.rs).
#[macro_export]
macro_rules! version {
    () => {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (commit ",
            env!("ZLE_GIT_COMMIT"),
            ", catalogues ",
            env!("ZLE_CATALOGUES"),
            ")"
        )
    };
}
