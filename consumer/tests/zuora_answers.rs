//! The worker against answers the simulator never gives: a completed batch with neither a file nor segments, and a
//! job without the batch of an object it was submitted for (Zuora leaves out a query on an object the API user
//! cannot read, without failing the job). A stub Zuora (axum) serves the canned job; the queues are in memory and
//! the store a local directory, so no server is needed.

use axum::Json;
use axum::routing::{get, post};
use common::config::Config;
use common::ledger::{JobRecord, Ledger};
use common::messages::{JobKind, JobMessage, MESSAGE_VERSION, Window};
use common::queue::OutgoingMessage;
use common::services::Services;
use consumer::worker::Settled;
use serde_json::json;
use std::time::Duration;

const JOB_ID: &str = "2c92c0f966cd4f580166ec0ac89d5bb7";

/// A Zuora that hands out tokens and answers every job read with `job`.
async fn stub_zuora(job: serde_json::Value) -> String {
    let app = axum::Router::new()
        .route("/oauth/token", post(|| async { Json(json!({"access_token": "t", "expires_in": 3600})) }))
        .route("/v1/batch-query/jobs/{id}", get(move || async move { Json(job) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

/// The worker, on a local deployment, handles one job message for `objects` while the stub Zuora answers every job
/// read with `job`; returns how it settled, and the services (to look at the queues).
async fn handle_with_zuora_answering(job: serde_json::Value, objects: &[&str]) -> (Settled, Services) {
    handle_job_message_with_zuora_answering(JOB_ID, job, objects).await
}

/// As [`handle_with_zuora_answering`], for a job message naming `job_id`.
async fn handle_job_message_with_zuora_answering(
    job_id: &str,
    job: serde_json::Value,
    objects: &[&str],
) -> (Settled, Services) {
    let mut config = Config::parse(include_str!("../../deploy/examples/local.toml"), "local.toml", None).unwrap();
    config.zuora.base_url = stub_zuora(job).await;
    let dir = test_support::Scratch::new("zuora-answers");
    config.aws.local_dir = Some(dir.path().to_owned());
    let services = Services::connect(&config).await;
    let worker = consumer::worker::Worker::from_config(&config, &services).unwrap();
    let message = JobMessage {
        version: MESSAGE_VERSION,
        job_id: job_id.into(),
        request_id: "r1".into(),
        kind: JobKind::Increment,
        objects: objects.iter().map(|o| o.to_string()).collect(),
        window: Window { from: None, to: chrono::Utc::now() },
        starts: Default::default(),
        submitted_at: chrono::Utc::now(),
        until: None,
    };
    // The producer's record of the job (a consumer works only on jobs the ledger holds); none can name a job id that
    // is not Zuora's.
    let ledger = Ledger::new(services.store.clone(), &config.ledger.bucket, &config.ledger.prefix);
    let record = JobRecord {
        job_id: message.job_id.clone(),
        request_key: message.request_id.clone(),
        kind: message.kind,
        objects: message.objects.clone(),
        window: message.window,
        starts: message.starts.clone(),
        submitted_at: message.submitted_at,
        adopted: false,
        enqueued: true,
        until: None,
    };
    if common::zuora::is_zuora_id(job_id) {
        ledger.put_job(&record).await.unwrap();
    }
    let jobs = &services.queues.jobs;
    jobs.send(OutgoingMessage::new(serde_json::to_string(&message).unwrap())).await.unwrap();
    let received = jobs.receive(1, Duration::ZERO).await.unwrap().pop().unwrap();
    (worker.handle(&received).await.unwrap(), services)
}

#[tokio::test]
async fn a_batch_without_a_file_and_an_object_zuora_left_out_dead_letter_the_job_with_both_reasons() {
    let job = json!({"id": JOB_ID, "status": "completed", "batches": [
        {"name": "Account", "batchId": "2c92c0f966cd4f580166ec0ac8a75bb8", "status": "completed", "recordCount": 3, "full": true}
    ]});
    let (settled, services) = handle_with_zuora_answering(job, &["Account", "Invoice"]).await;
    match settled {
        Settled::DeadLettered { reason } => {
            assert!(reason.contains("has no batch for Invoice"), "{reason}");
            assert!(reason.contains("Account: completed with neither a fileId nor segments"), "{reason}");
        }
        other => panic!("expected the DLQ, got {other:?}"),
    }
    let dead = services.queues.jobs_dlq.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].attributes["reason"].contains("has no batch for Invoice"));
    assert_eq!(
        services.queues.jobs.depth().await.unwrap(),
        Default::default(),
        "settled: nothing left to receive again"
    );
}

#[tokio::test]
async fn an_answer_for_another_job_or_a_batch_without_an_id_dead_letters_the_job_with_the_reason() {
    let batch = |batch_id: Option<&str>| {
        let mut batch = json!({"name": "Account", "status": "completed", "recordCount": 0, "full": true,
                               "fileId": "2c92c0f966cd4f580166ec0ac8a75bb9"});
        if let Some(id) = batch_id {
            batch["batchId"] = id.into();
        }
        batch
    };
    let other_job = json!({"id": "2c92c0f966cd4f580166ec0ac89d0000", "status": "completed",
                           "batches": [batch(Some("2c92c0f966cd4f580166ec0ac8a75bb8"))]});
    let no_batch_id = json!({"id": JOB_ID, "status": "completed", "batches": [batch(None)]});
    let bad_batch_id = json!({"id": JOB_ID, "status": "completed", "batches": [batch(Some("../../other"))]});
    for (job, expected) in [
        (other_job, "answered for job 2c92c0f966cd4f580166ec0ac89d0000"),
        (no_batch_id, "Account: batch id None is not a Zuora id"),
        (bad_batch_id, "Account: batch id Some(\"../../other\") is not a Zuora id"),
    ] {
        let (settled, services) = handle_with_zuora_answering(job, &["Account"]).await;
        match settled {
            Settled::DeadLettered { reason } => assert!(reason.contains(expected), "{reason} should say {expected}"),
            other => panic!("expected the DLQ ({expected}), got {other:?}"),
        }
        assert_eq!(services.queues.jobs_dlq.receive(10, Duration::ZERO).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_job_message_whose_job_id_is_not_zuoras_is_dead_lettered_without_asking_zuora() {
    // Zuora would answer; the id is refused first (it goes into URLs and keys).
    let job = json!({"id": JOB_ID, "status": "completed", "batches": []});
    for bad in ["../../v1/other", "2c92c0f966cd4f580166ec0ac89d5bb", "2c92c0f966cd4f580166ec0ac89d5bbz"] {
        let (settled, services) = handle_job_message_with_zuora_answering(bad, job.clone(), &["Account"]).await;
        match settled {
            Settled::DeadLettered { reason } => assert!(reason.contains("is not a Zuora id"), "{bad}: {reason}"),
            other => panic!("{bad}: expected the DLQ, got {other:?}"),
        }
        assert_eq!(services.queues.jobs_dlq.receive(10, Duration::ZERO).await.unwrap().len(), 1);
    }
}
