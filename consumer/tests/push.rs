//! Completion pushed by Zuora (`notifyUrl`), polling kept as the safety net: the notification publishes the job at
//! once, the job's own message then finds it published without asking Zuora, and a notification that never comes
//! leaves the job to its poll.

use common::messages::{CompletionMessage, NOTIFY_ORIGIN, ORIGIN_ATTRIBUTE};
use common::queue::{OutgoingMessage, ReceivedMessage};
use consumer::worker::{Settled, Worker};
use std::time::Duration;
use test_support::{Deployment, NotifyRoute};

const ACCOUNT: &str = r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#;

async fn next_job_message(d: &Deployment, within: Duration) -> ReceivedMessage {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some(m) = d.queues().jobs.receive(1, Duration::from_secs(1)).await.unwrap().pop() {
            return m;
        }
    }
    panic!("no message on the jobs queue within {within:?}");
}

fn status_polls(d: &Deployment) -> u64 {
    d.sim.control().calls().get("GET /v1/batch-query/jobs/{id}").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notified_job_is_published_at_once_and_its_own_message_then_finds_it_published_without_asking_zuora() {
    let d = Deployment::start(|c| c.settings.job_execution_secs = 2.0).await;
    let route = NotifyRoute::start(d.queues().jobs.clone(), "s3cret-route").await;
    let notify = format!("notify_url = \"{}\"", route.notify_url());
    // Polling slowed to a safety net: ten minutes before the job's message looks again.
    let config =
        d.config_with(&[("producer", &notify), ("consumer", "poll_delay_secs = 600\nmax_poll_delay_secs = 900")]);
    let producer = producer::service::Producer::from_config(&config, &d.services()).unwrap();
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    producer.serve(ACCOUNT, "daily").await.unwrap();
    let job_message = next_job_message(&d, Duration::from_secs(5)).await;
    assert!(matches!(worker.handle(&job_message).await.unwrap(), Settled::Waiting { delay } if delay.as_secs() == 600));

    // Zuora finishes and calls the route; the notification is on the jobs queue long before the poll.
    let notification = next_job_message(&d, Duration::from_secs(30)).await;
    assert_eq!(notification.attributes.get(ORIGIN_ATTRIBUTE).map(String::as_str), Some(NOTIFY_ORIGIN));
    assert_eq!(worker.handle(&notification).await.unwrap(), Settled::Published { files: 1 });
    let completions = test_support::drain(d.queues().lake.as_ref()).await;
    let completion: CompletionMessage = serde_json::from_str(&completions[0].body).unwrap();
    assert_eq!((completions.len(), completion.object.as_str()), (1, "Account"));
    assert_eq!(d.sim.control().calls().get("NOTIFY sent"), Some(&1));

    // The job's own message, when its poll comes: settled from the ledger, Zuora not asked, nothing announced twice.
    let polls = status_polls(&d);
    d.queues().jobs.send(OutgoingMessage::new(job_message.body.clone())).await.unwrap();
    let poll = next_job_message(&d, Duration::from_secs(5)).await;
    assert_eq!(worker.handle(&poll).await.unwrap(), Settled::AlreadyPublished);
    assert_eq!(status_polls(&d), polls, "the job was not looked up at Zuora again");
    assert!(test_support::drain(d.queues().lake.as_ref()).await.is_empty(), "no second completion");

    // Notifications of a job the ledger does not know, or of no job at all, or a whole job message sent through
    // the route: each deleted and counted, none dead-lettered, Zuora never asked.
    let polls = status_polls(&d);
    for body in ["0123456789abcdef0123456789abcdef", "../../secrets", &job_message.body, ""] {
        d.queues().jobs.send(through_the_route(body)).await.unwrap();
        let message = next_job_message(&d, Duration::from_secs(5)).await;
        assert!(matches!(worker.handle(&message).await.unwrap(), Settled::Ignored { .. }), "{body}");
    }
    assert_eq!(status_polls(&d), polls, "Zuora was not asked about any of them");
    assert_eq!(d.queues().jobs_dlq.depth().await.unwrap().visible, 0, "no dead letter");
    assert!(test_support::drain(d.queues().lake.as_ref()).await.is_empty(), "nothing announced");
}

/// A message as the stack's notification route puts it on the jobs queue: the `job` parameter as sent, with the
/// route's constant origin.
fn through_the_route(body: &str) -> OutgoingMessage {
    OutgoingMessage::new(body).attribute(ORIGIN_ATTRIBUTE, NOTIFY_ORIGIN)
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_of_a_running_job_never_become_pollers_however_many_arrive() {
    let d = Deployment::start(|c| c.settings.job_execution_secs = 3600.0).await;
    let config = d.config_with(&[("consumer", "poll_delay_secs = 600\nmax_poll_delay_secs = 900")]);
    let producer = producer::service::Producer::from_config(&config, &d.services()).unwrap();
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    producer.serve(ACCOUNT, "daily").await.unwrap();
    let job_message = next_job_message(&d, Duration::from_secs(5)).await;
    let job: common::messages::JobMessage = serde_json::from_str(&job_message.body).unwrap();
    assert!(matches!(worker.handle(&job_message).await.unwrap(), Settled::Waiting { .. }));
    // Someone who learnt the route's path calls it again and again, naming the running job.
    for _ in 0..5 {
        d.queues().jobs.send(through_the_route(&job.job_id)).await.unwrap();
        let notification = next_job_message(&d, Duration::from_secs(5)).await;
        assert!(matches!(worker.handle(&notification).await.unwrap(), Settled::Ignored { .. }));
    }
    let depth = d.queues().jobs.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (0, 0, 1), "one poll chain: the job's own message");
    assert_eq!(d.queues().jobs_dlq.depth().await.unwrap().visible, 0, "no dead letter");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_zuora_never_sends_leaves_the_job_to_its_poll() {
    let d = Deployment::start(|c| {
        c.settings.job_execution_secs = 1.0;
        c.settings.notify_lost = 1.0;
    })
    .await;
    let route = NotifyRoute::start(d.queues().jobs.clone(), "s3cret-route").await;
    let notify = format!("notify_url = \"{}\"", route.notify_url());
    let config = d.config_with(&[("producer", &notify)]);
    let producer = producer::service::Producer::from_config(&config, &d.services()).unwrap();
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    producer.serve(ACCOUNT, "daily").await.unwrap();
    let mut settled = Settled::Waiting { delay: Duration::ZERO };
    while let Settled::Waiting { .. } = settled {
        let message = next_job_message(&d, Duration::from_secs(10)).await;
        assert!(!message.attributes.contains_key(ORIGIN_ATTRIBUTE), "no notification comes: {}", message.body);
        settled = worker.handle(&message).await.unwrap();
    }
    assert_eq!(settled, Settled::Published { files: 1 });
    assert_eq!(d.sim.control().calls().get("NOTIFY lost"), Some(&1));
}
