//! A request run again at any point, under another key, loses no increment: the producer on the simulator, an
//! in-memory jobs queue and a local-directory ledger (no servers), with the ledger or the queue failing at the
//! moment a `producer submit` process would have been killed.

use common::config::Config;
use common::ledger::Ledger;
use common::messages::JobMessage;
use common::queue::{MemoryQueue, OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage};
use common::store::LocalStore;
use common::zuora::ZuoraClient;
use futures::FutureExt;
use futures::future::BoxFuture;
use producer::service::Producer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use test_support::stores::{Intercept, Intercepted};
use zuora_sim::{RunningSim, SimConfig, Simulator};

const DAILY: &str = r#"{"exportFromDate":"afterLastIncrement"}"#;

/// A local store whose writes of keys containing `fails` fail once `allowed` more of them have landed (a process
/// that dies there).
fn dying_store(root: &std::path::Path, fails: &'static str, allowed: Arc<AtomicU32>) -> Intercepted {
    Intercepted::new(Arc::new(LocalStore::new(root)), move |operation, key| {
        let dead = operation == "PutObject"
            && key.contains(fails)
            && allowed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err();
        if dead { Intercept::Fail("killed") } else { Intercept::Pass }
    })
}

/// An in-memory queue whose sends fail while `failing` is set.
struct DyingQueue {
    inner: MemoryQueue,
    failing: AtomicBool,
}

impl Queue for DyingQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn send(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<String, QueueError>> {
        if self.failing.load(Ordering::SeqCst) {
            let error = QueueError::new("SendMessage", "jobs", "killed");
            return async { Err(error) }.boxed();
        }
        self.inner.send(message)
    }
    fn receive(&self, max: u32, wait: Duration) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        self.inner.receive(max, wait)
    }
    fn delete<'a>(&'a self, receipt: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        self.inner.delete(receipt)
    }
    fn set_visibility<'a>(&'a self, receipt: &'a str, timeout: Duration) -> BoxFuture<'a, Result<(), QueueError>> {
        self.inner.set_visibility(receipt, timeout)
    }
    fn depth(&self) -> BoxFuture<'_, Result<QueueDepth, QueueError>> {
        self.inner.depth()
    }
}

struct World {
    sim: RunningSim,
    config: Config,
    store: Arc<Intercepted>,
    /// Writes the store lets land before it dies.
    allowed: Arc<AtomicU32>,
    jobs: Arc<DyingQueue>,
    /// The ledger's directory.
    _dir: test_support::Scratch,
}

impl World {
    async fn start(fails: &'static str, job_execution_secs: f64) -> Self {
        let mut sim_config = SimConfig::default();
        sim_config.settings.job_execution_secs = job_execution_secs;
        let sim = Simulator::start(sim_config).await.unwrap();
        let mut config = Config::parse(include_str!("../../deploy/examples/local.toml"), "local.toml", None).unwrap();
        config.zuora.base_url = sim.base_url();
        let dir = test_support::Scratch::new("reruns");
        let allowed = Arc::new(AtomicU32::new(1));
        let store = Arc::new(dying_store(dir.path(), fails, allowed.clone()));
        let jobs = Arc::new(DyingQueue {
            inner: MemoryQueue::new("jobs", Duration::from_secs(30)),
            failing: AtomicBool::new(false),
        });
        Self { sim, config, store, allowed, jobs, _dir: dir }
    }

    /// A producer process: its own client and ledger handle on the shared store and queue.
    fn producer(&self) -> Producer {
        let c = &self.config;
        let ledger = Ledger::new(self.store.clone(), &c.ledger.bucket, &c.ledger.prefix);
        let zuora = ZuoraClient::new(c.zuora.clone()).unwrap();
        Producer::new(
            zuora,
            ledger,
            self.jobs.clone(),
            c.catalogue().unwrap(),
            c.session.clone(),
            c.full_export.clone(),
        )
    }

    /// The jobs on the jobs queue.
    async fn enqueued(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for message in self.jobs.inner.receive(10, Duration::ZERO).await.unwrap() {
            ids.push(serde_json::from_str::<JobMessage>(&message.body).unwrap().job_id);
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// The stateful session's jobs Zuora ran, with or without `incrementalTime`.
    fn session_jobs(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.sim.control().jobs().into_iter().filter(|j| j.partner.is_some()).map(|j| j.id).collect();
        ids.sort();
        ids
    }
}

#[tokio::test]
async fn a_submit_killed_after_zuora_took_the_job_and_run_again_under_a_new_key_exports_that_job() {
    // The job runs long: when the second run comes, the first job is still running at Zuora.
    let w = World::start("requests/cli-1", 30.0).await;
    // The write-ahead record lands; the process dies before it records the job Zuora accepted.
    assert!(w.producer().serve(DAILY, "cli-1").await.is_err(), "the first run dies after Zuora accepted its job");
    assert_eq!(w.session_jobs().len(), 1);

    // `producer submit` again: a new process, a new request key.
    w.producer().serve(DAILY, "cli-2").await.unwrap();
    assert_eq!(w.enqueued().await, w.session_jobs(), "every job Zuora runs in the session is on the jobs queue");
    // The first run's job was recorded before it died: the second run enqueues it, then submits its own increment.
    assert_eq!(w.session_jobs().len(), 2);
}

#[tokio::test]
async fn an_increment_recorded_but_never_enqueued_is_enqueued_before_the_next_even_after_a_backfill_ran() {
    let w = World::start("nothing", 0.2).await;
    // The first run records its job and the session mark, then dies before the job message is sent.
    w.jobs.failing.store(true, Ordering::SeqCst);
    assert!(w.producer().serve(DAILY, "cli-1").await.is_err());
    w.jobs.failing.store(false, Ordering::SeqCst);
    assert_eq!(w.enqueued().await, Vec::<String>::new());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A backfill runs in the same session and completes: Zuora's "last completed job" is now the backfill.
    let today = w.sim.control().now().date_naive();
    w.producer().serve(&format!(r#"{{"exportFromDate":"{today}"}}"#), "backfill-1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The next daily increment.
    w.producer().serve(DAILY, "daily-2").await.unwrap();
    assert_eq!(w.session_jobs().len(), 3);
    assert_eq!(w.enqueued().await, w.session_jobs(), "the first increment is not forgotten");
}

#[tokio::test]
async fn a_request_id_sent_again_with_another_body_is_rejected_not_taken_for_the_first() {
    let w = World::start("nothing", 0.2).await;
    let account = r#"{"exportFromDate":"afterLastIncrement","objects":["Account"],"requestId":"r1"}"#;
    let served = w.producer().serve(account, "m1").await.unwrap();
    // The same body again resumes the same record: nothing new is submitted.
    assert_eq!(w.producer().serve(account, "m2").await.unwrap().job_ids, served.job_ids);
    let invoice = r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"],"requestId":"r1"}"#;
    match w.producer().serve(invoice, "m3").await {
        Err(producer::service::RequestError::Rejected(reason)) => {
            assert!(reason.contains("requestId \"r1\" already names another request"), "{reason}");
            assert!(reason.contains("Account"), "the reason shows the recorded request: {reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(w.session_jobs().len(), 1);
}

#[tokio::test]
async fn an_increment_a_killed_submit_left_unrecorded_is_adopted_and_the_next_request_still_exports_up_to_now() {
    // Every job record fails to land: the first run dies after Zuora took its job, before recording it anywhere.
    let w = World::start("jobs/", 0.2).await;
    w.allowed.store(0, Ordering::SeqCst);
    assert!(w.producer().serve(DAILY, "cli-1").await.is_err());
    assert_eq!(w.session_jobs().len(), 1);
    w.allowed.store(u32::MAX, Ordering::SeqCst);
    // The orphan runs; changes keep coming; the next day's request arrives.
    tokio::time::sleep(Duration::from_millis(600)).await;
    w.sim
        .control()
        .mutate("Account", zuora_sim::Mutation { insert: 2, update: 1, delete: 0, ..zuora_sim::Mutation::default() })
        .unwrap();
    let served = w.producer().serve(DAILY, "day-2").await.unwrap();
    let orphan = w.session_jobs().into_iter().find(|id| !served.job_ids.contains(id));
    // The orphan is exported, and this request's own increment covers from the orphan's start to now.
    assert_eq!(w.session_jobs().len(), 2, "the request submitted its own increment after adopting the orphan");
    assert!(orphan.is_some());
    assert_eq!(w.enqueued().await, w.session_jobs(), "every job Zuora runs in the session is on the jobs queue");
}

#[tokio::test]
async fn increments_go_out_with_the_sessions_version_and_job_name() {
    let mut w = World::start("nothing", 0.2).await;
    w.config.session.version = "1.2".into();
    w.config.session.increment_job_name = "zuora-datalake-export".into();
    let served = w.producer().serve(DAILY, "m1").await.unwrap();
    let zuora = ZuoraClient::new(w.config.zuora.clone()).unwrap();
    let job = zuora.job(&served.job_ids[0]).await.unwrap();
    assert_eq!(job.name.as_deref(), Some("zuora-datalake-export"));
    assert_eq!(job.version.as_deref(), Some("1.2"));
    assert_eq!(job.partner.as_deref(), Some(w.config.session.partner.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_beside_serve_day_after_day_loses_no_increment_and_leaves_no_gap() {
    // Two producer processes at once, every day: the service serving the schedule's request, and an operator's
    // `producer submit` of the same daily request. Each has its own ledger handle on the one ledger.
    let w = World::start("nothing", 0.05).await;
    let (service, operator) = (w.producer(), w.producer());
    for day in 0..8 {
        w.sim.control().advance_clock(Duration::from_secs(3600));
        tokio::join!(
            serve_until_done(&service, format!("schedule-{day}")),
            serve_until_done(&operator, format!("operator-{day}"))
        );
    }
    let mut messages = Vec::new();
    loop {
        let batch = w.jobs.inner.receive(10, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        messages.extend(batch.iter().map(|m| serde_json::from_str::<JobMessage>(&m.body).unwrap()));
    }
    let mut windows: Vec<(String, common::messages::Window)> =
        messages.iter().map(|m| (m.job_id.clone(), m.window)).collect();
    windows.sort_by_key(|(id, window)| (window.from, window.to, id.clone()));
    windows.dedup_by(|a, b| a.0 == b.0);
    let enqueued: Vec<String> = {
        let mut ids: Vec<String> = windows.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(enqueued, w.session_jobs(), "every increment Zuora ran is on the jobs queue");
    // Each increment starts where the one before it ended: no window is exported twice, none is skipped.
    assert_eq!(windows[0].1.from, None, "the first is the session's full load");
    for pair in windows.windows(2) {
        assert_eq!(pair[1].1.from, Some(pair[0].1.to), "{} after {}: {windows:?}", pair[1].0, pair[0].0);
        assert!(pair[1].1.from <= Some(pair[1].1.to), "{}: a window ends before it starts", pair[1].0);
    }
}

/// Serves the daily request under `key` until it is served, as SQS's redeliveries (or an operator) would: a conflict
/// with another producer process is a transient failure.
async fn serve_until_done(producer: &Producer, key: String) {
    for _ in 0..20 {
        match producer.serve(DAILY, &key).await {
            Ok(_) => return,
            Err(producer::service::RequestError::Transient(_)) => tokio::task::yield_now().await,
            Err(e) => panic!("{key}: {e}"),
        }
    }
    panic!("{key}: never served");
}
