//! [`Queue`] on Amazon SQS (or any server speaking its JSON protocol, such as moto).

use super::{OutgoingMessage, Queue, QueueDepth, QueueError, QueueErrorKind, ReceivedMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::time::Duration;

/// SQS caps a long poll at 20 seconds.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS caps a receive at 10 messages.
const MAX_BATCH: u32 = 10;
/// The group of a FIFO message sent without one (completions are grouped per object).
const FIFO_GROUP: &str = "zuora-lake-export";
/// Error codes after which the same call cannot succeed as configured (besides every `Kms*` code).
const PERMANENT_CODES: [&str; 8] = [
    "AccessDenied",
    "AccessDeniedException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "InvalidAddress",
    "InvalidClientTokenId",
    "InvalidSecurity",
    "SignatureDoesNotMatch",
];

/// One SQS queue, by URL.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    fifo: bool,
}

impl SqsQueue {
    /// The queue at `url`; a URL ending in `.fifo` is a FIFO queue.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        let url = url.into();
        let fifo = url.ends_with(".fifo");
        Self { client, url, fifo }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying client (for the native redrive).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The queue's ARN.
    pub async fn arn(&self) -> Result<String, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| self.error("GetQueueAttributes", e))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| QueueError::new("GetQueueAttributes", self.url.clone(), "no QueueArn"))
    }

    pub(crate) fn error(
        &self,
        operation: &'static str,
        err: impl std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    ) -> QueueError {
        let message = DisplayErrorContext(&err).to_string();
        let permanent = err.code().is_some_and(|code| PERMANENT_CODES.contains(&code) || code.starts_with("Kms"));
        let kind = if permanent { QueueErrorKind::Permanent } else { QueueErrorKind::Transient };
        QueueError { source: Some(Box::new(err)), kind, ..QueueError::new(operation, self.url.clone(), message) }
    }
}

impl Queue for SqsQueue {
    fn name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }

    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<String, QueueError>> {
        async move {
            let mut request = self.client.send_message().queue_url(&self.url).message_body(message.body);
            for (name, value) in message.attributes {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|e| QueueError::new("SendMessage", self.url.clone(), e.to_string()))?;
                request = request.message_attributes(name, value);
            }
            if self.fifo {
                let group = message.group.unwrap_or_else(|| FIFO_GROUP.to_owned());
                request = request.message_group_id(group).set_message_deduplication_id(message.deduplication_id);
            } else if !message.delay.is_zero() {
                request = request.delay_seconds(message.delay.as_secs().min(900) as i32);
            }
            let out = request.send().await.map_err(|e| self.error("SendMessage", e))?;
            Ok(out.message_id().unwrap_or_default().to_owned())
        }
        .boxed()
    }

    fn receive(&self, max: u32, wait: Duration) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        async move {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
                .wait_time_seconds(wait.min(MAX_WAIT).as_secs() as i32)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| self.error("ReceiveMessage", e))?;
            Ok(out
                .messages()
                .iter()
                .map(|m| ReceivedMessage {
                    id: m.message_id().unwrap_or_default().to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                    group: m.attributes().and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId)).cloned(),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    attributes: m
                        .message_attributes()
                        .map(|attrs| {
                            attrs
                                .iter()
                                .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned())))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect())
        }
        .boxed()
    }

    fn delete<'a>(&'a self, receipt: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        async move {
            self.client
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| self.error("DeleteMessage", e))?;
            Ok(())
        }
        .boxed()
    }

    fn set_visibility<'a>(&'a self, receipt: &'a str, timeout: Duration) -> BoxFuture<'a, Result<(), QueueError>> {
        async move {
            self.client
                .change_message_visibility()
                .queue_url(&self.url)
                .receipt_handle(receipt)
                .visibility_timeout(timeout.as_secs().min(43_200) as i32)
                .send()
                .await
                .map_err(|e| self.error("ChangeMessageVisibility", e))?;
            Ok(())
        }
        .boxed()
    }

    fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, QueueError>> {
        async move {
            let out = self
                .client
                .get_queue_attributes()
                .queue_url(&self.url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .map_err(|e| self.error("GetQueueAttributes", e))?;
            let count = |name: QueueAttributeName| {
                out.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse().ok()).unwrap_or(0)
            };
            Ok(QueueDepth {
                visible: count(QueueAttributeName::ApproximateNumberOfMessages),
                in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            })
        }
        .boxed()
    }
}
