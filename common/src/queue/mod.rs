//! Message queues: the [`Queue`] trait, its SQS implementation and an in-memory one.
//!
//! A message's life on any queue: sent -> received (invisible for a visibility timeout, receive count + 1) ->
//! either deleted once processed, made visible again later (`set_visibility`), or moved to the dead-letter queue
//! by SQS's redrive policy after too many receives. A message is deleted only after its work is durable.

mod memory;
mod redrive;
mod settle;
mod sqs;

pub use memory::MemoryQueue;
pub use redrive::{DeadLetter, RedriveReport, dead_letters, redrive, redrive_manually};
pub use settle::Inbox;
pub use sqs::SqsQueue;

use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::time::Duration;

/// A message as received.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The queue's id for the message; the same on every delivery of one send.
    pub id: String,
    /// The body.
    pub body: String,
    /// The handle that deletes or delays this delivery.
    pub receipt: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// String attributes, e.g. `reason` on a dead-lettered request.
    pub attributes: BTreeMap<String, String>,
    /// Its message group, on a FIFO queue.
    pub group: Option<String>,
}

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    /// The body.
    pub body: String,
    /// Invisible for this long after sending (at most 15 minutes; not on FIFO queues).
    pub delay: Duration,
    /// FIFO queues drop a second message with the same id within five minutes.
    pub deduplication_id: Option<String>,
    /// FIFO queues deliver a group's messages in order, one in flight at a time; groups do not wait for each other.
    pub group: Option<String>,
    /// String attributes.
    pub attributes: BTreeMap<String, String>,
}

impl OutgoingMessage {
    /// A message with this body.
    pub fn new(body: impl Into<String>) -> Self {
        Self { body: body.into(), ..Self::default() }
    }

    /// Delivered no sooner than `delay` from now.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// With a deduplication id (FIFO queues).
    pub fn deduplicated(mut self, id: impl Into<String>) -> Self {
        self.deduplication_id = Some(id.into());
        self
    }

    /// In this message group (FIFO queues); without one, in the queue's single default group.
    pub fn grouped(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// With a string attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted.
    pub in_flight: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
}

/// A queue operation that failed (after the SDK's own retries).
#[derive(Debug, thiserror::Error)]
#[error("{operation} on queue {queue}: {message}")]
pub struct QueueError {
    /// What was attempted.
    pub operation: &'static str,
    /// Which queue.
    pub queue: String,
    /// What went wrong.
    pub message: String,
    /// Whether trying again can help.
    pub kind: QueueErrorKind,
    /// The error underneath (the SDK's, with its code and request id), when there is one.
    #[source]
    pub source: Option<crate::BoxError>,
}

/// Whether a queue failure may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueErrorKind {
    /// A time-out, a throttle, a server error: the same call may succeed later.
    Transient,
    /// The call cannot succeed as configured (access denied, no such queue, bad credentials, the queue's KMS key
    /// unusable): trying again only waits.
    Permanent,
}

impl QueueError {
    /// A failure described by `message` alone (one that may pass).
    pub fn new(operation: &'static str, queue: impl Into<String>, message: impl Into<String>) -> Self {
        let (queue, message) = (queue.into(), message.into());
        Self { operation, queue, message, kind: QueueErrorKind::Transient, source: None }
    }

    /// True when trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        self.kind == QueueErrorKind::Permanent
    }
}

/// A message queue.
pub trait Queue: Send + Sync {
    /// A name for logs.
    fn name(&self) -> &str;
    /// Sends a message; returns the queue's id for it.
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<String, QueueError>>;
    /// Receives up to `max` messages, waiting up to `wait` for the first (long poll).
    fn receive(&self, max: u32, wait: Duration) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>>;
    /// Deletes a processed message.
    fn delete<'a>(&'a self, receipt: &'a str) -> BoxFuture<'a, Result<(), QueueError>>;
    /// Hides a received message for `timeout` from now (zero: visible at once).
    fn set_visibility<'a>(&'a self, receipt: &'a str, timeout: Duration) -> BoxFuture<'a, Result<(), QueueError>>;
    /// How many messages the queue holds (approximate on SQS).
    fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, QueueError>>;
}
