//! The consumer: finished AQuA jobs' files are streamed into S3, verified, described and announced to the lake.
//!
//! # Layout
//! - [`relay`]: the streaming relay (HTTP body -> record count -> S3 multipart) and its part pool.

pub mod relay;
