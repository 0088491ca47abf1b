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

/// Moves messages one by one until the dead-letter queue answers empty.
pub async fn redrive_manually(dlq: &dyn Queue, source: &dyn Queue) -> Result<u64, QueueError> {
    let mut moved = 0;
    loop {
        let batch = dlq.receive(10, Duration::from_secs(1)).await?;
        if batch.is_empty() {
            return Ok(moved);
        }
        for message in batch {
            let mut outgoing = OutgoingMessage::new(message.body).deduplicated(format!("redrive-{}", message.id));
            outgoing.attributes =
                message.attributes.into_iter().filter(|(k, _)| !DEAD_LETTER_ATTRIBUTES.contains(&k.as_str())).collect();
            source.send(outgoing).await?;
            dlq.delete(&message.receipt).await?;
            moved += 1;
        }
    }
}
