//! Settling a received message, the same way in every service: deleted once its work is durable
//! ([`Inbox::done`]), moved to the dead-letter queue with its reason ([`Inbox::dead_letter`]), or sent again to come
//! back after a delay ([`Inbox::again_after`]).

use super::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use std::sync::Arc;
use std::time::Duration;

/// A queue a service receives from, and its dead-letter queue.
#[derive(Clone)]
pub struct Inbox {
    /// Where the messages come from.
    pub queue: Arc<dyn Queue>,
    /// Where a message that cannot be served goes, with its reason.
    pub dead_letters: Arc<dyn Queue>,
}

impl Inbox {
    /// The inbox of `queue`, whose dead letters go to `dead_letters`.
    pub fn new(queue: Arc<dyn Queue>, dead_letters: Arc<dyn Queue>) -> Self {
        Self { queue, dead_letters }
    }

    /// The message's work is durable: it is deleted.
    pub async fn done(&self, message: &ReceivedMessage) -> Result<(), QueueError> {
        self.queue.delete(&message.receipt).await
    }

    /// Moves `message` to the dead-letter queue with `reason` (the attributes `reason` and `source_message_id`), then
    /// deletes it. From a FIFO queue (whose dead-letter queue is FIFO too) it keeps its message group and is
    /// deduplicated by its message id: moving it again after a crash between the send and the delete adds nothing.
    pub async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        let mut letter = OutgoingMessage::new(message.body.clone())
            .attribute("reason", reason)
            .attribute("source_message_id", message.id.clone());
        if let Some(group) = &message.group {
            letter = letter.grouped(group).deduplicated(&message.id);
        }
        self.dead_letters.send(letter).await?;
        self.done(message).await
    }

    /// Sends `again` (the message as it goes on: its body and attributes, which may differ from the received
    /// one's) to come back after `delay`, then deletes `message`. A new message rather than a longer visibility:
    /// waiting does not use up the receive count after which the queue dead-letters a message.
    pub async fn again_after(
        &self,
        message: &ReceivedMessage,
        again: OutgoingMessage,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.queue.send(again.delayed(delay)).await?;
        self.done(message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::MemoryQueue;

    fn inbox(name: &str) -> (Inbox, Arc<MemoryQueue>, Arc<MemoryQueue>) {
        let queue = Arc::new(MemoryQueue::new(format!("{name}{}", fifo_suffix(name)), Duration::from_secs(30)));
        let dlq = Arc::new(MemoryQueue::new(format!("{name}-dlq{}", fifo_suffix(name)), Duration::from_secs(30)));
        (Inbox::new(queue.clone(), dlq.clone()), queue, dlq)
    }

    fn fifo_suffix(name: &str) -> &'static str {
        if name == "tables" { ".fifo" } else { "" }
    }

    #[tokio::test]
    async fn a_dead_letter_keeps_its_body_and_says_why_and_leaves_the_queue() {
        let (inbox, queue, dlq) = inbox("requests");
        queue.send(OutgoingMessage::new("{}")).await.unwrap();
        let received = queue.receive(1, Duration::ZERO).await.unwrap().pop().unwrap();
        inbox.dead_letter(&received, "not a request").await.unwrap();
        let dead = dlq.receive(1, Duration::ZERO).await.unwrap().pop().unwrap();
        assert_eq!((dead.body.as_str(), dead.attributes["reason"].as_str()), ("{}", "not a request"));
        assert_eq!(dead.attributes["source_message_id"], received.id);
        assert_eq!(queue.depth().await.unwrap(), Default::default());
    }

    #[tokio::test]
    async fn a_fifo_dead_letter_keeps_its_group_and_moving_it_again_after_a_crash_adds_nothing() {
        let (inbox, queue, dlq) = inbox("tables");
        queue.send(OutgoingMessage::new("x").grouped("Account").deduplicated("d")).await.unwrap();
        let received = queue.receive(1, Duration::ZERO).await.unwrap().pop().unwrap();
        assert_eq!(received.group.as_deref(), Some("Account"));
        // A process that sent the letter and died before the delete, then the message moved again.
        dlq.send(OutgoingMessage::new("x").grouped("Account").deduplicated(&received.id)).await.unwrap();
        inbox.dead_letter(&received, "refused").await.unwrap();
        let dead = dlq.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(dead.len(), 1, "the second move is deduplicated");
        assert_eq!(dead[0].group.as_deref(), Some("Account"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_sent_again_comes_back_after_its_delay_as_a_new_message() {
        let (inbox, queue, _) = inbox("jobs");
        queue.send(OutgoingMessage::new("job")).await.unwrap();
        let received = queue.receive(1, Duration::ZERO).await.unwrap().pop().unwrap();
        let again = OutgoingMessage::new(received.body.clone()).attribute("polls", "1");
        inbox.again_after(&received, again, Duration::from_secs(60)).await.unwrap();
        assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty(), "not before its delay");
        tokio::time::advance(Duration::from_secs(61)).await;
        let back = queue.receive(1, Duration::ZERO).await.unwrap().pop().unwrap();
        assert_eq!((back.receive_count, back.attributes["polls"].as_str()), (1, "1"));
        assert_ne!(back.id, received.id);
    }
}
