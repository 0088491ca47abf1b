//! Taking over a session the old export has been running, without a reload: the simulator's session is primed
//! by old-style jobs (every query in one job, the old job name and version, the lake reading each job's files),
//! then this project, its ledger empty, serves the daily request under the same partner, project and query texts.
//! Zuora must answer with increments only, and the lake (the old export's files, then the new ones) must equal
//! Zuora's data.

use common::config::Config;
use common::merge::{self, MergedTable};
use common::messages::CompletionMessage;
use common::services::Services;
use common::zuora::{BatchQueryRequest, Job, ZuoraClient};
use consumer::worker::Settled;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use zuora_sim::{Control, Mutation, SimConfig, Simulator};

const DAILY: &str = r#"{"exportFromDate":"afterLastIncrement"}"#;

/// One run of the old export: one job of every query, as it sent it; its files, read into the lake.
async fn old_export_run(
    zuora: &ZuoraClient,
    config: &Config,
    lake: &mut BTreeMap<String, MergedTable>,
    run: u32,
) -> Job {
    let catalogue = config.catalogue().unwrap();
    let queries = catalogue.objects.iter().map(|o| o.to_query()).collect();
    let (partner, project) = (&config.session.partner, &config.session.project);
    let request = BatchQueryRequest::stateful("zuora-datalake-export", partner, project, queries).with_version("1.2");
    let job = zuora.submit(&request, &format!("old-export-run-{run}")).await.unwrap();
    let job = zuora.wait_for_job(&job.id, Duration::from_millis(50), Duration::from_secs(60)).await.unwrap();
    for batch in &job.batches {
        let object = catalogue.objects.iter().find(|o| Some(&o.name) == batch.name.as_ref()).unwrap();
        let file = batch.file_ids()[0].to_owned();
        let csv: Vec<u8> = zuora.download(&file).await.unwrap().map(|c| c.unwrap().to_vec()).concat().await;
        let deleted = object.deleted_column.as_deref().map(|d| merge::column(object, d));
        let table = lake.entry(object.name.clone()).or_default();
        table.apply(&csv, &merge::column(object, "Id"), deleted.as_deref()).unwrap();
    }
    job
}

fn change_everything(control: &Control, config: &Config) {
    control.advance_clock(Duration::from_secs(6 * 3600));
    for object in &config.catalogue().unwrap().objects {
        control.mutate(&object.name, Mutation { insert: 2, update: 3, delete: 1, ..Mutation::default() }).unwrap();
    }
    control.advance_clock(Duration::from_secs(6 * 3600));
}

/// The old export's session, run twice, and this project ready to take it over (its ledger empty).
struct Takeover {
    _sim: zuora_sim::RunningSim,
    control: Control,
    config: Config,
    services: Services,
    lake: BTreeMap<String, MergedTable>,
    old_jobs: usize,
    /// The lake and the ledger.
    _dir: test_support::Scratch,
}

impl Takeover {
    /// The old export's full load and one increment, then a day of changes.
    async fn after_two_old_runs() -> Self {
        let mut sim_config = SimConfig::default();
        sim_config.settings.job_execution_secs = 0.2;
        let sim = Simulator::start(sim_config).await.unwrap();
        let control = sim.control();
        let dir = test_support::Scratch::new("cutover");
        let mut config = Config::parse(local_export::quickstart::LOCAL_CONFIG, "local.toml", None).unwrap();
        config.zuora.base_url = sim.base_url();
        config.aws.local_dir = Some(dir.path().to_owned());
        // The old export's thirteen queries, verbatim, under its version and job name.
        config.catalogue = Some("builtin:old-export".into());
        config.session.version = "1.2".into();
        config.session.increment_job_name = "zuora-datalake-export".into();
        let zuora = ZuoraClient::new(config.zuora.clone()).unwrap();
        let mut lake = BTreeMap::new();
        old_export_run(&zuora, &config, &mut lake, 1).await;
        change_everything(&control, &config);
        let last_old = old_export_run(&zuora, &config, &mut lake, 2).await;
        assert!(last_old.batches.iter().all(|b| b.full == Some(false)), "the old export's second run is an increment");
        change_everything(&control, &config);
        let old_jobs = control.jobs().len();
        let services = Services::connect(&config).await;
        Self { _sim: sim, control, config, services, lake, old_jobs, _dir: dir }
    }

    /// Serves `request` as the producer service would, and every request the consumer asks again, and works every
    /// job message to the end; returns the files published.
    async fn serve(&self, request: &str) -> usize {
        // The services read Zuora's clock, which the test moves on.
        let clock = common::clock::Clock::following_tokio(self.control.now());
        let producer =
            producer::service::Producer::from_config(&self.config, &self.services).unwrap().with_clock(clock);
        producer.serve(request, "takeover-day-1").await.unwrap();
        let worker = consumer::worker::Worker::from_config(&self.config, &self.services).unwrap().with_clock(clock);
        let (jobs, requests) = (&self.services.queues.jobs, &self.services.queues.requests);
        let mut published = 0;
        loop {
            for message in requests.receive(10, Duration::ZERO).await.unwrap() {
                producer.serve(&message.body, &message.id).await.unwrap();
                requests.delete(&message.receipt).await.unwrap();
            }
            if jobs.depth().await.unwrap() == Default::default()
                && requests.depth().await.unwrap() == Default::default()
            {
                return published;
            }
            for message in jobs.receive(10, Duration::from_secs(1)).await.unwrap() {
                if let Settled::Published { files } = worker.handle(&message).await.unwrap() {
                    published += files;
                }
            }
        }
    }

    /// The jobs Zuora ran since the takeover.
    fn new_jobs(&self) -> Vec<zuora_sim::JobSummary> {
        self.control.jobs()[self.old_jobs..].to_vec()
    }

    /// What the old export's readers find, read by their rules: in each object's bucket, `<Object>.csv` and
    /// `metadata/<Object>.json` (2-space JSON, the six old fields) of the latest increment, its record count that
    /// of the CSV.
    async fn assert_old_readers_find(&self, latest_job: &str) {
        let store = &self.services.store;
        for object in &self.config.catalogue().unwrap().objects {
            let target = &object.target;
            let (key, metadata_key) = (target.legacy_key.clone().unwrap(), target.legacy_metadata_key().unwrap());
            assert_eq!(
                (key.as_str(), metadata_key.as_str()),
                (&*format!("{}.csv", object.name), &*format!("metadata/{}.json", object.name))
            );
            let csv = store.get(&target.bucket, &key).await.unwrap().expect("the fixed key");
            let metadata = store.get(&target.bucket, &metadata_key).await.unwrap().expect("the metadata");
            let text = String::from_utf8(metadata.to_vec()).unwrap();
            assert!(text.starts_with("{\n  \"jobId\": "), "2-space JSON, jobId first: {text}");
            let metadata: serde_json::Value = serde_json::from_str(&text).unwrap();
            let fields: Vec<&String> = metadata.as_object().unwrap().keys().collect();
            assert_eq!(fields.len(), 6, "{text}");
            assert_eq!(
                (metadata["jobId"].as_str(), metadata["name"].as_str()),
                (Some(latest_job), Some(&*object.name))
            );
            assert_eq!(metadata["status"], "completed");
            let records = csv::Reader::from_reader(&csv[..]).records().map(Result::unwrap).count() as u64;
            assert_eq!(metadata["recordCount"].as_u64(), Some(records), "{}", object.name);
        }
    }

    /// The lake: the old export's files, then the new ones in the order Zuora produced them, against Zuora's data.
    async fn assert_lake_equals_zuora(mut self) {
        let lake_queue = &self.services.queues.lake;
        let mut completions: Vec<CompletionMessage> = Vec::new();
        loop {
            let batch = lake_queue.receive(10, Duration::ZERO).await.unwrap();
            if batch.is_empty() {
                break;
            }
            for message in batch {
                completions.push(serde_json::from_str::<CompletionMessage>(&message.body).unwrap());
                // As a lake does: a FIFO group's next message comes once this one is deleted.
                lake_queue.delete(&message.receipt).await.unwrap();
            }
        }
        completions.sort_by(|a, b| (a.executed_at, &a.job_id).cmp(&(b.executed_at, &b.job_id)));
        for object in &self.config.catalogue().unwrap().objects {
            let table = self.lake.get_mut(&object.name).unwrap();
            let deleted = object.deleted_column.as_deref().map(|d| merge::column(object, d));
            for completion in completions.iter().filter(|c| c.object == object.name) {
                let csv = merge::file_csv(&*self.services.store, completion).await.unwrap();
                table.apply(&csv, &merge::column(object, "Id"), deleted.as_deref()).unwrap();
            }
            let mut truth = MergedTable::default();
            let id = merge::column(object, "Id");
            truth.apply(self.control.ground_truth_of(&object.query).unwrap().as_bytes(), &id, None).unwrap();
            let differences = merge::differences(table, &truth, 5);
            assert!(differences.is_empty(), "{}: {}", object.name, differences.join("; "));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_the_old_exports_session_exports_increments_only_and_the_lake_equals_zuora() {
    let takeover = Takeover::after_two_old_runs().await;
    let published = takeover.serve(DAILY).await;
    // The adopted old job is exported again, and the takeover's own job continues the session: increments only.
    let new_jobs = takeover.new_jobs();
    assert_eq!(new_jobs.len(), 1, "one new job: the takeover's own increment");
    assert!(new_jobs.iter().flat_map(|j| &j.batches).all(|b| !b.full), "no full load after the takeover");
    let objects = takeover.config.catalogue().unwrap().objects.len();
    assert_eq!(published, 2 * objects, "the adopted job's files and the takeover's");
    takeover.assert_old_readers_find(&new_jobs[0].id).await;
    takeover.assert_lake_equals_zuora().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_old_job_whose_files_are_purged_is_asked_for_since_it_ran_never_in_full() {
    let takeover = Takeover::after_two_old_runs().await;
    // The takeover comes four days later: Zuora has purged the old export's files (after 72 h).
    takeover.control.advance_clock(Duration::from_secs(4 * 24 * 3600));
    takeover.serve(DAILY).await;
    let new_jobs = takeover.new_jobs();
    assert_eq!(
        new_jobs.len(),
        2,
        "the takeover's increment, and one backfill asking again for the purged job's objects"
    );
    assert_eq!(new_jobs.iter().map(|j| j.batches.len()).collect::<Vec<_>>(), [13, 13]);
    assert!(new_jobs.iter().flat_map(|j| &j.batches).all(|b| !b.full), "no full load after the takeover");
    assert!(
        new_jobs
            .iter()
            .flat_map(|j| &j.batches)
            .any(|b| b.from.is_some_and(|from| from.time() == chrono::NaiveTime::MIN)),
        "a backfill since the day the purged job ran"
    );
    takeover.assert_lake_equals_zuora().await;
}
