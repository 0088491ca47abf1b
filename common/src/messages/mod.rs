//! The three message contracts, in one place: export requests (requests queue), job messages (jobs queue) and
//! completion messages (lake queue). Each carries a `version`; a reader refuses versions it does not know rather
//! than guessing. Within a version, job and completion messages (and the metadata JSON) only gain fields, with
//! defaults, and readers ignore fields they do not know: a rolling deploy or a rollback runs two releases side by
//! side. Requests, typed by people, refuse unknown fields (a misspelt field must not change an export silently).
//! docs/messages.md shows an example of each.

mod completion;
mod job;
mod request;

pub use completion::{Checksum, CompletionMessage, DeletedColumn, FileColumn, FileSchema, metadata_key};
pub use job::{
    JobFinished, JobKind, JobMessage, JobsQueueMessage, MAX_REQUESTS_AGAIN, NOTIFY_ORIGIN, ORIGIN_ATTRIBUTE,
    UnreadableJobsMessage, Window, again_generation,
};
pub use request::{
    CLOCK_SKEW, ExactWindow, ExportFrom, ExportRequest, InvalidRequest, MAX_REQUEST_ID, ends_in_the_future,
};

/// The contract version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;
