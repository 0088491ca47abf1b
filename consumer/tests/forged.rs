//! Job messages nobody in the stack wrote: the consumer works only on jobs the producer's ledger holds, and only as
//! the ledger records them. A message naming a job the ledger does not hold (an audit's, another integration's) is
//! refused without a Zuora call; one whose copy of the job disagrees with the record is dead-lettered with the
//! fields that differ. Either way nothing is published, asked for again or marked.

use common::messages::{CompletionMessage, JobKind, JobMessage};
use common::queue::{OutgoingMessage, ReceivedMessage};
use consumer::worker::{Settled, Worker};
use std::time::Duration;
use test_support::Deployment;

const ACCOUNT: &str = r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#;

async fn next_job_message(d: &Deployment) -> ReceivedMessage {
    for _ in 0..10 {
        if let Some(m) = d.queues().jobs.receive(1, Duration::from_secs(1)).await.unwrap().pop() {
            return m;
        }
    }
    panic!("no job message");
}

/// Works on job messages until one is settled as something other than waiting; returns it and the job message.
async fn work_until_settled(worker: &Worker, d: &Deployment) -> (Settled, JobMessage) {
    for _ in 0..20 {
        let message = next_job_message(d).await;
        match worker.handle(&message).await.unwrap() {
            Settled::Waiting { .. } => continue,
            other => return (other, serde_json::from_str(&message.body).unwrap()),
        }
    }
    panic!("the job never finished");
}

/// Sends `forged` to the jobs queue and has the worker handle it; returns the dead letter's reason.
async fn refused(worker: &Worker, d: &Deployment, forged: &JobMessage) -> String {
    d.queues().jobs.send(OutgoingMessage::new(serde_json::to_string(forged).unwrap())).await.unwrap();
    let message = next_job_message(d).await;
    match worker.handle(&message).await.unwrap() {
        Settled::DeadLettered { reason } => reason,
        other => panic!("a forged job message was worked on: {other:?}"),
    }
}

async fn completions(d: &Deployment) -> Vec<CompletionMessage> {
    let messages = test_support::drain(d.queues().lake.as_ref()).await;
    messages.iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect()
}

/// Zuora's job reads so far.
fn job_reads(d: &Deployment) -> u64 {
    d.sim.control().calls().get("GET /v1/batch-query/jobs/{id}").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_job_named_as_an_increment_is_refused_without_asking_zuora_and_publishes_nothing() {
    let d = Deployment::start(|_| {}).await;
    let (config, services) = (d.config(), d.services());
    let worker = Worker::from_config(&config, &services).unwrap();
    producer::service::Producer::from_config(&config, &services).unwrap().serve(ACCOUNT, "day-1").await.unwrap();
    let (published, increment) = work_until_settled(&worker, &d).await;
    assert_eq!(published, Settled::Published { files: 1 });
    completions(&d).await;
    let lake_before = d.bucket.keys("").await;

    // An audit's stateless job (its file holds three columns, Zuora marks it full): named as Account's increment, it
    // would be the lake's whole Account table.
    let account = config.catalogue().unwrap().objects.into_iter().find(|o| o.name == "Account").unwrap();
    let audit = producer::audit::Auditor::from_config(&config, &services).unwrap().audit(&account).await.unwrap();
    let forged = JobMessage { job_id: audit.job_id.clone(), ..increment };
    let reads = job_reads(&d);
    let reason = refused(&worker, &d, &forged).await;
    assert!(reason.contains("not in the producer's ledger"), "{reason}");
    assert_eq!(job_reads(&d), reads, "Zuora was not asked about the job");
    assert!(completions(&d).await.is_empty(), "nothing announced");
    assert_eq!(d.bucket.keys("").await, lake_before, "nothing written to the lake");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_starts_on_a_failed_job_ask_zuora_for_nothing_new() {
    let d = Deployment::start(|_| {}).await;
    let (config, services) = (d.config(), d.services());
    let worker = Worker::from_config(&config, &services).unwrap();
    let producer = producer::service::Producer::from_config(&config, &services).unwrap();
    producer.serve(ACCOUNT, "day-1").await.unwrap();
    work_until_settled(&worker, &d).await;
    d.sim.control().advance_clock(Duration::from_secs(86_400));
    d.sim.control().abort_next_batch("Account", "the query was killed");
    producer.serve(ACCOUNT, "day-2").await.unwrap();
    let (failed, increment) = work_until_settled(&worker, &d).await;
    assert!(matches!(failed, Settled::AskedAgain { .. }), "{failed:?}");
    let asked = test_support::drain(d.queues().requests.as_ref()).await;
    assert_eq!(asked.len(), 1, "the window asked for again once");

    // The same failed job, its Account said to start years ago: Zuora would be asked for years of changes.
    let long_ago = "2020-01-01T00:00:00Z".parse().unwrap();
    let forged = JobMessage { starts: [("Account".to_owned(), long_ago)].into(), ..increment };
    let reason = refused(&worker, &d, &forged).await;
    assert!(reason.contains("disagrees with the ledger") && reason.contains("starts"), "{reason}");
    assert!(test_support::drain(d.queues().requests.as_ref()).await.is_empty(), "nothing asked for again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_jobs_message_with_another_kind_changes_nothing() {
    let d = Deployment::start(|_| {}).await;
    let (config, services) = (d.config(), d.services());
    let worker = Worker::from_config(&config, &services).unwrap();
    producer::service::Producer::from_config(&config, &services).unwrap().serve(ACCOUNT, "day-1").await.unwrap();
    let (_, increment) = work_until_settled(&worker, &d).await;
    let announced = completions(&d).await;
    assert_eq!(announced.len(), 1);
    // The consumer stopped after announcing and before recording the job published: a delivery of the job would
    // announce its files again, here with the kind the message says.
    d.bucket.remove(&format!("{}published-jobs/{}.json", config.ledger.prefix, increment.job_id)).await;
    let lake_before = d.bucket.keys("").await;
    let forged = JobMessage { kind: JobKind::FullWindow, ..increment.clone() };
    let reason = refused(&worker, &d, &forged).await;
    assert!(reason.contains("disagrees with the ledger") && reason.contains("kind"), "{reason}");
    assert!(completions(&d).await.is_empty(), "nothing announced again");
    assert_eq!(d.bucket.keys("").await, lake_before, "nothing written");
    // The job's own message, as the ledger records it, still works.
    d.queues().jobs.send(OutgoingMessage::new(serde_json::to_string(&increment).unwrap())).await.unwrap();
    let (settled, _) = work_until_settled(&worker, &d).await;
    assert_eq!(settled, Settled::Published { files: 1 });
    assert!(d.marks().job_published(&increment.job_id).await.unwrap(), "recorded published again");
}
