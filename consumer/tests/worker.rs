//! The consumer's worker against the tier's queues and store (moto in ./tests/run.sh) and the simulator, fed by the
//! real producer: every file published in order (CSV, metadata, completion, mark) and exactly, whatever goes wrong.
//! (Over 600 lines: 27 scenarios on one harness; split into files, each would be one more test binary linking the
//! AWS SDK.)

use common::messages::CompletionMessage;
use common::queue::{Queue, ReceivedMessage};
use consumer::worker::{Settled, Worker};
use futures::StreamExt;
use producer::service::Producer;
use std::sync::Arc;
use std::time::Duration;
use test_support::Deployment;
use test_support::stores::{Intercept, Intercepted};
use zuora_sim::{FaultRule, Mutation};

async fn producer(d: &Deployment) -> Producer {
    producer::service::Producer::from_config(&d.config(), &d.services()).unwrap()
}

async fn next_job_message(d: &Deployment) -> ReceivedMessage {
    for _ in 0..10 {
        if let Some(m) = d.queues().jobs.receive(1, Duration::from_secs(1)).await.unwrap().pop() {
            return m;
        }
    }
    panic!("no job message");
}

/// The state a consumer leaves when it stops after announcing every file of a job and before recording the job
/// published: a delivery of the job then does the work again (and finds it done, file by file).
async fn forget_job_published(d: &Deployment, job_id: &str) {
    d.bucket.remove(&format!("{}published-jobs/{job_id}.json", d.config().ledger.prefix)).await;
}

/// Works on job messages until one is settled as something other than waiting.
async fn work_until_settled(worker: &Worker, d: &Deployment) -> Settled {
    for _ in 0..20 {
        let message = next_job_message(d).await;
        match worker.handle(&message).await.unwrap() {
            Settled::Waiting { .. } => continue,
            other => return other,
        }
    }
    panic!("the job never finished");
}

/// The reason of a job settled in the DLQ.
fn dead_letter_reason(settled: Settled) -> String {
    match settled {
        Settled::DeadLettered { reason } => reason,
        other => panic!("expected the DLQ, got {other:?}"),
    }
}

async fn metadata(d: &Deployment, key: &str) -> serde_json::Value {
    serde_json::from_slice(&d.bucket.object(key).await).unwrap()
}

async fn completions(d: &Deployment) -> Vec<CompletionMessage> {
    let messages = test_support::drain(d.queues().lake.as_ref()).await;
    messages.iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect()
}

/// Sets `field = "value"` on `object` in the deployment's catalogue file (read by workers built after it).
fn set_in_catalogue(d: &Deployment, object: &str, field: &str, value: &str) {
    let path = d.config_text.lines().find_map(|l| l.strip_prefix("catalogue = ")).unwrap().trim_matches('"').to_owned();
    let name = format!("name = \"{object}\"\n");
    let catalogue = std::fs::read_to_string(&path).unwrap().replace(&name, &format!("{name}{field} = \"{value}\"\n"));
    std::fs::write(&path, catalogue).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_object_of_an_export_is_published_with_metadata_and_one_completion_each() {
    let d = Deployment::start(|c| {
        c.settings.job_execution_secs = 1.5;
        c.rows.insert("InvoiceItem".into(), 60_000);
    })
    .await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement"}"#, "daily-1").await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 13 });

    let data: Vec<String> = d.bucket.keys("").await.into_iter().filter(|k| k.ends_with(".csv")).collect();
    assert_eq!(data.len(), 13);
    let lake = completions(&d).await;
    assert_eq!(lake.len(), 13, "one completion message per metadata file");
    for completion in &lake {
        let meta = metadata(&d, &completion.metadata_key).await;
        for field in [
            "jobId",
            "fileId",
            "batchId",
            "status",
            "name",
            "recordCount",
            "bucket",
            "key",
            "window",
            "full",
            "bytes",
            "checksum",
            "compression",
            "exportedAt",
        ] {
            assert!(meta.get(field).is_some(), "metadata lacks {field}: {meta}");
        }
        assert_eq!(meta["recordCount"], completion.record_count);
        assert_eq!(
            d.bucket.records_in(&completion.key).await,
            completion.record_count,
            "{}: independent count",
            completion.object
        );
        assert!(completion.full);
        let mark = d.marks().latest(&completion.object).await.unwrap().unwrap();
        assert_eq!(mark.job_id, completion.job_id);
    }
    let items = lake.iter().find(|c| c.object == "InvoiceItem").unwrap();
    assert!(items.bytes > 10 * 1024 * 1024, "InvoiceItem spans several parts ({} bytes)", items.bytes);
    assert_eq!(d.bucket.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_job_re_sends_the_same_completions_and_uploads_nothing() {
    let d = Deployment::start(|_| {}).await;
    let uploads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = uploads.clone();
    let store = Intercepted::new(d.bucket.store(), move |operation, _| {
        if operation == "CreateMultipartUpload" {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Intercept::Pass
    });
    let services = common::services::Services::from_parts(Arc::new(store), d.queues().clone());
    let worker = Worker::from_config(&d.config(), &services).unwrap();
    producer(&d)
        .await
        .serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account","Refund"]}"#, "r1")
        .await
        .unwrap();
    let message = next_job_message(&d).await;
    assert_eq!(worker.handle(&message).await.unwrap(), Settled::Published { files: 2 });
    let first = completions(&d).await;
    assert_eq!(uploads.load(std::sync::atomic::Ordering::SeqCst), 2, "one upload per file");
    let before = d.bucket.keys("").await;

    // The same message again (SQS at-least-once), after its completions were read: the job is recorded published.
    d.queues().jobs.send(common::queue::OutgoingMessage::new(message.body.clone())).await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::AlreadyPublished);
    assert!(completions(&d).await.is_empty(), "nothing announced again");
    // And again, as if the first consumer had stopped after announcing, before recording the job published.
    forget_job_published(&d, &first[0].job_id).await;
    d.queues().jobs.send(common::queue::OutgoingMessage::new(message.body.clone())).await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 2 });
    assert_eq!(d.bucket.keys("").await, before, "no new object");
    assert_eq!(uploads.load(std::sync::atomic::Ordering::SeqCst), 2, "not uploaded again");
    // Real SQS drops the re-sent completions (same deduplication id within five minutes); moto delivers them.
    // Either way the lake sees nothing new: whatever arrives is identical to what was published.
    for again in completions(&d).await {
        assert!(first.contains(&again), "{again:?} differs from the first publication");
        assert!(first.iter().any(|c| c.deduplication_id() == again.deduplication_id()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_cut_short_on_every_download_is_not_published_and_leaves_no_upload() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#, "m1").await.unwrap();
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        truncate_after_bytes: Some(20_000),
        ..FaultRule::default()
    }]);
    let reason = dead_letter_reason(work_until_settled(&worker, &d).await);
    assert!(reason.contains("verification failed"), "{reason}");
    assert!(d.bucket.keys("Invoice/").await.is_empty(), "nothing published");
    assert_eq!(d.bucket.open_uploads().await, 0);
    assert!(completions(&d).await.is_empty());
    let dead = test_support::drain(d.queues().jobs_dlq.as_ref()).await;
    assert!(dead[0].attributes["reason"].contains("nothing published"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_file_cut_short_on_every_download_is_not_published_and_leaves_no_upload() {
    let d = Deployment::start(|_| {}).await;
    let config = d.config_with(&[("session", "file_format = \"gzip\"")]);
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&config, &d.services()).unwrap();
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#, "m1").await.unwrap();
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        truncate_after_bytes: Some(5_000),
        ..FaultRule::default()
    }]);
    let reason = dead_letter_reason(work_until_settled(&worker, &d).await);
    assert!(reason.contains("verification failed") && reason.contains("not a whole gzip file"), "{reason}");
    assert!(d.bucket.keys("Invoice/").await.is_empty(), "nothing published");
    assert_eq!(d.bucket.open_uploads().await, 0);
    assert!(completions(&d).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_cut_inside_its_last_record_is_not_published_although_its_count_matches() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "m1").await.unwrap();
    let message = next_job_message(&d).await;
    let job_id = serde_json::from_str::<common::messages::JobMessage>(&message.body).unwrap().job_id;
    let zuora = common::zuora::ZuoraClient::new(d.config().zuora.clone()).unwrap();
    let job = zuora.wait_for_job(&job_id, Duration::from_millis(50), Duration::from_secs(30)).await.unwrap();
    let file_id = job.batches[0].file_ids()[0].to_owned();
    let whole: Vec<u8> = zuora.download(&file_id).await.unwrap().map(|chunk| chunk.unwrap().to_vec()).concat().await;
    assert!(whole.ends_with(b"\n"));
    // The cut drops the last value's final byte and the newline: the record count is unchanged.
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        truncate_after_bytes: Some(whole.len() as u64 - 2),
        ..FaultRule::default()
    }]);
    let reason = dead_letter_reason(worker.handle(&message).await.unwrap());
    assert!(reason.contains("cut inside its last record"), "{reason}");
    assert!(d.bucket.keys("Account/").await.is_empty(), "nothing published");
    assert_eq!(d.bucket.open_uploads().await, 0);
    assert!(completions(&d).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_download_is_started_again_and_the_file_is_still_exact() {
    let d = Deployment::start(|c| {
        c.rows.insert("Invoice".into(), 40_000);
    })
    .await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#, "m1").await.unwrap();
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        reset_after_bytes: Some(3_000_000),
        times: Some(1),
        ..FaultRule::default()
    }]);
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 1 });
    let completion = completions(&d).await.pop().unwrap();
    assert_eq!(d.bucket.records_in(&completion.key).await, completion.record_count);
    assert_eq!(d.bucket.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_job_comes_back_later_without_using_up_receives() {
    let d = Deployment::start(|c| c.settings.job_execution_secs = 600.0).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "m1").await.unwrap();
    let message = next_job_message(&d).await;
    assert_eq!(worker.handle(&message).await.unwrap(), Settled::Waiting { delay: Duration::from_secs(1) });
    let again = next_job_message(&d).await;
    assert_eq!(again.receive_count, 1, "a new message, not a redelivery");
    assert_eq!(again.attributes["polls"], "1");
    assert_eq!(worker.handle(&again).await.unwrap(), Settled::Waiting { delay: Duration::from_secs(2) });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_only_increment_still_gets_its_csv_metadata_and_completion() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer(&d).await;
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#, "day-1").await.unwrap();
    work_until_settled(&worker, &d).await;
    completions(&d).await;
    d.sim.control().advance_clock(Duration::from_secs(60));
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#, "day-2").await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 1 });
    let completion = completions(&d).await.pop().unwrap();
    assert_eq!((completion.record_count, completion.full), (0, false));
    assert_eq!(d.bucket.records_in(&completion.key).await, 0);
    assert!(metadata(&d, &completion.metadata_key).await["recordCount"] == 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_zuora_aborted_asks_for_its_window_again_with_zuoras_message() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    d.sim.control().abort_next_batch("Account", "java.lang.RuntimeException: query timed out");
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "m1").await.unwrap();
    match work_until_settled(&worker, &d).await {
        Settled::AskedAgain { reason } => {
            assert!(reason.contains("query timed out") && reason.contains("aborted"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let requests = test_support::drain(d.queues().requests.as_ref()).await;
    assert_eq!(requests.len(), 1);
    let request: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert!(request["requestId"].as_str().unwrap().starts_with("again-1-"), "{request}");
    assert_eq!(request["objects"], serde_json::json!(["Account"]));
    assert_eq!(request["fullExport"], true, "the session's first load is asked for in full: {request}");
    assert!(test_support::drain(d.queues().jobs_dlq.as_ref()).await.is_empty(), "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purged_file_is_requested_again_for_the_same_window() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer(&d).await;
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "day-1").await.unwrap();
    work_until_settled(&worker, &d).await;
    d.sim.control().mutate("Account", Mutation { insert: 1, update: 0, delete: 0, ..Mutation::default() }).unwrap();
    d.sim.control().advance_clock(Duration::from_secs(60));
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "day-2").await.unwrap();
    d.sim.control().advance_clock(Duration::from_secs(73 * 3600));
    // The consumer's clock agrees with Zuora's: the job ran 73 hours ago, so a 404 is a purge.
    let worker = worker.with_clock(common::clock::Clock::following_tokio(d.sim.control().now()));
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 0 });
    let requests = test_support::drain(d.queues().requests.as_ref()).await;
    assert_eq!(requests.len(), 1);
    let request: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(request["objects"], serde_json::json!(["Account"]));
    let day_1 = test_support::drain(d.queues().lake.as_ref()).await;
    let day_1: common::messages::CompletionMessage = serde_json::from_str(&day_1[0].body).unwrap();
    let from: chrono::DateTime<chrono::Utc> = request["exportFromDate"].as_str().unwrap().parse().unwrap();
    assert_eq!(from, day_1.window.to, "changes since the purged window's start exactly: {request}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segmented_full_load_publishes_each_segment_and_checks_their_sum() {
    let d = Deployment::start(|c| c.settings.segment_rows = Some(150)).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#, "m1").await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 4 });
    let lake = completions(&d).await;
    assert_eq!(lake.iter().map(|c| c.segment).collect::<std::collections::BTreeSet<_>>().len(), 4);
    assert_eq!(lake.iter().map(|c| c.record_count).sum::<u64>(), 500);
    for c in &lake {
        assert_eq!(d.bucket.records_in(&c.key).await, c.record_count);
    }
}

/// The jobs queue, counting the messages it hands out.
struct CountingQueue {
    inner: Arc<dyn Queue>,
    received: std::sync::atomic::AtomicUsize,
}

impl Queue for CountingQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn send(
        &self,
        m: common::queue::OutgoingMessage,
    ) -> futures::future::BoxFuture<'_, Result<String, common::queue::QueueError>> {
        self.inner.send(m)
    }
    fn receive(
        &self,
        max: u32,
        wait: Duration,
    ) -> futures::future::BoxFuture<'_, Result<Vec<ReceivedMessage>, common::queue::QueueError>> {
        Box::pin(async move {
            let got = self.inner.receive(max, wait).await?;
            self.received.fetch_add(got.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(got)
        })
    }
    fn delete<'a>(&'a self, receipt: &'a str) -> futures::future::BoxFuture<'a, Result<(), common::queue::QueueError>> {
        self.inner.delete(receipt)
    }
    fn set_visibility<'a>(
        &'a self,
        receipt: &'a str,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'a, Result<(), common::queue::QueueError>> {
        self.inner.set_visibility(receipt, timeout)
    }
    fn depth(&self) -> futures::future::BoxFuture<'_, Result<common::queue::QueueDepth, common::queue::QueueError>> {
        self.inner.depth()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_outlasting_the_queues_visibility_timeout_is_worked_on_once() {
    let d = Deployment::start_with_visibility(2, |c| {
        c.rows.insert("InvoiceItem".into(), 20_000);
    })
    .await;
    let jobs = Arc::new(CountingQueue { inner: d.queues().jobs.clone(), received: Default::default() });
    let mut services = d.services();
    services.queues.jobs = jobs.clone();
    let worker = Worker::from_config(&d.config(), &services).unwrap();
    producer(&d)
        .await
        .serve(r#"{"exportFromDate":"afterLastIncrement","objects":["InvoiceItem"]}"#, "m1")
        .await
        .unwrap();
    // About 3.5 MB at 0.7 MB/s: five seconds of streaming, more than twice the queue's visibility timeout.
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        bandwidth_bytes_per_sec: Some(700_000),
        ..FaultRule::default()
    }]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(consumer::service::run(Arc::new(worker), async {
        let _ = stopped.await;
    }));
    let mut published = Vec::new();
    for _ in 0..30 {
        published.extend(completions(&d).await);
        if !published.is_empty() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop.send(());
    service.await.unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(jobs.received.load(std::sync::atomic::Ordering::SeqCst), 1, "the message was never handed out twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_exports_are_named_described_and_counted_as_such() {
    let d = Deployment::start(|_| {}).await;
    let config = d.config_with(&[("consumer", "compression = \"zstd\"\ncompression_level = 3")]);
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#, "m1").await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 1 });
    let completion = completions(&d).await.pop().unwrap();
    assert!(completion.key.ends_with(".csv.zst"), "{}", completion.key);
    assert!(completion.metadata_key.ends_with(".metadata.json"));
    assert_eq!(completion.compression, "zstd");
    let stored = d.bucket.object(&completion.key).await;
    let plain = zstd::stream::decode_all(stored.as_ref()).unwrap();
    let records = csv::Reader::from_reader(plain.as_slice()).records().try_fold(0, |n, r| r.map(|_| n + 1)).unwrap();
    assert_eq!(records, completion.record_count);
    assert_eq!(metadata(&d, &completion.metadata_key).await["compression"], "zstd");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_fixed_key_and_its_old_metadata_are_kept_for_the_latest_increment() {
    let d = Deployment::start(|_| {}).await;
    set_in_catalogue(&d, "Refund", "legacy_key", "Refund.csv");
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer(&d).await;
    let legacy = || d.bucket.object("Refund.csv");
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#, "day-1").await.unwrap();
    work_until_settled(&worker, &d).await;
    let first = completions(&d).await.pop().unwrap();
    assert_eq!(legacy().await, d.bucket.object(&first.key).await, "the fixed key holds the full load");

    d.sim.control().mutate("Refund", Mutation { insert: 2, update: 0, delete: 0, ..Mutation::default() }).unwrap();
    d.sim.control().advance_clock(Duration::from_secs(60));
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#, "day-2").await.unwrap();
    work_until_settled(&worker, &d).await;
    let second = completions(&d).await.pop().unwrap();
    assert_eq!(second.record_count, 2);
    let copy = legacy().await;
    assert_eq!(csv::Reader::from_reader(copy.as_ref()).records().count(), 2, "now the increment");
    assert!(d.bucket.keys("Refund/").await.contains(&first.key), "the earlier increment is still there");
    // Read back by the old readers' rules: the fixed key's records number the metadata's recordCount, and the
    // metadata is the old export's six fields, pretty-printed with two spaces.
    let old = d.bucket.object("metadata/Refund.json").await;
    let text = std::str::from_utf8(&old).unwrap();
    assert!(text.starts_with("{\n  \"jobId\": "), "{text}");
    let old: serde_json::Value = serde_json::from_slice(&old).unwrap();
    let fields: Vec<&str> = old.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields.len(), 6, "{old}");
    assert_eq!(old["jobId"], second.job_id.as_str());
    assert_eq!(old["fileId"], second.file_id.as_str());
    assert_eq!(old["batchId"], second.batch_id.as_str());
    assert_eq!((old["status"].as_str(), old["name"].as_str()), (Some("completed"), Some("Refund")));
    assert_eq!(old["recordCount"], 2);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (S3's own error code)"]
async fn a_bucket_that_does_not_exist_dead_letters_the_job_at_once_with_s3s_code() {
    let d = Deployment::start(|_| {}).await;
    set_in_catalogue(&d, "Refund", "bucket", "no-such-bucket-for-refund");
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#, "m1").await.unwrap();
    // Not retried delivery after delivery (each one downloading the file again): the first settles it.
    let reason = dead_letter_reason(work_until_settled(&worker, &d).await);
    assert!(reason.contains("NoSuchBucket"), "{reason}");
    let dead = test_support::drain(d.queues().jobs_dlq.as_ref()).await;
    assert!(dead[0].attributes["reason"].contains("no-such-bucket-for-refund"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_job_mends_a_legacy_key_its_first_delivery_never_copied() {
    let d = Deployment::start(|_| {}).await;
    // The first delivery publishes and announces, and its consumer stops before the legacy copy (here: a consumer
    // without the legacy key configured yet, whose job is then forgotten as published: the same state).
    let first = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#, "day-1").await.unwrap();
    let message = next_job_message(&d).await;
    let body = message.body.clone();
    assert!(matches!(first.handle(&message).await.unwrap(), Settled::Waiting { .. } | Settled::Published { .. }));
    let published = loop {
        if let Some(c) = completions(&d).await.pop() {
            break c;
        }
        let again = next_job_message(&d).await;
        first.handle(&again).await.unwrap();
    };
    set_in_catalogue(&d, "Refund", "legacy_key", "Refund.csv");
    forget_job_published(&d, &published.job_id).await;
    let second = Worker::from_config(&d.config(), &d.services()).unwrap();
    d.queues().jobs.send(common::queue::OutgoingMessage::new(body)).await.unwrap();
    assert_eq!(work_until_settled(&second, &d).await, Settled::Published { files: 1 });
    let legacy = d.bucket.get("Refund.csv").await.expect("the redelivery copied the latest file to the legacy key");
    assert_eq!(legacy, d.bucket.object(&published.key).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_transfer_is_abandoned_at_its_deadline_and_leaves_no_upload() {
    let d = Deployment::start(|_| {}).await;
    let mut config = d.config();
    config.consumer.file_deadline_secs = 1;
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "m1").await.unwrap();
    // A connection that trickles: the file would take hours.
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        bandwidth_bytes_per_sec: Some(64),
        ..FaultRule::default()
    }]);
    // Every attempt is abandoned at the deadline; the message is left to be received again (and to reach the DLQ
    // after its receives), like a broken transfer's.
    let message = next_job_message(&d).await;
    let mut settled = worker.handle(&message).await;
    while let Ok(Settled::Waiting { .. }) = settled {
        settled = worker.handle(&next_job_message(&d).await).await;
    }
    match settled {
        Err(consumer::error::WorkError::Relay(consumer::relay::RelayError::Deadline(after))) => {
            // One second, and the time its few bytes take at the slowest rate allowed.
            assert!(after >= Duration::from_secs(1) && after < Duration::from_millis(1100), "{after:?}");
        }
        other => panic!("expected the deadline, got {other:?}"),
    }
    assert_eq!(d.bucket.open_uploads().await, 0);
    assert!(d.bucket.keys("Account/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_download_path_dead_letters_the_job_instead_of_asking_again() {
    let d = Deployment::start(|_| {}).await;
    let mut config = d.config();
    config.zuora.file_path = "/v1/no-such-files/{fileId}".into();
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "m1").await.unwrap();
    // Every download answers 404 minutes after the job ran: not a purge (Zuora keeps files about 72 h).
    let reason = dead_letter_reason(work_until_settled(&worker, &d).await);
    assert!(reason.contains("the download path is wrong"), "{reason}");
    assert!(test_support::drain(d.queues().requests.as_ref()).await.is_empty(), "nothing asked for again");
    assert_eq!(d.bucket.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_key_beside_compressed_stored_files_is_refused_at_start_naming_both_and_decompressed_ones_publish() {
    let d = Deployment::start(|_| {}).await;
    set_in_catalogue(&d, "Refund", "legacy_key", "Refund.csv");
    // The fixed key is read by the old export's readers as a plain CSV: stored files that are not plain are refused
    // before anything runs, naming the object, its legacy_key and the setting to change.
    for (edits, setting) in [
        (vec![("consumer", "compression = \"zstd\"")], "consumer.compression"),
        (vec![("session", "file_format = \"gzip\"")], "consumer.gzip_downloads"),
    ] {
        let config = d.config_with(&edits);
        let refused = Worker::from_config(&config, &d.services()).err().map(|e| e.to_string());
        let refused = refused.unwrap_or_else(|| panic!("{setting}: a consumer started"));
        for part in ["Refund", "legacy_key", setting] {
            assert!(refused.contains(part), "{refused:?} should name {part}");
        }
        assert!(
            producer::service::Producer::from_config(&config, &d.services()).is_err(),
            "{setting}: the producer refuses too"
        );
    }
    // gzip downloads, decompressed on the way: every object of the job published, the fixed key a plain CSV.
    let config =
        d.config_with(&[("session", "file_format = \"gzip\""), ("consumer", "gzip_downloads = \"decompress\"")]);
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&config, &d.services()).unwrap();
    let body = r#"{"exportFromDate":"afterLastIncrement","objects":["Account","Refund","Contact"]}"#;
    producer.serve(body, "day-1").await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 3 });
    let refund = completions(&d).await.into_iter().find(|c| c.object == "Refund").unwrap();
    assert_eq!(d.bucket.records_in("Refund.csv").await, refund.record_count, "a plain CSV at the fixed key");
    assert!(d.bucket.get("metadata/Refund.json").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_fixed_key_holds_the_latest_increment_not_a_later_backfill_or_full_export_window() {
    let d = Deployment::start(|_| {}).await;
    set_in_catalogue(&d, "Refund", "legacy_key", "Refund.csv");
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer(&d).await;
    let increment = r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#;
    producer.serve(increment, "day-1").await.unwrap();
    work_until_settled(&worker, &d).await;
    let first = completions(&d).await.pop().unwrap();

    d.sim.control().mutate("Refund", Mutation { insert: 2, update: 1, delete: 0, ..Mutation::default() }).unwrap();
    d.sim.control().advance_clock(Duration::from_secs(60));
    // Both end after the increment: a backfill since today, and a full export's window ending now.
    let now = chrono::Utc::now();
    let backfill = format!(r#"{{"exportFromDate":"{}","objects":["Refund"]}}"#, now.date_naive());
    producer.serve(&backfill, "backfill").await.unwrap();
    work_until_settled(&worker, &d).await;
    let (from, to) = ((now - chrono::Days::new(400)).to_rfc3339(), now.to_rfc3339());
    let window = format!(
        r#"{{"exportFromDate":"beginning","fullExport":true,"objects":["Refund"],"window":{{"from":"{from}","to":"{to}"}}}}"#
    );
    producer.serve(&window, "window").await.unwrap();
    work_until_settled(&worker, &d).await;
    assert_eq!(completions(&d).await.len(), 2, "the backfill's file and the window's");
    assert_eq!(d.bucket.object("Refund.csv").await, d.bucket.object(&first.key).await, "still the increment");
    let old: serde_json::Value = serde_json::from_slice(&d.bucket.object("metadata/Refund.json").await).unwrap();
    assert_eq!(old["jobId"], first.job_id.as_str());

    d.sim.control().advance_clock(Duration::from_secs(60));
    producer.serve(increment, "day-2").await.unwrap();
    work_until_settled(&worker, &d).await;
    let second = completions(&d).await.pop().unwrap();
    assert_eq!(d.bucket.object("Refund.csv").await, d.bucket.object(&second.key).await, "the next increment");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_message_whose_window_ends_in_the_future_is_dead_lettered_and_marks_nothing() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#, "m1").await.unwrap();
    let message = next_job_message(&d).await;
    let mut job: common::messages::JobMessage = serde_json::from_str(&message.body).unwrap();
    job.window.to = "2099-01-01T00:00:00Z".parse().unwrap();
    d.queues().jobs.delete(&message.receipt).await.unwrap();
    d.queues().jobs.send(common::queue::OutgoingMessage::new(serde_json::to_string(&job).unwrap())).await.unwrap();
    let reason = dead_letter_reason(work_until_settled(&worker, &d).await);
    assert!(reason.contains("in the future"), "{reason}");
    assert_eq!(d.marks().latest("Refund").await.unwrap(), None);
    assert!(completions(&d).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_job_mixing_a_first_load_and_an_increment_asks_again_for_each_object_by_its_own_kind() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer(&d).await;
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "day-1").await.unwrap();
    work_until_settled(&worker, &d).await;
    let day_1 = completions(&d).await.pop().unwrap();
    d.sim.control().advance_clock(Duration::from_secs(3600));
    // Invoice was just added to the daily request: its first load runs beside Account's increment, and Zuora
    // aborts it.
    d.sim.control().abort_next_batch("Invoice", "the query ran past its time limit");
    producer
        .serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account","Invoice"]}"#, "day-2")
        .await
        .unwrap();
    let settled = work_until_settled(&worker, &d).await;
    assert!(matches!(settled, Settled::AskedAgain { .. }), "{settled:?}");
    let again: Vec<common::messages::ExportRequest> = test_support::drain(d.queues().requests.as_ref())
        .await
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    let asked = |object: &str| {
        let only = Some(vec![object.to_owned()]);
        again.iter().find(|r| r.objects == only).unwrap_or_else(|| panic!("{object} not asked for alone: {again:?}"))
    };
    let (account, invoice) = (asked("Account"), asked("Invoice"));
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(
        (account.export_from_date, account.full_export),
        (common::messages::ExportFrom::Instant(day_1.window.to), false),
        "Account's increment is asked for again as changes since its window's start"
    );
    assert_eq!((invoice.export_from_date, invoice.full_export), (common::messages::ExportFrom::Beginning, true));
    // The Zuora jobs that follow the aborted one: Account's one, and the first window of Invoice's full export (the
    // rest follow as each is published).
    let before = d.sim.control().jobs().len();
    let mut submitted = 0;
    for request in &again {
        let body = serde_json::to_string(request).unwrap();
        submitted += producer.serve(&body, "unused").await.unwrap().job_ids.len();
    }
    assert_eq!(submitted, 2);
    assert_eq!(d.sim.control().jobs().len() - before, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_are_grouped_by_object_so_one_held_back_holds_back_only_its_own_object() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer(&d).await;
    for day in ["day-1", "day-2"] {
        producer
            .serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account","Invoice"]}"#, day)
            .await
            .unwrap();
        assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 2 });
        d.sim.control().advance_clock(Duration::from_secs(60));
    }
    let lake = &d.queues().lake;
    let object = |m: &ReceivedMessage| serde_json::from_str::<CompletionMessage>(&m.body).unwrap().object;
    // The lake takes the first completion and has not finished with it.
    let held = lake.receive(1, Duration::from_secs(1)).await.unwrap().pop().expect("a completion");
    let mut others = Vec::new();
    for _ in 0..3 {
        others.extend(lake.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    let other_objects: Vec<String> = others.iter().map(object).collect();
    assert_eq!(other_objects.len(), 2, "{other_objects:?}");
    assert!(other_objects.iter().all(|o| *o != object(&held)), "{other_objects:?} after {}", object(&held));
    for message in others.iter().chain([&held]) {
        lake.delete(&message.receipt).await.unwrap();
    }
    let last = lake.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(last.iter().map(object).collect::<Vec<_>>(), [object(&held)], "its object's next, once it is done");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_file_that_keeps_coming_completes_and_one_that_stops_is_abandoned_as_stalled() {
    let d = Deployment::start(|c| {
        c.rows.insert("Account".into(), 1000);
    })
    .await;
    let mut config = d.config();
    // A second of grace and 16 KiB/s at the slowest: Account's file at 80 KB/s (a 64 KiB chunk every 0.8 s) takes
    // longer than the grace, and comes steadily, so it is allowed to finish.
    config.consumer.file_deadline_secs = 1;
    config.consumer.file_min_kib_per_sec = 16;
    config.consumer.file_stall_secs = 3;
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "m1").await.unwrap();
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        bandwidth_bytes_per_sec: Some(80_000),
        ..FaultRule::default()
    }]);
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 1 });
    let published = completions(&d).await.pop().unwrap();
    assert!(published.bytes > 160_000, "a file of {} bytes takes more than twice the grace", published.bytes);

    // A file Zuora stops sending (here: it answers after 6 s): abandoned after 3 s of nothing, well within its
    // allowance.
    config.consumer.file_deadline_secs = 60;
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        latency_ms: Some(6000),
        ..FaultRule::default()
    }]);
    d.sim.control().advance_clock(Duration::from_secs(60));
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "m2").await.unwrap();
    let message = next_job_message(&d).await;
    let mut settled = worker.handle(&message).await;
    while let Ok(Settled::Waiting { .. }) = settled {
        settled = worker.handle(&next_job_message(&d).await).await;
    }
    match settled {
        Err(consumer::error::WorkError::Relay(consumer::relay::RelayError::Stalled(after))) => {
            assert_eq!(after, Duration::from_secs(3));
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    assert_eq!(d.bucket.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_naming_another_bucket_or_key_is_never_announced() {
    let d = Deployment::start(|_| {}).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#, "m1").await.unwrap();
    let message = next_job_message(&d).await;
    let body = message.body.clone();
    let mut settled = worker.handle(&message).await.unwrap();
    while let Settled::Waiting { .. } = settled {
        settled = worker.handle(&next_job_message(&d).await).await.unwrap();
    }
    let published = completions(&d).await.pop().unwrap();
    // Someone rewrites the metadata to point the lake at a bucket of their own; the job is delivered again.
    let mut forged = metadata(&d, &published.metadata_key).await;
    forged["bucket"] = "someone-elses-bucket".into();
    forged["key"] = "exfiltrated.csv".into();
    d.bucket
        .store()
        .put(&d.bucket.name, &published.metadata_key, serde_json::to_vec(&forged).unwrap().into())
        .await
        .unwrap();
    forget_job_published(&d, &published.job_id).await;
    d.queues().jobs.send(common::queue::OutgoingMessage::new(body)).await.unwrap();
    let reason = dead_letter_reason(work_until_settled(&worker, &d).await);
    assert!(reason.contains("names s3://someone-elses-bucket/exfiltrated.csv"), "{reason}");
    assert!(completions(&d).await.is_empty(), "nothing announced");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segmented_first_load_is_published_whole_at_the_legacy_key_with_one_header() {
    let d = Deployment::start(|c| c.settings.segment_rows = Some(150)).await;
    set_in_catalogue(&d, "Invoice", "legacy_key", "Invoice.csv");
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#, "m1").await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 4 });
    let mut segments = completions(&d).await;
    segments.sort_by_key(|c| c.segment);
    // The fixed key is the segments in order under the first one's header: what one file of the load would be.
    let mut whole = d.bucket.object(&segments[0].key).await.to_vec();
    for segment in &segments[1..] {
        let body = d.bucket.object(&segment.key).await;
        let header_end = body.iter().position(|&b| b == b'\n').unwrap() + 1;
        whole.extend_from_slice(&body[header_end..]);
    }
    let fixed = d.bucket.object("Invoice.csv").await;
    assert!(fixed.to_vec() == whole, "the fixed key is the segments joined");
    assert_eq!(d.bucket.records_in("Invoice.csv").await, 500);
    let old: serde_json::Value = serde_json::from_slice(&d.bucket.object("metadata/Invoice.json").await).unwrap();
    assert_eq!((old["recordCount"].as_u64(), old["jobId"].as_str()), (Some(500), Some(segments[0].job_id.as_str())));
    assert_eq!(d.bucket.open_uploads().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_files_columns_are_typed_by_zuoras_describe_and_its_metadata_can_live_under_a_prefix_of_its_own() {
    let d = Deployment::start(|_| {}).await;
    set_in_catalogue(&d, "Invoice", "metadata_prefix", "_metadata/");
    let path = d.config_text.lines().find_map(|l| l.strip_prefix("catalogue = ")).unwrap().trim_matches('"').to_owned();
    let joined =
        "SELECT Id, Amount, InvoiceDate, UpdatedDate, Account.Name, Account.Balance, BillToContact.Id FROM Invoice";
    let catalogue = std::fs::read_to_string(&path).unwrap();
    let (start, end) =
        (catalogue.find("SELECT Id, AccountId, InvoiceNumber").unwrap(), catalogue.find("FROM Invoice\"").unwrap());
    std::fs::write(&path, format!("{}{joined}{}", &catalogue[..start], &catalogue[end + "FROM Invoice".len()..]))
        .unwrap();
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#, "m1").await.unwrap();
    let message = next_job_message(&d).await;
    assert_eq!(worker.handle(&message).await.unwrap(), Settled::Published { files: 1 });
    let completion = completions(&d).await.pop().unwrap();

    let schema = completion.schema.clone().expect("a published file says its schema");
    let stored = d.bucket.object(&completion.key).await;
    let header = csv::Reader::from_reader(stored.as_ref()).headers().unwrap().clone();
    let typed: Vec<(&str, &str, bool)> =
        schema.columns.iter().map(|c| (c.name.as_str(), c.zuora_type.as_str(), c.nullable)).collect();
    assert_eq!(typed.iter().map(|c| c.0).collect::<Vec<_>>(), header.iter().collect::<Vec<_>>());
    for expected in [
        ("Invoice.Id", "text", false),
        ("Invoice.Amount", "decimal", true),
        ("Invoice.InvoiceDate", "date", true),
        ("Invoice.UpdatedDate", "datetime", false),
        ("Account.Name", "text", true),
        ("Account.Balance", "decimal", true),
        ("BillToContact.Id", "text", true),
        ("Invoice.IsDeleted", "boolean", false),
    ] {
        assert!(typed.contains(&expected), "{expected:?} not in {typed:?}");
    }
    assert_eq!((schema.id_column.as_str(), schema.time_zone.as_str()), ("Invoice.Id", "America/Los_Angeles"));
    assert_eq!(schema.deleted.as_ref().map(|d| d.column.as_str()), Some("Invoice.IsDeleted"));

    // The metadata JSON, which says the same, is under its own prefix: the data prefix holds only data.
    assert!(completion.metadata_key.starts_with("_metadata/Invoice/"), "{}", completion.metadata_key);
    assert_eq!(metadata(&d, &completion.metadata_key).await["schema"]["idColumn"], "Invoice.Id");
    assert!(d.bucket.keys("Invoice/").await.iter().all(|k| k.ends_with(".csv")));
    // A redelivery finds the metadata there: the file is announced again, not uploaded again.
    let before = d.bucket.keys("").await;
    forget_job_published(&d, &completion.job_id).await;
    d.queues().jobs.send(common::queue::OutgoingMessage::new(message.body.clone())).await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 1 });
    assert_eq!(d.bucket.keys("").await, before);
    // (Whether the queue delivers the re-sent completion depends on its deduplication window; if it does, it is
    // the same message.)
    assert!(completions(&d).await.iter().all(|again| *again == completion));

    // The object's next export asks Describe nothing: the answers kept name every column, the deleted column
    // being Zuora's own, not a field Describe lists.
    let describes = || d.sim.control().calls().get("GET /v1/describe/{object}").copied().unwrap_or(0);
    let asked = describes();
    d.sim.control().advance_clock(Duration::from_secs(60));
    producer(&d).await.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#, "m2").await.unwrap();
    assert_eq!(work_until_settled(&worker, &d).await, Settled::Published { files: 1 });
    assert_eq!(describes(), asked);
}
