//! The producer against the tier's queues and store (moto in ./tests/run.sh) and the AQuA simulator: requests become jobs on the jobs queue, bad input
//! goes to the DLQ with its reason, and no job is lost or doubled across duplicates and crashes.

use common::ledger::Ledger;
use common::messages::{JobKind, JobMessage};
use common::queue::{OutgoingMessage, Queue};
use common::store::ObjectStore;
use common::zuora::{DataCenter, ZuoraClient};
use producer::service::{Producer, RequestError, handle};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use test_support::Deployment;
use test_support::stores::{Intercept, Intercepted};
use zuora_sim::Mutation;

fn producer_with(d: &Deployment, store: Arc<dyn ObjectStore>, jobs: Arc<dyn Queue>) -> Producer {
    let config = d.config();
    let ledger = Ledger::new(store, &config.ledger.bucket, &config.ledger.prefix);
    let zuora = ZuoraClient::new(config.zuora.clone()).unwrap();
    Producer::new(zuora, ledger, jobs, config.catalogue().unwrap(), config.session, config.full_export)
}

fn producer(d: &Deployment) -> Producer {
    producer_with(d, d.bucket.store(), d.queues().jobs.clone())
}

/// Serves every request on the requests queue, as `producer serve` does, until it stays empty.
async fn serve_all(d: &Deployment, producer: &Producer) {
    let (settings, queues) = (d.config().producer, d.queues());
    let mut idle = 0;
    while idle < 3 {
        let batch = queues.requests.receive(10, Duration::from_secs(1)).await.unwrap();
        if batch.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        for message in batch {
            handle(producer, &queues.requests_inbox(), &settings, message).await;
        }
    }
}

async fn job_messages(queue: &dyn Queue) -> Vec<JobMessage> {
    test_support::drain(queue).await.iter().map(|m| serde_json::from_str(&m.body).expect("a job message")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_is_dead_lettered_with_its_reason_and_a_good_one_behind_them_is_served() {
    let d = Deployment::start(|_| {}).await;
    let bad = [
        ("this is not json", "not valid JSON"),
        (r#"{"exportFromDate": "2022-13-45"}"#, "exportFromDate: expected"),
        (r#"{"exportFromDate": "2999-01-01"}"#, "is in the future"),
        (r#"{"exportFromDate": "afterLastIncrement", "priority": "high"}"#, "unknown field `priority`"),
        (r#"{"exportFromDate": "afterLastIncrement", "objects": ["Acount"]}"#, "objects: unknown Acount"),
        (r#"{"exportFromDate": "afterLastIncrement", "objects": []}"#, "objects: must not be empty"),
        (r#"{"exportFromDate": "beginning"}"#, "\"fullExport\": true to confirm"),
    ];
    for (body, _) in &bad {
        d.queues().requests.send(OutgoingMessage::new(*body)).await.unwrap();
    }
    d.queues().requests.send(OutgoingMessage::new(r#"{"exportFromDate": "afterLastIncrement"}"#)).await.unwrap();
    serve_all(&d, &producer(&d)).await;

    let dead = test_support::drain(d.queues().requests_dlq.as_ref()).await;
    assert_eq!(dead.len(), bad.len(), "{dead:#?}");
    for (body, reason) in bad {
        let message = dead.iter().find(|m| m.body == body).unwrap_or_else(|| panic!("{body} not dead-lettered"));
        let got = message.attributes.get("reason").map(String::as_str).unwrap_or_default();
        assert!(got.contains(reason), "{body}: reason {got:?} should contain {reason:?}");
    }
    let jobs = job_messages(d.queues().jobs.as_ref()).await;
    assert_eq!(jobs.len(), 1, "the good request was served");
    assert_eq!(jobs[0].kind, JobKind::Increment);
    assert_eq!(jobs[0].objects.len(), 13);
    assert_eq!(d.sim.control().jobs().len(), 1, "the bad ones submitted nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_request_delivered_twice_submits_one_job() {
    let d = Deployment::start(|_| {}).await;
    let body = r#"{"exportFromDate": "afterLastIncrement", "requestId": "daily-2026-11-24"}"#;
    for _ in 0..2 {
        d.queues().requests.send(OutgoingMessage::new(body)).await.unwrap();
    }
    let producer = producer(&d);
    serve_all(&d, &producer).await;
    // And a redelivery of one message without a request id: the message id keys it.
    let plain = r#"{"exportFromDate": "afterLastIncrement", "objects": ["Account"]}"#;
    let first = producer.serve(plain, "message-1").await.unwrap();
    let again = producer.serve(plain, "message-1").await.unwrap();
    assert_eq!(first, again);

    assert_eq!(d.sim.control().jobs().len(), 2);
    assert_eq!(job_messages(d.queues().jobs.as_ref()).await.len(), 2);
    assert!(test_support::drain(d.queues().requests_dlq.as_ref()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_increments_in_a_row_deliver_both_windows() {
    let d = Deployment::start(|_| {}).await;
    let producer = producer(&d);
    let daily = r#"{"exportFromDate": "afterLastIncrement", "objects": ["Account"]}"#;
    let first = producer.serve(daily, "day-1").await.unwrap();
    d.sim.control().advance_clock(Duration::from_secs(3600));
    let changes =
        d.sim.control().mutate("Account", Mutation { insert: 1, update: 1, delete: 1, ..Mutation::default() }).unwrap();
    d.sim.control().advance_clock(Duration::from_secs(60));
    // Re-run at once, before any consumer has read the first: the old system lost the first window here.
    let second = producer.serve(daily, "day-1-rerun").await.unwrap();
    assert_ne!(first.job_ids, second.job_ids);

    let jobs = job_messages(d.queues().jobs.as_ref()).await;
    assert_eq!(jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(), [first.job_ids, second.job_ids].concat());
    assert_eq!(jobs[0].window.from, None, "the first increment is a full load");
    assert_eq!(jobs[1].window.from, Some(jobs[0].window.to), "windows are contiguous");

    // Both windows still exist at Zuora: the full load and the increment with the changes.
    let zuora = ZuoraClient::new(d.config().zuora).unwrap();
    let full = zuora.wait_for_job(&jobs[0].job_id, Duration::from_millis(20), Duration::from_secs(10)).await.unwrap();
    let increment =
        zuora.wait_for_job(&jobs[1].job_id, Duration::from_millis(20), Duration::from_secs(10)).await.unwrap();
    assert_eq!(full.batches[0].full, Some(true));
    assert_eq!(increment.batches[0].full, Some(false));
    assert_eq!(increment.batches[0].record_count, Some(3), "{changes:?}");
}

/// An object store that fails the `nth` write of a key containing `key_part`, as if the process died right before it.
fn fail_once(inner: Arc<dyn ObjectStore>, key_part: &'static str, nth: u32) -> Intercepted {
    let seen = AtomicU32::new(0);
    Intercepted::new(inner, move |operation, key| {
        let chosen =
            operation == "PutObject" && key.contains(key_part) && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth;
        if chosen { Intercept::Fail("crash") } else { Intercept::Pass }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_submit_and_record_enqueues_the_job_exactly_once_after_restart() {
    let d = Deployment::start(|_| {}).await;
    // The second write of the request record is the one right after Zuora accepted the job.
    let crashing = fail_once(d.bucket.store(), "requests/", 2);
    let before_crash = producer_with(&d, Arc::new(crashing), d.queues().jobs.clone());
    let daily = r#"{"exportFromDate": "afterLastIncrement", "requestId": "crash-1"}"#;
    let err = before_crash.serve(daily, "m").await.unwrap_err();
    assert!(matches!(err, RequestError::Transient(_)), "{err:?}");
    assert_eq!(d.sim.control().jobs().len(), 1, "Zuora has the job");
    assert!(job_messages(d.queues().jobs.as_ref()).await.is_empty(), "nobody has been told");

    // Restart: the job's record was written before the crash, so start-up reconciliation has nothing to adopt;
    // the redelivered request resumes and gets the same job back.
    let restarted = producer(&d);
    assert_eq!(restarted.reconcile().await.unwrap(), None);
    let served = restarted.serve(daily, "m").await.unwrap();
    assert_eq!(d.sim.control().jobs().len(), 1, "the resubmission reused the job (Idempotency-Key)");
    let jobs = job_messages(d.queues().jobs.as_ref()).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].job_id, served.job_ids[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_record_and_enqueue_enqueues_the_job_exactly_once_after_restart() {
    let d = Deployment::start(|_| {}).await;
    let before_crash = producer_with(&d, d.bucket.store(), Arc::new(test_support::queues::Unreachable));
    let daily = r#"{"exportFromDate": "afterLastIncrement", "requestId": "crash-2"}"#;
    assert!(before_crash.serve(daily, "m").await.is_err());
    let restarted = producer(&d);
    restarted.reconcile().await.unwrap();
    restarted.serve(daily, "m").await.unwrap();
    restarted.serve(daily, "m").await.unwrap();
    assert_eq!(d.sim.control().jobs().len(), 1);
    assert_eq!(job_messages(d.queues().jobs.as_ref()).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_date_backfill_starts_at_utc_midnight_sent_in_pacific_time_and_does_not_move_the_session() {
    let d = Deployment::start(|c| c.data_center = zuora_sim::DataCenter::Us).await;
    let producer = producer(&d);
    producer.serve(r#"{"exportFromDate": "afterLastIncrement", "objects": ["Account"]}"#, "day-1").await.unwrap();
    let backfill =
        producer.serve(r#"{"exportFromDate": "2022-05-04", "objects": ["Account"]}"#, "ops-1").await.unwrap();
    let zuora = ZuoraClient::new(d.config().zuora).unwrap();
    let job = zuora.job(&backfill.job_ids[0]).await.unwrap();
    let from = job.incremental_time.expect("incrementalTime sent").to_utc(DataCenter::Us).unwrap();
    assert_eq!(from, "2022-05-04T00:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap());

    d.sim.control().advance_clock(Duration::from_secs(600));
    d.sim.control().mutate("Account", Mutation { insert: 0, update: 2, delete: 0, ..Mutation::default() }).unwrap();
    d.sim.control().advance_clock(Duration::from_secs(60));
    let next =
        producer.serve(r#"{"exportFromDate": "afterLastIncrement", "objects": ["Account"]}"#, "day-2").await.unwrap();
    let next = zuora.wait_for_job(&next.job_ids[0], Duration::from_millis(20), Duration::from_secs(10)).await.unwrap();
    assert_eq!(next.batches[0].record_count, Some(2), "the next increment starts where the last increment ended");
    let messages = job_messages(d.queues().jobs.as_ref()).await;
    assert_eq!(
        messages.iter().map(|m| m.kind).collect::<Vec<_>>(),
        [JobKind::Increment, JobKind::Backfill, JobKind::Increment]
    );
    assert_eq!(messages[2].window.from, Some(messages[0].window.to), "the backfill did not move the increments' mark");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_export_of_several_objects_resumes_when_zuora_is_busy_and_submits_each_window_once() {
    let d = Deployment::start(|c| {
        c.settings.job_execution_secs = 1.0;
        c.settings.max_concurrent_jobs = 3;
    })
    .await;
    let producer = producer(&d);
    // Five objects: five first windows, more than Zuora's concurrency limit here.
    let body = r#"{"exportFromDate": "beginning", "fullExport": true, "requestId": "full-1",
                   "objects": ["Account", "Invoice", "Contact", "Refund", "Payment"]}"#;
    d.queues().requests.send(OutgoingMessage::new(body)).await.unwrap();
    serve_all(&d, &producer).await;

    let jobs = job_messages(d.queues().jobs.as_ref()).await;
    assert_eq!(jobs.len(), 5, "one first window per object");
    assert!(jobs.iter().all(|j| j.kind == JobKind::FullWindow && j.objects.len() == 1 && j.until.is_some()));
    assert_eq!(jobs.iter().map(|j| &j.job_id).collect::<HashSet<_>>().len(), jobs.len(), "each window once");
    assert_eq!(d.sim.control().jobs().len(), jobs.len(), "no window submitted twice");
    let zuora = ZuoraClient::new(d.config().zuora).unwrap();
    for job in &jobs {
        let done = zuora.wait_for_job(&job.job_id, Duration::from_millis(50), Duration::from_secs(30)).await.unwrap();
        assert_eq!(done.status.to_string(), "completed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_id_dead_lettered_after_a_transient_failure_and_redriven_submits_each_window_once() {
    let d = Deployment::start(|_| {}).await;
    let body = r#"{"exportFromDate": "beginning", "fullExport": true, "objects": ["Account", "Invoice", "Contact"]}"#;
    d.queues().requests.send(OutgoingMessage::new(body)).await.unwrap();
    // The request record's second write (right after Zuora took the first window's job) fails on every try, until
    // SQS moves the message to the DLQ.
    let failing = producer_with(&d, Arc::new(fail_once(d.bucket.store(), "requests/", 2)), d.queues().jobs.clone());
    let (settings, queues) = (d.config().producer, d.queues());
    let dead_lettered = loop {
        let message = queues.requests.receive(1, Duration::from_secs(1)).await.unwrap().pop().expect("the request");
        let received = message.clone();
        handle(&failing, &queues.requests_inbox(), &settings, message).await;
        if !d.sim.control().jobs().is_empty() {
            // It failed after a submission: SQS moves this very body to the DLQ (after its receives).
            queues.requests.delete(&received.receipt).await.unwrap();
            break received.body;
        }
    };
    assert_eq!(d.sim.control().jobs().len(), 1, "one window submitted before the failure");
    // The operator redrives it: a new message, a new message id.
    queues.requests.send(OutgoingMessage::new(dead_lettered)).await.unwrap();
    serve_all(&d, &producer(&d)).await;
    let jobs = job_messages(d.queues().jobs.as_ref()).await;
    assert_eq!(jobs.len(), 3, "a full export of several windows, one first window per object");
    assert_eq!(d.sim.control().jobs().len(), jobs.len(), "no window submitted twice across the redrive");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_export_window_ending_in_the_future_is_refused_with_a_reason() {
    let d = Deployment::start(|_| {}).await;
    let future = r#"{"exportFromDate": "beginning", "fullExport": true, "objects": ["Account"],
                     "window": {"from": "2026-01-01T00:00:00Z", "to": "2099-01-01T00:00:00Z"}}"#;
    match producer(&d).serve(future, "m1").await {
        Err(RequestError::Rejected(reason)) => assert!(reason.contains("in the future"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(d.sim.control().jobs().is_empty(), "nothing submitted");
}
