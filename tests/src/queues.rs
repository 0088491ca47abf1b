//! A queue that cannot be reached: every call fails, as when the network or the queue is gone.

use common::queue::{OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage};
use futures::future::BoxFuture;
use std::time::Duration;

/// Fails every call with a transient error naming the operation.
pub struct Unreachable;

impl Unreachable {
    fn fail<'a, T: Send + 'a>(operation: &'static str) -> BoxFuture<'a, Result<T, QueueError>> {
        Box::pin(async move { Err(QueueError::new(operation, "unreachable", "the queue cannot be reached")) })
    }
}

impl Queue for Unreachable {
    fn name(&self) -> &str {
        "unreachable"
    }
    fn send(&self, _: OutgoingMessage) -> BoxFuture<'_, Result<String, QueueError>> {
        Self::fail("SendMessage")
    }
    fn receive(&self, _: u32, _: Duration) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        Self::fail("ReceiveMessage")
    }
    fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        Self::fail("DeleteMessage")
    }
    fn set_visibility<'a>(&'a self, _: &'a str, _: Duration) -> BoxFuture<'a, Result<(), QueueError>> {
        Self::fail("ChangeMessageVisibility")
    }
    fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, QueueError>> {
        Self::fail("GetQueueAttributes")
    }
}
