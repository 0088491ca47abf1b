//! [`Queue`] in process memory, with SQS's semantics where the exporter relies on them: visibility timeouts,
//! delays, receive counts with a dead-letter queue after `max_receives`, and, on a FIFO queue (a name ending in
//! `.fifo`), deduplication for five minutes and message groups: a group's messages are received in order, and none
//! while an earlier one of the group is in flight; other groups do not wait. A FIFO send without a group or a
//! deduplication id is refused, as SQS refuses it on a queue without content-based deduplication.
//! Used by the quick start (producer and consumers in one process) and by unit tests.

use super::{OutgoingMessage, Queue, QueueDepth, QueueError, QueueErrorKind, ReceivedMessage};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// SQS forgets a FIFO deduplication id after five minutes.
const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(300);

/// A queue in memory.
pub struct MemoryQueue {
    name: String,
    visibility: Duration,
    dead_letter: Option<(Arc<MemoryQueue>, u32)>,
    state: Mutex<State>,
    arrived: Notify,
}

#[derive(Default)]
struct State {
    next_id: u64,
    messages: Vec<Stored>,
    deduplicated: HashMap<String, Instant>,
}

struct Stored {
    id: String,
    /// The message group (FIFO queues; `None` is the queue's default group).
    group: Option<String>,
    body: String,
    attributes: BTreeMap<String, String>,
    visible_at: Instant,
    receive_count: u32,
    receipt: Option<String>,
}

impl MemoryQueue {
    /// A queue whose received messages stay invisible for `visibility` (SQS's default is 30 seconds). A name
    /// ending in `.fifo` makes it deduplicate by deduplication id.
    pub fn new(name: impl Into<String>, visibility: Duration) -> Self {
        Self { name: name.into(), visibility, dead_letter: None, state: Mutex::default(), arrived: Notify::new() }
    }

    /// Messages received `max_receives` times without being deleted move to `dlq` (SQS's redrive policy).
    pub fn with_dead_letter(mut self, dlq: Arc<MemoryQueue>, max_receives: u32) -> Self {
        self.dead_letter = Some((dlq, max_receives));
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }

    fn push(&self, message: OutgoingMessage) -> String {
        let OutgoingMessage { body, attributes, delay, group, .. } = message;
        let mut state = self.state();
        state.next_id += 1;
        let id = format!("{}-{}", self.name, state.next_id);
        let stored = Stored {
            id: id.clone(),
            group,
            body,
            attributes,
            visible_at: Instant::now() + delay,
            receive_count: 0,
            receipt: None,
        };
        state.messages.push(stored);
        drop(state);
        self.arrived.notify_waiters();
        id
    }

    /// Takes what is visible now; moves over-received messages to the dead-letter queue.
    fn take_visible(&self, max: usize) -> (Vec<ReceivedMessage>, Option<Instant>) {
        let now = Instant::now();
        let mut state = self.state();
        let mut taken = Vec::new();
        let mut dead = Vec::new();
        // FIFO: the groups with an earlier message that cannot be received now (in flight, or delayed).
        let mut held: HashSet<Option<String>> = HashSet::new();
        let fifo = self.is_fifo();
        let mut index = 0;
        while index < state.messages.len() && taken.len() < max {
            let stored = &mut state.messages[index];
            if fifo && held.contains(&stored.group) {
                index += 1;
                continue;
            }
            if stored.visible_at > now {
                if fifo {
                    held.insert(stored.group.clone());
                }
                index += 1;
                continue;
            }
            if let Some((_, max_receives)) = &self.dead_letter
                && stored.receive_count >= *max_receives
            {
                dead.push(state.messages.remove(index));
                continue;
            }
            stored.receive_count += 1;
            stored.visible_at = now + self.visibility;
            let receipt = format!("{}#{}", stored.id, stored.receive_count);
            stored.receipt = Some(receipt.clone());
            taken.push(ReceivedMessage {
                id: stored.id.clone(),
                body: stored.body.clone(),
                receipt,
                receive_count: stored.receive_count,
                attributes: stored.attributes.clone(),
                group: if fifo { stored.group.clone() } else { None },
            });
            index += 1;
        }
        let next = state.messages.iter().map(|m| m.visible_at).min();
        drop(state);
        if let Some((dlq, _)) = &self.dead_letter {
            for message in dead {
                let mut again = OutgoingMessage::new(message.body);
                again.attributes = message.attributes;
                again.group = message.group;
                dlq.push(again);
            }
        }
        (taken, next)
    }
}

impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<String, QueueError>> {
        async move {
            // As SQS answers a FIFO queue without content-based deduplication (the exporter's are all so).
            if self.is_fifo() && (message.group.is_none() || message.deduplication_id.is_none()) {
                let missing = if message.group.is_none() { "MessageGroupId" } else { "MessageDeduplicationId" };
                let mut refused = QueueError::new("SendMessage", &self.name, format!("a FIFO queue needs a {missing}"));
                refused.kind = QueueErrorKind::Permanent;
                return Err(refused);
            }
            if self.is_fifo()
                && let Some(dedup) = &message.deduplication_id
            {
                let now = Instant::now();
                let mut state = self.state();
                state.deduplicated.retain(|_, at| now.duration_since(*at) < DEDUPLICATION_WINDOW);
                if state.deduplicated.contains_key(dedup) {
                    return Ok(format!("{}-duplicate", self.name));
                }
                state.deduplicated.insert(dedup.clone(), now);
            }
            Ok(self.push(message))
        }
        .boxed()
    }

    fn receive(&self, max: u32, wait: Duration) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        async move {
            let deadline = Instant::now() + wait;
            loop {
                let arrived = self.arrived.notified();
                let (taken, next) = self.take_visible(max.max(1) as usize);
                if !taken.is_empty() || Instant::now() >= deadline {
                    return Ok(taken);
                }
                let wake = next.map_or(deadline, |next| next.min(deadline));
                tokio::select! {
                    () = arrived => {}
                    () = tokio::time::sleep_until(wake) => {}
                }
            }
        }
        .boxed()
    }

    fn delete<'a>(&'a self, receipt: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        async move {
            self.state().messages.retain(|m| m.receipt.as_deref() != Some(receipt));
            Ok(())
        }
        .boxed()
    }

    fn set_visibility<'a>(&'a self, receipt: &'a str, timeout: Duration) -> BoxFuture<'a, Result<(), QueueError>> {
        async move {
            let mut state = self.state();
            let Some(message) = state.messages.iter_mut().find(|m| m.receipt.as_deref() == Some(receipt)) else {
                return Err(QueueError::new(
                    "ChangeMessageVisibility",
                    self.name.clone(),
                    "the receipt is no longer valid",
                ));
            };
            message.visible_at = Instant::now() + timeout;
            drop(state);
            self.arrived.notify_waiters();
            Ok(())
        }
        .boxed()
    }

    fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, QueueError>> {
        async move {
            let now = Instant::now();
            let mut depth = QueueDepth::default();
            for message in &self.state().messages {
                match (message.visible_at <= now, message.receive_count > 0) {
                    (true, _) => depth.visible += 1,
                    (false, true) => depth.in_flight += 1,
                    (false, false) => depth.delayed += 1,
                }
            }
            Ok(depth)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn visibility_delays_dead_letters_and_deduplication_follow_sqs() {
        let dlq = Arc::new(MemoryQueue::new("jobs-dlq", Duration::from_secs(30)));
        let queue = MemoryQueue::new("jobs", Duration::from_secs(30)).with_dead_letter(dlq.clone(), 2);
        queue.send(OutgoingMessage::new("a").delayed(Duration::from_secs(10))).await.unwrap();
        assert_eq!(queue.depth().await.unwrap().delayed, 1);
        assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty(), "still delayed");
        let first = queue.receive(10, Duration::from_secs(20)).await.unwrap();
        assert_eq!((first.len(), first[0].receive_count), (1, 1), "arrives when its delay passes");
        assert_eq!(queue.depth().await.unwrap().in_flight, 1);
        let second = queue.receive(10, Duration::from_secs(40)).await.unwrap();
        assert_eq!(second[0].receive_count, 2, "visible again after the visibility timeout");
        queue.set_visibility(&second[0].receipt, Duration::ZERO).await.unwrap();
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "over max_receives: dead-lettered");
        assert_eq!(dlq.receive(10, Duration::ZERO).await.unwrap()[0].body, "a");

        queue.send(OutgoingMessage::new("b")).await.unwrap();
        let got = queue.receive(1, Duration::ZERO).await.unwrap();
        queue.delete(&got[0].receipt).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());

        let lake = MemoryQueue::new("lake.fifo", Duration::from_secs(30));
        for _ in 0..2 {
            lake.send(OutgoingMessage::new("done").grouped("Account").deduplicated("job:batch:0")).await.unwrap();
        }
        assert_eq!(lake.receive(10, Duration::ZERO).await.unwrap().len(), 1, "the second send was deduplicated");
        // Without content-based deduplication, SQS refuses a FIFO message that lacks either id.
        for message in [OutgoingMessage::new("x").grouped("Account"), OutgoingMessage::new("x").deduplicated("x")] {
            let refused = lake.send(message).await.unwrap_err();
            assert!(refused.is_permanent() && refused.message.contains("a FIFO queue needs a Message"), "{refused}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fifo_group_in_flight_holds_back_its_own_later_messages_only() {
        let lake = MemoryQueue::new("lake.fifo", Duration::from_secs(30));
        for (body, group) in [("a1", "Account"), ("i1", "Invoice"), ("a2", "Account"), ("i2", "Invoice")] {
            lake.send(OutgoingMessage::new(body).grouped(group).deduplicated(body)).await.unwrap();
        }
        let bodies = |messages: &[ReceivedMessage]| messages.iter().map(|m| m.body.clone()).collect::<Vec<_>>();
        let first = lake.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(bodies(&first), ["a1"]);
        let next = lake.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(bodies(&next), ["i1", "i2"], "Invoice's in order; a2 waits for a1");
        assert!(lake.receive(10, Duration::ZERO).await.unwrap().is_empty());
        lake.delete(&first[0].receipt).await.unwrap();
        assert_eq!(bodies(&lake.receive(10, Duration::ZERO).await.unwrap()), ["a2"]);
        // A standard queue has no groups.
        let jobs = MemoryQueue::new("jobs", Duration::from_secs(30));
        for body in ["x", "y"] {
            jobs.send(OutgoingMessage::new(body).grouped("g")).await.unwrap();
        }
        assert_eq!(jobs.receive(1, Duration::ZERO).await.unwrap().len(), 1);
        assert_eq!(jobs.receive(10, Duration::ZERO).await.unwrap().len(), 1, "not held back");
    }
}
