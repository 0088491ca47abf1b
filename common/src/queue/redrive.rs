//! Moving a dead-letter queue's messages back to their source queue.

use super::{OutgoingMessage, Queue, QueueError, SqsQueue};
use std::time::Duration;
use tracing::{info, warn};

/// Attributes set when a message is dead-lettered by this project; dropped when it goes back.
const DEAD_LETTER_ATTRIBUTES: &[&str] = &["reason", "error"];

/// What a redrive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveReport {
    /// SQS's own message-move task was started; it moves about `messages` in the background.
    Native {
        /// The task's handle, for `ListMessageMoveTasks` / `CancelMessageMoveTask`.
        task_handle: String,
        /// Messages in the dead-letter queue when the task started.
        messages: u64,
    },
    /// The messages were moved one by one (servers without the move task, such as moto).
    Manual {
        /// Messages moved.
        moved: u64,
    },
}

/// Moves every message of `dlq` back to `source`: with SQS's native move task where the server has it, else one
/// by one (receive, send, delete: a crash in between leaves a duplicate, never a loss).
pub async fn redrive(dlq: &SqsQueue, source: &SqsQueue) -> Result<RedriveReport, QueueError> {
    let messages = dlq.depth().await?.visible;
    let native = async {
        let (dlq_arn, source_arn) = (dlq.arn().await?, source.arn().await?);
        let out = dlq
            .client()
            .start_message_move_task()
            .source_arn(dlq_arn)
            .destination_arn(source_arn)
            .send()
            .await
            .map_err(|e| dlq.error("StartMessageMoveTask", e))?;
        Ok::<_, QueueError>(out.task_handle().unwrap_or_default().to_owned())
    };
    match native.await {
        Ok(task_handle) => {
            info!(dlq = dlq.name(), source = source.name(), messages, "started SQS message move task");
            Ok(RedriveReport::Native { task_handle, messages })
        }
        Err(err) => {
            warn!(dlq = dlq.name(), error = %err, "no native message move task here, moving messages one by one");
            Ok(RedriveReport::Manual { moved: redrive_manually(dlq, source).await? })
        }
    }
}

/// Moves, one by one, the messages the dead-letter queue holds when it starts (like SQS's move task): a message
/// that fails again at once and comes back is left for the next redrive, so a redrive always ends. Each keeps its
/// FIFO message group (a completion's object: the table writer applies an object's files in their order) and its
/// attributes but the dead-letter reason.
pub async fn redrive_manually(dlq: &dyn Queue, source: &dyn Queue) -> Result<u64, QueueError> {
    let depth = dlq.depth().await?;
    let limit = depth.visible + depth.in_flight;
    let mut moved = 0;
    while moved < limit {
        let batch = dlq.receive((limit - moved).min(10) as u32, Duration::from_secs(1)).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let mut outgoing = OutgoingMessage::new(message.body).deduplicated(format!("redrive-{}", message.id));
            outgoing.group = message.group;
            outgoing.attributes =
                message.attributes.into_iter().filter(|(k, _)| !DEAD_LETTER_ATTRIBUTES.contains(&k.as_str())).collect();
            source.send(outgoing).await?;
            dlq.delete(&message.receipt).await?;
            moved += 1;
        }
    }
    Ok(moved)
}

/// A message of a dead-letter queue, as `redrive --dry-run` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The queue's id for it.
    pub id: String,
    /// Why it is there: the `reason` this project set when it dead-lettered it, or SQS's own move after too many
    /// receives (then its receive count says how many).
    pub reason: String,
    /// Times it has been received, this look included.
    pub receive_count: u32,
    /// The body.
    pub body: String,
}

/// The messages a dead-letter queue holds, looked at and left in place: each is received once and made visible
/// again at once, so a redrive or another look afterwards finds them all.
pub async fn dead_letters(dlq: &dyn Queue) -> Result<Vec<DeadLetter>, QueueError> {
    let depth = dlq.depth().await?;
    let limit = depth.visible + depth.in_flight;
    let mut seen = Vec::new();
    let mut receipts = Vec::new();
    while (seen.len() as u64) < limit {
        let batch = dlq.receive((limit - seen.len() as u64).min(10) as u32, Duration::from_secs(1)).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let reason = message.attributes.get("reason").cloned().unwrap_or_else(|| {
                "no reason given: moved here by the queue's redrive policy after too many receives".to_owned()
            });
            receipts.push(message.receipt);
            seen.push(DeadLetter { id: message.id, reason, receive_count: message.receive_count, body: message.body });
        }
    }
    for receipt in &receipts {
        dlq.set_visibility(receipt, Duration::ZERO).await?;
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{MemoryQueue, QueueDepth, ReceivedMessage};
    use futures::FutureExt;
    use futures::future::BoxFuture;
    use std::sync::Arc;

    /// A source queue whose consumer fails every message at once: what is sent to it lands in the DLQ again.
    /// It refuses sends past 100, so a redrive that would never end fails instead.
    struct FailingAtOnce {
        dlq: Arc<MemoryQueue>,
        sent: std::sync::atomic::AtomicU32,
    }

    impl Queue for FailingAtOnce {
        fn name(&self) -> &str {
            "jobs"
        }
        fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<String, QueueError>> {
            if self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 100 {
                let error = QueueError::new("SendMessage", "jobs", "endless");
                return async { Err(error) }.boxed();
            }
            self.dlq.send(message)
        }
        fn receive(&self, _: u32, _: Duration) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
            async { Ok(Vec::new()) }.boxed()
        }
        fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
            async { Ok(()) }.boxed()
        }
        fn set_visibility<'a>(&'a self, _: &'a str, _: Duration) -> BoxFuture<'a, Result<(), QueueError>> {
            async { Ok(()) }.boxed()
        }
        fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, QueueError>> {
            async { Ok(QueueDepth::default()) }.boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_redrive_of_messages_that_fail_again_at_once_ends_after_moving_each_once() {
        let dlq = Arc::new(MemoryQueue::new("jobs-dlq", Duration::from_secs(30)));
        for body in ["a", "b", "c"] {
            dlq.send(OutgoingMessage::new(body).attribute("reason", "Zuora job aborted")).await.unwrap();
        }
        let source = FailingAtOnce { dlq: dlq.clone(), sent: Default::default() };
        let moved = redrive_manually(&*dlq, &source).await.expect("the redrive ends");
        assert_eq!(moved, 3);
        assert_eq!(dlq.depth().await.unwrap().visible, 3, "each message is back in the DLQ, for the next redrive");
    }

    #[tokio::test(start_paused = true)]
    async fn a_redrive_keeps_each_messages_fifo_group_and_drops_only_the_reason() {
        let dlq = MemoryQueue::new("lake-dlq.fifo", Duration::from_secs(30));
        let source = MemoryQueue::new("lake.fifo", Duration::from_secs(30));
        for (body, group) in [("a1", "Account"), ("i1", "Invoice"), ("a2", "Account")] {
            let message = OutgoingMessage::new(body).grouped(group).deduplicated(body);
            dlq.send(message.attribute("reason", "refused").attribute("kind", "completion")).await.unwrap();
        }
        assert_eq!(redrive_manually(&dlq, &source).await.unwrap(), 3);
        let back = source.receive(10, Duration::ZERO).await.unwrap();
        let groups: Vec<(&str, Option<&str>)> = back.iter().map(|m| (m.body.as_str(), m.group.as_deref())).collect();
        let account: Vec<&str> = groups.iter().filter(|(_, g)| *g == Some("Account")).map(|(b, _)| *b).collect();
        assert_eq!(account, ["a1", "a2"], "in their group, in their order: {groups:?}");
        assert!(groups.contains(&("i1", Some("Invoice"))), "{groups:?}");
        assert!(back.iter().all(|m| !m.attributes.contains_key("reason") && m.attributes["kind"] == "completion"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_look_at_the_dead_letters_lists_each_with_its_reason_and_leaves_them_all_in_place() {
        let dlq = MemoryQueue::new("requests-dlq", Duration::from_secs(30));
        dlq.send(OutgoingMessage::new("a").attribute("reason", "objects: Acount is not in the catalogue"))
            .await
            .unwrap();
        dlq.send(OutgoingMessage::new("b")).await.unwrap();
        let mut seen = dead_letters(&dlq).await.unwrap();
        seen.sort_by(|x, y| x.body.cmp(&y.body));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].reason, "objects: Acount is not in the catalogue");
        assert!(seen[1].reason.contains("redrive policy"), "{}", seen[1].reason);
        assert_eq!(dlq.depth().await.unwrap().visible, 2, "both visible again at once");
        assert_eq!(dead_letters(&dlq).await.unwrap().len(), 2, "a second look sees them all");
    }
}
