//! The SQS and S3 adapters against a real server over the real protocol (moto, started by tests/run.sh).

use bytes::Bytes;
use common::queue::{Inbox, OutgoingMessage, Queue, RedriveReport, redrive};
use common::store::{ObjectStore, S3Store};
use std::sync::Arc;
use std::time::Duration;
use test_support::Aws;

const WAIT: Duration = Duration::from_secs(1);

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn a_message_is_received_with_its_attributes_and_gone_once_deleted() {
    let aws = Aws::connect().await;
    let (queue, _dlq) = aws.queue_with_dlq("adapters", 5, false, 30).await;
    queue.send(OutgoingMessage::new("{\"a\":1}").attribute("reason", "because")).await.unwrap();
    let got = queue.receive(10, WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "{\"a\":1}");
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(got[0].attributes.get("reason").map(String::as_str), Some("because"));
    assert_eq!(got[0].group, None, "a standard queue has no message groups");
    queue.delete(&got[0].receipt).await.unwrap();
    assert!(queue.receive(10, WAIT).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn a_message_made_visible_again_is_received_again_with_a_higher_count() {
    let aws = Aws::connect().await;
    let (queue, _dlq) = aws.queue_with_dlq("visibility", 5, false, 30).await;
    queue.send(OutgoingMessage::new("again")).await.unwrap();
    let first = queue.receive(1, WAIT).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().in_flight, 1);
    queue.set_visibility(&first[0].receipt, Duration::ZERO).await.unwrap();
    let second = queue.receive(1, WAIT).await.unwrap();
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].receive_count, 2);
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn a_delayed_message_is_counted_as_delayed_not_visible() {
    let aws = Aws::connect().await;
    let (queue, _dlq) = aws.queue_with_dlq("delay", 5, false, 30).await;
    queue.send(OutgoingMessage::new("later").delayed(Duration::from_secs(600))).await.unwrap();
    assert!(queue.receive(1, WAIT).await.unwrap().is_empty());
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.delayed), (0, 1));
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn fifo_queues_drop_a_second_message_with_the_same_deduplication_id() {
    let aws = Aws::connect().await;
    let (queue, _dlq) = aws.queue_with_dlq("fifo", 5, true, 30).await;
    for _ in 0..2 {
        queue.send(OutgoingMessage::new("done").deduplicated("job-1:batch-1")).await.unwrap();
    }
    queue.send(OutgoingMessage::new("other").deduplicated("job-1:batch-2")).await.unwrap();
    let got = queue.receive(10, WAIT).await.unwrap();
    assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["done", "other"]);
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn a_fifo_group_in_flight_holds_back_only_its_own_messages() {
    let aws = Aws::connect().await;
    let (queue, _dlq) = aws.queue_with_dlq("groups", 5, true, 30).await;
    for (body, group) in [("account-1", "Account"), ("account-2", "Account"), ("invoice-1", "Invoice")] {
        queue.send(OutgoingMessage::new(body).deduplicated(body).grouped(group)).await.unwrap();
    }
    let first = queue.receive(1, WAIT).await.unwrap();
    assert_eq!(first[0].body, "account-1");
    assert_eq!(first[0].group.as_deref(), Some("Account"), "SQS says a received message's group");
    // account-1 is in flight and not deleted (a lake that cannot take it): Invoice's message still arrives.
    let next = queue.receive(10, WAIT).await.unwrap();
    assert_eq!(next.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["invoice-1"]);
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn a_fifo_message_dead_lettered_keeps_its_group_and_moving_it_again_after_a_crash_leaves_one_letter() {
    let aws = Aws::connect().await;
    let (queue, dlq) = aws.queue_with_dlq("settle", 5, true, 30).await;
    let (queue, dlq): (Arc<dyn Queue>, Arc<dyn Queue>) = (Arc::new(queue), Arc::new(dlq));
    queue.send(OutgoingMessage::new("refused").deduplicated("d-1").grouped("Account")).await.unwrap();
    let received = queue.receive(1, WAIT).await.unwrap().pop().unwrap();
    let inbox = Inbox::new(queue.clone(), dlq.clone());
    // A process that sent the letter and died before the delete (the same group and deduplication id), then the
    // message moved again.
    let sent_before = OutgoingMessage::new("refused").grouped("Account").deduplicated(&received.id);
    let sent_before =
        sent_before.attribute("reason", "the table cannot take it").attribute("source_message_id", received.id.clone());
    dlq.send(sent_before).await.unwrap();
    inbox.dead_letter(&received, "the table cannot take it").await.unwrap();
    let letters = dlq.receive(10, WAIT).await.unwrap();
    assert_eq!(letters.len(), 1, "deduplicated by the message's id");
    assert_eq!(letters[0].group.as_deref(), Some("Account"));
    assert_eq!(letters[0].attributes["reason"], "the table cannot take it");
    assert_eq!(letters[0].attributes["source_message_id"], received.id);
    assert_eq!(queue.depth().await.unwrap(), Default::default());
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn dead_lettered_messages_are_redriven_to_their_source_queue() {
    let aws = Aws::connect().await;
    let (queue, dlq) = aws.queue_with_dlq("redrive", 1, false, 30).await;
    for i in 0..3 {
        queue.send(OutgoingMessage::new(format!("m{i}"))).await.unwrap();
    }
    // Received once and not deleted: SQS moves each to the DLQ on the next receive.
    let mut seen = 0;
    while seen < 3 {
        for m in queue.receive(10, WAIT).await.unwrap() {
            queue.set_visibility(&m.receipt, Duration::ZERO).await.unwrap();
            seen += 1;
        }
    }
    assert!(queue.receive(10, WAIT).await.unwrap().is_empty());
    assert_eq!(dlq.depth().await.unwrap().visible, 3);

    let report = redrive(&dlq, &queue).await.unwrap();
    // moto has no StartMessageMoveTask, so this exercises the one-by-one fallback.
    assert_eq!(report, RedriveReport::Manual { moved: 3 });
    let mut bodies: Vec<String> = queue.receive(10, WAIT).await.unwrap().into_iter().map(|m| m.body).collect();
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    assert_eq!(dlq.depth().await.unwrap().visible, 0);
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn objects_are_written_read_and_listed_and_a_missing_one_is_none() {
    let aws = Aws::connect().await;
    let bucket = aws.bucket("store").await;
    let store = S3Store::new(aws.s3.clone());
    assert_eq!(store.get(&bucket, "ledger/none.json").await.unwrap(), None);
    for key in ["ledger/b.json", "ledger/a.json", "other/c.json"] {
        store.put(&bucket, key, Bytes::from(format!("{{\"key\":\"{key}\"}}"))).await.unwrap();
    }
    assert_eq!(store.get(&bucket, "ledger/a.json").await.unwrap().unwrap(), Bytes::from("{\"key\":\"ledger/a.json\"}"));
    assert_eq!(store.list(&bucket, "ledger/").await.unwrap(), ["ledger/a.json", "ledger/b.json"]);
    let err = store.get("no-such-bucket-here", "k").await.unwrap_err();
    assert_eq!(err.bucket, "no-such-bucket-here");
    // Callers tell a wrong bucket from a time-out, and the SDK's error (code, request id) is kept underneath.
    assert!(err.is_permanent());
    let sdk = std::error::Error::source(&err).expect("the SDK's error is the source");
    assert!(format!("{sdk:?}").contains("NoSuchBucket"), "{sdk:?}");
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn a_queue_error_keeps_the_sdks_error_underneath() {
    let aws = Aws::connect().await;
    let url = format!("{}/123456789012/no-such-queue-here", test_support::aws_config().endpoint_url.unwrap());
    let err = common::queue::SqsQueue::new(aws.sqs.clone(), url).depth().await.unwrap_err();
    assert_eq!(err.operation, "GetQueueAttributes");
    let sdk = std::error::Error::source(&err).expect("the SDK's error is the source");
    assert!(format!("{sdk:?}").contains("NonExistentQueue"), "{sdk:?}");
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn aborting_an_upload_again_or_after_it_completed_succeeds_on_both_servers() {
    for aws in [Aws::connect().await, Aws::connect_strict().await] {
        let bucket = aws.bucket("aborts").await;
        let store = S3Store::new(aws.s3.clone());
        let checksum = common::store::ChecksumAlgorithm::Crc32c;
        let aborted = store.create_upload(&bucket, "a.csv", "text/csv", checksum).await.unwrap();
        store.abort_upload(&aborted).await.unwrap();
        // An abort tried again after its answer was lost finds the upload gone.
        store.abort_upload(&aborted).await.unwrap();
        let completed = store.create_upload(&bucket, "b.csv", "text/csv", checksum).await.unwrap();
        let body = vec![Bytes::from_static(b"Id\n1\n")];
        let part = store.upload_part(&completed, 1, body.clone(), checksum.of(&body)).await.unwrap();
        store.complete_upload(&completed, vec![part]).await.unwrap();
        store.abort_upload(&completed).await.unwrap();
        assert_eq!(store.get(&bucket, "b.csv").await.unwrap().unwrap(), Bytes::from_static(b"Id\n1\n"));
    }
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the SQS and S3 adapters on moto and Garage)"]
async fn writes_with_the_bucket_owners_full_control_are_accepted_by_both_servers() {
    for aws in [Aws::connect().await, Aws::connect_strict().await] {
        let bucket = aws.bucket("acl").await;
        let acl = aws_sdk_s3::types::ObjectCannedAcl::BucketOwnerFullControl;
        let store = S3Store::new(aws.s3.clone()).with_acl(acl);
        let checksum = common::store::ChecksumAlgorithm::Crc32c;
        let upload = store.create_upload(&bucket, "Account/1.csv", "text/csv", checksum).await.unwrap();
        let body = vec![Bytes::from_static(b"Account.Id\n1\n")];
        let part = store.upload_part(&upload, 1, body.clone(), checksum.of(&body)).await.unwrap();
        store.complete_upload(&upload, vec![part]).await.unwrap();
        store.copy(&bucket, "Account/1.csv", "Account.csv").await.unwrap();
        store.put(&bucket, "metadata/Account.json", Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(store.get(&bucket, "Account.csv").await.unwrap().unwrap(), body[0]);
    }
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (S3's conditional writes, on moto)"]
async fn conditional_writes_create_once_and_update_only_the_version_read() {
    use common::store::Precondition;
    let aws = Aws::connect().await;
    let bucket = aws.bucket("conditional").await;
    let store = S3Store::new(aws.s3.clone());
    let first = store.put_if(&bucket, "ledger/r.json", Bytes::from_static(b"{}"), &Precondition::Absent).await.unwrap();
    let again = store.put_if(&bucket, "ledger/r.json", Bytes::from_static(b"{}"), &Precondition::Absent).await;
    assert!(again.is_err_and(|e| e.is_conflict()), "If-None-Match: * on an existing key");
    let read = store.get_tagged(&bucket, "ledger/r.json").await.unwrap().unwrap();
    assert_eq!(read.tag, first, "the tag read is the tag written");
    let second = Precondition::Tagged(read.tag.clone());
    store.put_if(&bucket, "ledger/r.json", Bytes::from_static(b"{\"v\":2}"), &second).await.unwrap();
    let stale = store.put_if(&bucket, "ledger/r.json", Bytes::from_static(b"{\"v\":3}"), &second).await;
    assert!(stale.is_err_and(|e| e.is_conflict()), "If-Match with a version no longer there");
    let gone = Precondition::Tagged(first);
    let missing = store.put_if(&bucket, "ledger/none.json", Bytes::from_static(b"{}"), &gone).await;
    assert!(missing.is_err_and(|e| e.is_conflict()), "If-Match on a key with no object");
    assert_eq!(store.get(&bucket, "ledger/r.json").await.unwrap().unwrap(), Bytes::from_static(b"{\"v\":2}"));
}

/// Records the `x-amz-expected-bucket-owner` header of every request the client sends, by operation.
#[derive(Debug, Default)]
struct OwnerHeaders(std::sync::Mutex<Vec<(String, Option<String>)>>);

#[derive(Debug, Clone)]
struct Recorder(std::sync::Arc<OwnerHeaders>);

impl aws_sdk_s3::config::Intercept for Recorder {
    fn name(&self) -> &'static str {
        "owner-headers"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request();
        let header = |name: &str| request.headers().get(name).map(str::to_owned);
        let what = format!("{} {}", request.method(), request.uri());
        let owner = header("x-amz-expected-bucket-owner");
        self.0.0.lock().unwrap().push((what.clone(), owner));
        if request.headers().get("x-amz-copy-source").is_some() {
            self.0.0.lock().unwrap().push((format!("{what} (source)"), header("x-amz-source-expected-bucket-owner")));
        }
        Ok(())
    }
}

#[tokio::test]
#[ignore = "real-protocol tier: ./tests/run.sh (the S3 adapter's requests, on moto)"]
async fn every_s3_call_names_the_account_that_must_own_the_bucket() {
    use common::store::{ChecksumAlgorithm, Precondition};
    let aws = Aws::connect().await;
    let bucket = aws.bucket("owner").await;
    let headers = std::sync::Arc::new(OwnerHeaders::default());
    let config = aws.s3.config().to_builder().interceptor(Recorder(headers.clone())).build();
    let store = S3Store::new(aws_sdk_s3::Client::from_conf(config)).with_expected_owner("123456789012");
    // Every call the services make: small objects, conditional ones, listing, copies, a multipart upload and an abort.
    store.put(&bucket, "a.json", Bytes::from_static(b"{}")).await.unwrap();
    store.get(&bucket, "a.json").await.unwrap().unwrap();
    store.get_tagged(&bucket, "a.json").await.unwrap().unwrap();
    store.put_if(&bucket, "b.json", Bytes::from_static(b"{}"), &Precondition::Absent).await.unwrap();
    store.list(&bucket, "").await.unwrap();
    store.copy(&bucket, "a.json", "c.json").await.unwrap();
    let upload = store.create_upload(&bucket, "d.csv", "text/csv", ChecksumAlgorithm::Crc32c).await.unwrap();
    let body = vec![Bytes::from_static(b"Id\n1\n")];
    let part = store.upload_part(&upload, 1, body.clone(), ChecksumAlgorithm::Crc32c.of(&body)).await.unwrap();
    store.complete_upload(&upload, vec![part]).await.unwrap();
    let abandoned = store.create_upload(&bucket, "e.csv", "text/csv", ChecksumAlgorithm::Crc32c).await.unwrap();
    store.abort_upload(&abandoned).await.unwrap();
    let seen = headers.0.lock().unwrap().clone();
    assert!(seen.len() >= 12, "{seen:#?}");
    for (request, owner) in &seen {
        assert_eq!(owner.as_deref(), Some("123456789012"), "{request}");
    }
}
