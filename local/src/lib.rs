//! The project on one machine: the quick start (a whole export in one process, no AWS account, no Zuora tenant)
//! and the reference lake merger.
//!
//! # Layout
//! - [`quickstart`]: simulator, in-memory queues and a local-directory lake, with the real producer and
//!   consumer services on them; a first export, changes, an increment and a backfill, then checks and a summary.
//! - [`lake`]: a lake read as its ETL reads it: completion messages, files, the merge (latest version per Id,
//!   deleted rows dropped), CSV out, differences.
//!
//! Binaries: `local-export` (the quick start) and `lake-merge` (merge or compare a lake, local or on S3).

pub mod lake;
pub mod quickstart;
