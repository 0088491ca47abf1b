//! The consumer: finished AQuA jobs' files are streamed into S3, verified, described and announced to the lake.
//!
//! # Layout
//! - [`relay`]: the streaming relay (HTTP body -> record count -> S3 multipart) and its part pool.
//! - [`verify`]: what a downloaded file must look like before it is published.
//! - [`worker`]: one job message start to finish: wait, or export every batch, then settle the message.
//! - [`batch`]: one batch through its states: planned -> relayed and verified -> published.
//! - [`error`]: what can go wrong, and [`error::classify`], which alone decides what follows.
//! - [`publish`]: one verified file published, in the order that makes a crash at any step harmless.
//! - [`legacy`]: the fixed legacy keys, kept a copy of each object's latest increment.
//! - [`service`]: the loop: jobs in flight, visibility heartbeats, graceful shutdown.
//! - [`protection`]: ECS task scale-in protection while jobs are in flight.
//! - [`cli`]: the command line and the wiring of real services.

mod batch;
pub mod cli;
pub mod error;
mod legacy;
pub mod protection;
mod publish;
pub mod relay;
pub mod schema;
pub mod service;
pub mod verify;
pub mod worker;
