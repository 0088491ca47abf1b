//! Days of exports, merged as the lake merges them, equal the simulator's ground truth row for row: nothing lost
//! across increments, a backfill and an immediate re-run.

use common::merge::{self, MergedTable};
use common::messages::CompletionMessage;
use consumer::worker::{Settled, Worker};
use producer::audit::{AuditError, Auditor, Problem, RepairLimits};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;
use test_support::Deployment;
use zuora_sim::Mutation;

const OBJECTS: [&str; 3] = ["Account", "Invoice", "Contact"];

/// The job Zuora aborted is asked for again; the requests it puts on the requests queue are served, their jobs worked.
async fn serve_what_the_aborted_job_asks_again(
    worker: &Worker,
    producer: &producer::service::Producer,
    d: &Deployment,
) {
    let message = d.queues().jobs.receive(1, Duration::from_secs(1)).await.unwrap().pop().unwrap();
    let mut settled = worker.handle(&message).await.unwrap();
    while let Settled::Waiting { .. } = settled {
        let message = d.queues().jobs.receive(1, Duration::from_secs(2)).await.unwrap().pop().unwrap();
        settled = worker.handle(&message).await.unwrap();
    }
    assert!(matches!(settled, Settled::AskedAgain { .. }), "{settled:?}");
    serve_until_settled(worker, producer, d).await;
}

/// Works the jobs, serves the requests that causes (a window asked for again, a full export going on), and so on
/// until nothing is left.
async fn serve_until_settled(worker: &Worker, producer: &producer::service::Producer, d: &Deployment) {
    loop {
        work_all(worker, d).await;
        let requests = test_support::drain(d.queues().requests.as_ref()).await;
        if requests.is_empty() {
            return;
        }
        for request in requests {
            producer.serve(&request.body, &request.id).await.unwrap();
        }
    }
}

async fn work_all(worker: &Worker, d: &Deployment) {
    let mut idle = 0;
    while idle < 2 {
        let batch = d.queues().jobs.receive(1, Duration::from_secs(1)).await.unwrap();
        let Some(message) = batch.into_iter().next() else {
            idle += 1;
            continue;
        };
        idle = 0;
        let settled = worker.handle(&message).await.unwrap();
        assert!(!matches!(settled, Settled::DeadLettered { .. }), "{settled:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_days_of_increments_a_backfill_and_a_rerun_merge_to_the_ground_truth() {
    let compressions = days_of_exports_merge_to_the_truth(&[]).await;
    assert_eq!(compressions, ["none"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn days_of_gzip_downloads_kept_as_zuora_sent_them_merge_to_the_ground_truth() {
    let compressions = days_of_exports_merge_to_the_truth(&[("session", "file_format = \"gzip\"")]).await;
    assert_eq!(compressions, ["gzip"], "stored as the .gz files Zuora sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn days_of_gzip_downloads_stored_as_zstd_merge_to_the_ground_truth() {
    let zstd = [
        ("session", "file_format = \"gzip\""),
        ("consumer", "gzip_downloads = \"decompress\"\ncompression = \"zstd\""),
    ];
    let compressions = days_of_exports_merge_to_the_truth(&zstd).await;
    assert_eq!(compressions, ["zstd"], "decompressed, counted, compressed again");
}

/// Three days of increments with an immediate re-run, then a backfill, on the deployment's configuration with
/// `edits` (see `Deployment::config_with`); the lake, merged as the lake merges, must equal the simulator's truth.
/// Returns the compressions the files were stored with.
async fn days_of_exports_merge_to_the_truth(edits: &[(&str, &str)]) -> Vec<String> {
    let d = Deployment::start(|_| {}).await;
    let config = d.config_with(edits);
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&config, &d.services()).unwrap();
    let daily = r#"{"exportFromDate":"afterLastIncrement","objects":["Account","Invoice","Contact"]}"#;
    let control = d.sim.control();
    let start_date = control.now().date_naive();
    for day in 0..3 {
        producer.serve(daily, &format!("day-{day}")).await.unwrap();
        if day == 1 {
            // An immediate re-run, before anything was consumed: the old system lost a window here.
            producer.serve(daily, "day-1-rerun").await.unwrap();
        }
        work_all(&worker, &d).await;
        control.advance_clock(Duration::from_secs(6 * 3600));
        for object in OBJECTS {
            control.mutate(object, Mutation { insert: 3, update: 4, delete: 2, ..Mutation::default() }).unwrap();
        }
        control.advance_clock(Duration::from_secs(6 * 3600));
    }
    let backfill = format!(r#"{{"exportFromDate":"{start_date}","objects":["Account","Invoice","Contact"]}}"#);
    producer.serve(&backfill, "backfill").await.unwrap();
    producer.serve(daily, "day-3").await.unwrap();
    work_all(&worker, &d).await;

    let completions = lake_equals_the_truth(&d).await;
    let compressions: std::collections::BTreeSet<String> = completions.iter().map(|c| c.compression.clone()).collect();
    compressions.into_iter().collect()
}

/// Every completion on the lake queue, applied in order of execution as the lake merges them (a session's full
/// load replacing the table): each object's merged table must equal the simulator's live rows. Returns the
/// completions.
async fn lake_equals_the_truth(d: &Deployment) -> Vec<CompletionMessage> {
    lake_equals_the_truth_of(d, &OBJECTS).await
}

/// As [`lake_equals_the_truth`], for `objects`.
async fn lake_equals_the_truth_of(d: &Deployment, objects: &[&str]) -> Vec<CompletionMessage> {
    let control = d.sim.control();
    let mut completions: Vec<CompletionMessage> = test_support::drain(d.queues().lake.as_ref())
        .await
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect();
    completions.sort_by_key(|c| (c.executed_at, c.job_id.clone()));
    for &object in objects {
        let mut lake = MergedTable::default();
        let files: Vec<&CompletionMessage> = completions.iter().filter(|c| c.object == object).collect();
        assert!(!files.is_empty(), "{object}: no file");
        for file in files {
            if file.replaces_the_table() && file.segment == 0 {
                lake = MergedTable::default();
            }
            let stored = d.bucket.store().get(&file.bucket, &file.key).await.unwrap().expect("the file is stored");
            let body = match file.compression.as_str() {
                "none" => stored.to_vec(),
                "gzip" => {
                    let mut plain = Vec::new();
                    flate2::read::MultiGzDecoder::new(stored.as_ref()).read_to_end(&mut plain).unwrap();
                    plain
                }
                "zstd" => zstd::stream::decode_all(stored.as_ref()).unwrap(),
                other => panic!("{other}"),
            };
            let id = format!("{object}.Id");
            let deleted = format!("{object}.IsDeleted");
            lake.apply(&body, &id, Some(&deleted)).unwrap();
        }
        let mut truth = MergedTable::default();
        truth.apply(control.ground_truth_csv(object).unwrap().as_bytes(), &format!("{object}.Id"), None).unwrap();
        assert_eq!(lake.rows.len(), truth.rows.len(), "{object}: live rows");
        for (id, row) in &lake.rows {
            let expected = truth.rows.get(id).unwrap_or_else(|| panic!("{object} {id} is in the lake, not in Zuora"));
            let projected: BTreeMap<String, String> =
                row.keys().map(|column| (column.clone(), expected[column].clone())).collect();
            assert_eq!(row, &projected, "{object} {id}");
        }
    }
    completions
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subset_increment_on_a_later_day_then_an_aborted_daily_job_merge_to_the_ground_truth() {
    // Zuora's days are behind the services' clock, so the windows are Zuora's (each ends when its job started).
    let d = Deployment::start(|c| c.clock_start = Some(chrono::Utc::now() - chrono::Days::new(3))).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&d.config(), &d.services()).unwrap();
    let daily = r#"{"exportFromDate":"afterLastIncrement","objects":["Account","Invoice","Contact"]}"#;
    let control = d.sim.control();
    let change_everything = || {
        for object in OBJECTS {
            control.mutate(object, Mutation { insert: 3, update: 4, delete: 2, ..Mutation::default() }).unwrap();
        }
    };
    producer.serve(daily, "day-0").await.unwrap();
    work_all(&worker, &d).await;
    change_everything();
    control.advance_clock(Duration::from_secs(24 * 3600));
    // Day 1: Account alone. Zuora keeps a position per query: Invoice's and Contact's stay at day 0.
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "day-1").await.unwrap();
    work_all(&worker, &d).await;
    change_everything();
    control.advance_clock(Duration::from_secs(24 * 3600));
    // Day 2: the daily job is aborted at Zuora; its windows are asked for again and served.
    control.abort_next_batch("Invoice", "the query ran past its time limit");
    producer.serve(daily, "day-2").await.unwrap();
    serve_what_the_aborted_job_asks_again(&worker, &producer, &d).await;
    lake_equals_the_truth(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_increment_asked_again_still_reports_the_deletions_of_its_window() {
    // Zuora's day starts at 00:30 and Refund has no rows of its own: every row is created that day, after midnight.
    let today = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let start = today.and_hms_opt(0, 30, 0).unwrap().and_utc();
    let d = Deployment::start(|c| {
        c.clock_start = Some(start);
        c.rows.insert("Refund".into(), 0);
    })
    .await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&d.config(), &d.services()).unwrap();
    let control = d.sim.control();
    let refund = r#"{"exportFromDate":"afterLastIncrement","objects":["Refund"]}"#;
    producer.serve(refund, "first-load").await.unwrap();
    work_all(&worker, &d).await;
    control.advance_clock(Duration::from_secs(600));
    control.mutate("Refund", Mutation { insert: 12, update: 0, delete: 0, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(3600));
    // The rows reach the lake alive.
    producer.serve(refund, "increment-1").await.unwrap();
    work_all(&worker, &d).await;
    control.advance_clock(Duration::from_secs(600));
    control.mutate("Refund", Mutation { insert: 0, update: 0, delete: 8, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(600));
    // The increment that would report the deletions is aborted; its window is asked for again. A backfill since
    // midnight would not report them: rows created and deleted within one interval cannot be extracted.
    control.abort_next_batch("Refund", "the query ran past its time limit");
    producer.serve(refund, "increment-2").await.unwrap();
    serve_what_the_aborted_job_asks_again(&worker, &producer, &d).await;
    let deleted = control.deleted_rows("Refund").unwrap();
    assert_eq!(deleted.len(), 8);
    lake_equals_the_truth_of(&d, &["Refund"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_increment_zuora_answers_in_full_after_180_idle_days_is_published_and_replaces_the_lakes_table() {
    // Zuora's clock starts far enough back that 181 idle days still end in the past.
    let d = Deployment::start(|c| c.clock_start = Some(chrono::Utc::now() - chrono::Days::new(183))).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&d.config(), &d.services()).unwrap();
    let control = d.sim.control();
    let account = r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#;
    producer.serve(account, "first-load").await.unwrap();
    work_all(&worker, &d).await;
    control.advance_clock(Duration::from_secs(3600));
    control.mutate("Account", Mutation { insert: 2, update: 3, delete: 2, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(3600));
    producer.serve(account, "increment").await.unwrap();
    work_all(&worker, &d).await;
    // 181 days without a job: Zuora starts the session again. The rows deleted meanwhile are never reported.
    control.advance_clock(Duration::from_secs(181 * 86_400));
    control.mutate("Account", Mutation { insert: 2, update: 3, delete: 4, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(3600));
    producer.serve(account, "after-idle-days").await.unwrap();
    work_all(&worker, &d).await;
    let completions = lake_equals_the_truth_of(&d, &["Account"]).await;
    let last = completions.iter().max_by_key(|c| c.executed_at).unwrap();
    assert!(last.full && last.window.from.is_some(), "an increment answered in full: {last:?}");
    assert!(last.replaces_the_table(), "and said so: kind {:?}", last.kind);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_load_zuora_kills_at_its_query_time_limit_is_exported_in_windows_that_each_fit() {
    // Three minutes a record: Account's 200 records in one query run 10 hours, past Zuora's 3-hour limit; so does
    // any window of more than 60 of them, which the export's growing windows reach, and Zuora kills too.
    let d = Deployment::start(|c| c.settings.query_secs_per_record = 180.0).await;
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&d.config(), &d.services()).unwrap();
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "first-load").await.unwrap();
    serve_what_the_aborted_job_asks_again(&worker, &producer, &d).await;
    lake_equals_the_truth_of(&d, &["Account"]).await;
    let jobs = d.sim.control().jobs();
    let killed = |stateful: bool| jobs.iter().filter(move |j| j.status == "aborted" && j.partner.is_some() == stateful);
    assert_eq!(killed(true).count(), 1, "the stateful first load, asked for again as a full export");
    // Each window Zuora killed was asked for again in halves, until the halves fit.
    let windows: Vec<_> = jobs.iter().filter(|j| j.partner.is_none()).collect();
    let completed = windows.iter().filter(|j| j.status == "completed").count();
    assert_eq!(completed + killed(false).count(), windows.len(), "{jobs:?}");
    assert!(completed > 1, "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_zuora_made_without_moving_updated_date_reach_the_lake_with_the_next_lookback() {
    // Every charge was created in the last 20 days; RatePlanCharge looks back 30.
    let d = Deployment::start(|c| {
        c.genesis = chrono::Utc::now() - chrono::Days::new(20);
        c.history_days = 10;
        c.rows.insert("RatePlanCharge".into(), 40);
    })
    .await;
    let catalogue = d.dir().join("catalogue.toml");
    let text = std::fs::read_to_string(&catalogue).unwrap();
    let with_lookback = text.replace("FROM RatePlanCharge\"\n", "FROM RatePlanCharge\"\nlookback_days = 30\n");
    assert_ne!(text, with_lookback);
    std::fs::write(&catalogue, with_lookback).unwrap();
    let worker = Worker::from_config(&d.config(), &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&d.config(), &d.services()).unwrap();
    let control = d.sim.control();
    let charges = r#"{"exportFromDate":"afterLastIncrement","objects":["RatePlanCharge"]}"#;
    producer.serve(charges, "first-load").await.unwrap();
    work_all(&worker, &d).await;
    control.advance_clock(Duration::from_secs(3600));
    let changed =
        control.mutate("RatePlanCharge", Mutation { update: 2, undated_update: 5, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(3600));
    producer.serve(charges, "increment").await.unwrap();
    work_all(&worker, &d).await;

    // The increment reported the dated changes only: the undated ones differ in the lake.
    let config = d.config();
    let catalogue = config.catalogue().unwrap();
    let object = catalogue.objects.iter().find(|o| o.name == "RatePlanCharge").unwrap();
    let store = d.bucket.store();
    let published = merge::completions_from_metadata(&*store, &[object]).await.unwrap();
    let lake = merge::merge_object(&*store, object, &published).await.unwrap();
    let mut truth = MergedTable::default();
    truth.apply(control.ground_truth_csv("RatePlanCharge").unwrap().as_bytes(), "RatePlanCharge.Id", None).unwrap();
    let differences = merge::differences(&lake, &truth, 1000);
    let stale: std::collections::BTreeSet<&str> = differences.iter().filter_map(|d| d.split(':').next()).collect();
    let undated: std::collections::BTreeSet<&str> = changed.undated.iter().map(String::as_str).collect();
    assert_eq!(stale, undated, "the increment missed exactly the undated changes");

    producer.serve(r#"{"exportFromDate":"lookback"}"#, "lookback").await.unwrap();
    work_all(&worker, &d).await;
    let completions = lake_equals_the_truth_of(&d, &["RatePlanCharge"]).await;
    let lookback = completions.iter().filter(|c| c.kind == Some(common::messages::JobKind::FullWindow)).count();
    assert_eq!(lookback, 1, "one window of the last 30 days");
}

/// What an audit test starts from: 40 Accounts in a Zuora whose clock starts `days_back` days ago (so that the hours
/// and days a test advances it stay in the past), their first load exported.
struct FirstLoad {
    d: Deployment,
    worker: Worker,
    producer: producer::service::Producer,
    auditor: Auditor,
    account: common::catalogue::ObjectSpec,
}

const DAILY_ACCOUNT: &str = r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#;

async fn first_load_of_40_accounts(days_back: u64) -> FirstLoad {
    let d = Deployment::start(|c| {
        c.clock_start = Some(chrono::Utc::now() - chrono::Days::new(days_back));
        c.rows.insert("Account".into(), 40);
    })
    .await;
    let (config, services) = (d.config(), d.services());
    let worker = Worker::from_config(&config, &services).unwrap();
    let producer = producer::service::Producer::from_config(&config, &services).unwrap();
    let auditor = Auditor::from_config(&config, &services).unwrap();
    let account = config.catalogue().unwrap().objects.into_iter().find(|o| o.name == "Account").unwrap();
    producer.serve(DAILY_ACCOUNT, "first-load").await.unwrap();
    work_all(&worker, &d).await;
    FirstLoad { d, worker, producer, auditor, account }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_names_each_row_zuora_and_a_lossy_lake_lost_and_its_repair_makes_the_lake_equal_to_zuora() {
    // 33 days still end in the past.
    let FirstLoad { d, worker, producer, auditor, account } = first_load_of_40_accounts(40).await;
    let (account, control, daily, hour) = (&account, d.sim.control(), DAILY_ACCOUNT, Duration::from_secs(3600));
    let first = auditor.audit(account).await.unwrap();
    assert!(first.is_equal(), "{}", first.summary());

    // Zuora loses deletions: 31 days without an increment, and the rows deleted meanwhile are purged.
    control.advance_clock(hour);
    let purged = control.mutate("Account", Mutation { delete: 3, ..Mutation::default() }).unwrap().deleted;
    control.advance_clock(Duration::from_secs(31 * 86_400));
    producer.serve(daily, "after-31-days").await.unwrap();
    work_all(&worker, &d).await;
    // The lake loses a file: a day's increment, gone from the bucket before anyone merged it.
    control.advance_clock(hour);
    let lost = control.mutate("Account", Mutation { insert: 2, update: 4, delete: 1, ..Mutation::default() }).unwrap();
    control.advance_clock(hour);
    let before: std::collections::BTreeSet<String> = d.bucket.keys("Account/").await.into_iter().collect();
    producer.serve(daily, "lost-day").await.unwrap();
    work_all(&worker, &d).await;
    for key in d.bucket.keys("Account/").await.into_iter().filter(|k| !before.contains(k)) {
        d.bucket.remove(&key).await;
    }
    control.advance_clock(hour);
    producer.serve(daily, "next-day").await.unwrap();
    work_all(&worker, &d).await;

    let audit = auditor.audit(account).await.unwrap();
    let found = |problem| -> std::collections::BTreeSet<String> {
        audit.differences.iter().filter(|d| d.problem == problem).map(|d| d.id.clone()).collect()
    };
    let set = |ids: &[String]| ids.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    assert_eq!(found(Problem::Gone), set(&purged), "{}", audit.summary());
    assert_eq!(found(Problem::Missing), set(&lost.inserted));
    assert_eq!(found(Problem::Differing), set(&lost.updated));
    assert_eq!(found(Problem::Deleted), set(&lost.deleted));
    assert!(audit.summary().contains("DIFFERENT, 2 missing, 4 differing, 1 deleted in Zuora, 3 gone from Zuora"));

    // 4 of the lake's 42 rows to delete is more than a repair deletes unasked: it does nothing, and says so.
    let keys = d.bucket.keys("").await;
    let held = auditor.repair(account, &audit, RepairLimits::default()).await.unwrap();
    assert!(held.held_back && held.done.len() == 1 && held.done[0].contains("would delete 4"), "{:?}", held.done);
    assert!(test_support::drain(d.queues().requests.as_ref()).await.is_empty(), "no backfill either");
    assert_eq!(d.bucket.keys("").await, keys, "nothing published");
    let forced = RepairLimits { force: true, ..RepairLimits::default() };
    let done = auditor.repair(account, &audit, forced).await.unwrap().done;
    assert_eq!(done.len(), 2, "a backfill and a file of deletions: {done:?}");
    for request in test_support::drain(d.queues().requests.as_ref()).await {
        producer.serve(&request.body, &request.id).await.unwrap();
    }
    work_all(&worker, &d).await;
    let after = auditor.audit(account).await.unwrap();
    assert!(after.is_equal(), "{}", after.summary());
    files_merge_to_the_truth(&d, account).await;
}

/// The lake, merged from the files it holds (a lost file's completion announced or not), is Zuora's table of
/// `object` column for column.
async fn files_merge_to_the_truth(d: &Deployment, object: &common::catalogue::ObjectSpec) {
    let store = d.bucket.store();
    let published = merge::completions_from_metadata(&*store, &[object]).await.unwrap();
    let lake = merge::merge_object(&*store, object, &published).await.unwrap();
    let mut truth = MergedTable::default();
    let id = format!("{}.Id", object.name);
    truth.apply(d.sim.control().ground_truth_csv(&object.name).unwrap().as_bytes(), &id, None).unwrap();
    assert_eq!(merge::differences(&lake, &truth, 5), Vec::<String>::new());
}

/// The keys of the lake's files of `object`.
async fn lake_keys(d: &Deployment, object: &str) -> std::collections::BTreeSet<String> {
    d.bucket.keys(&format!("{object}/")).await.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_after_the_latest_increment_is_lost_finds_its_rows_and_its_repair_brings_them_back() {
    let FirstLoad { d, worker, producer, auditor, account } = first_load_of_40_accounts(1).await;
    let (control, hour, daily) = (d.sim.control(), Duration::from_secs(3600), DAILY_ACCOUNT);
    control.advance_clock(hour);
    let lost = control.mutate("Account", Mutation { insert: 2, update: 4, ..Mutation::default() }).unwrap();
    control.advance_clock(hour);
    let before = lake_keys(&d, "Account").await;
    producer.serve(daily, "latest").await.unwrap();
    work_all(&worker, &d).await;
    // The latest increment's file and its metadata, gone from the lake: the files now end at the first load.
    for key in lake_keys(&d, "Account").await.difference(&before) {
        d.bucket.remove(key).await;
    }
    control.advance_clock(hour);

    let audit = auditor.audit(&account).await.unwrap();
    let found = |problem| -> std::collections::BTreeSet<String> {
        audit.differences.iter().filter(|d| d.problem == problem).map(|d| d.id.clone()).collect()
    };
    assert_eq!(found(Problem::Missing), lost.inserted.iter().cloned().collect(), "{}", audit.summary());
    assert_eq!(found(Problem::Differing), lost.updated.iter().cloned().collect(), "{}", audit.summary());
    assert_eq!(audit.differences.len(), 6, "{}", audit.summary());
    let repaired = auditor.repair(&account, &audit, RepairLimits::default()).await.unwrap();
    assert!(!repaired.held_back, "{:?}", repaired.done);
    serve_until_settled(&worker, &producer, &d).await;
    let after = auditor.audit(&account).await.unwrap();
    assert!(after.is_equal(), "{}", after.summary());
    files_merge_to_the_truth(&d, &account).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_refuses_a_zuora_file_cut_at_a_row_boundary_and_nothing_is_repaired() {
    let FirstLoad { d, auditor, account, .. } = first_load_of_40_accounts(1).await;
    let whole = auditor.audit(&account).await.unwrap();
    assert!(whole.is_equal(), "{}", whole.summary());

    // The audit's file as Zuora serves it, then every download of it ended cleanly after its 20th row.
    let zuora = common::zuora::ZuoraClient::new(d.config().zuora.clone()).unwrap();
    let job = zuora.job(&whole.job_id).await.unwrap();
    let file_id = job.batches[0].file_ids()[0].to_owned();
    let chunks: Vec<bytes::Bytes> =
        futures::TryStreamExt::try_collect(zuora.download(&file_id).await.unwrap()).await.unwrap();
    let file = chunks.concat();
    let row_ends: Vec<usize> = file.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
    assert!(row_ends.len() > 40, "a header and 40 rows");
    d.sim.control().set_faults(vec![zuora_sim::FaultRule {
        endpoint: "file".into(),
        truncate_after_bytes: Some(row_ends[20] as u64),
        ..zuora_sim::FaultRule::default()
    }]);
    let keys = d.bucket.keys("").await;
    let refused = auditor.audit(&account).await.unwrap_err();
    assert!(matches!(refused, AuditError::NotWhole { .. }), "{refused}");
    assert!(refused.to_string().contains("20 records read, Zuora's recordCount is 40"), "{refused}");
    assert_eq!(d.bucket.keys("").await, keys, "nothing published");
    assert!(test_support::drain(d.queues().lake.as_ref()).await.iter().all(|m| !m.body.contains("audit-")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_export_is_cut_into_windows_by_its_data_not_by_the_calendar() {
    // 200 Accounts created over four years: by calendar month from 2020, 84 windows, each a Zuora job.
    let d = Deployment::start(|c| {
        c.rows.insert("Account".into(), 200);
        c.settings.job_execution_secs = 0.2;
    })
    .await;
    let config = d.config_with(&[("full_export", "earliest = \"2020-01-01\"\nwindow_months = 1\nwindow_rows = 100")]);
    let worker = Worker::from_config(&config, &d.services()).unwrap();
    let producer = producer::service::Producer::from_config(&config, &d.services()).unwrap();
    let full = r#"{"exportFromDate":"beginning","fullExport":true,"objects":["Account"]}"#;
    producer.serve(full, "full").await.unwrap();
    serve_until_settled(&worker, &producer, &d).await;
    let completions = lake_equals_the_truth_of(&d, &["Account"]).await;
    let jobs = d.sim.control().jobs();
    let calendar = producer::plan::windows(&config.full_export, chrono::Utc::now()).len();
    assert!(calendar > 80, "{calendar} calendar windows");
    // Windows grow eightfold while they hold under 100 rows, and no longer once they do.
    assert!(
        jobs.len() <= 6,
        "{} Zuora jobs: {:?}",
        jobs.len(),
        completions.iter().map(|c| c.window).collect::<Vec<_>>()
    );
    let mut windows: Vec<_> = completions.iter().map(|c| c.window).collect();
    windows.sort_by_key(|w| w.from);
    for pair in windows.windows(2) {
        assert_eq!(pair[0].to, pair[1].from.unwrap(), "contiguous, no gap, no overlap");
    }
    assert_eq!(windows[0].from, Some("2020-01-01T00:00:00Z".parse().unwrap()));
}
