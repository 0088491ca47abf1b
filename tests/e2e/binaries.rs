//! The real binaries end to end: the `zuora-sim` binary, `producer serve` and consumer processes against moto.
//! Three simulated days of inserts, updates and deletes with a daily `afterLastIncrement` (one of them re-run at
//! once), a consumer killed with SIGKILL in the middle of a file, a date backfill through `producer backfill`;
//! the lake, merged as its ETL merges it, equals the simulator's live rows for every object. And `check-config` of the
//! binaries.

use common::merge::MergedTable;
use common::messages::CompletionMessage;
use common::queue::{OutgoingMessage, Queue, QueueDepth};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use test_support::{AwsResources, Process, Scratch, with_settings, workspace_binary};

const DAILY: &str = r#"{"exportFromDate":"afterLastIncrement"}"#;

fn start(binary: &str, args: &[&str], log: &Path) -> Process {
    let mut command = Command::new(workspace_binary(binary));
    command.args(args).env("RUST_LOG", "info");
    Process::start(command, log)
}

/// The simulator binary, with a larger Account table (so a file takes a while to stream) and quick jobs.
fn start_simulator(dir: &Path) -> (Process, String) {
    let config = dir.join("sim.toml");
    std::fs::write(&config, "seed = 11\n[rows]\nAccount = 40000\n[settings]\njob_execution_secs = 0.2\n").unwrap();
    let mut child = Command::new(workspace_binary("zuora-sim"))
        .args(["--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("zuora-sim listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    (Process(child), base)
}

/// The simulator's control API.
struct Sim {
    base: String,
    http: reqwest::Client,
}

impl Sim {
    async fn call(&self, method: reqwest::Method, path: &str, body: serde_json::Value) -> String {
        let response = self.http.request(method, format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.text().await.unwrap()
    }

    async fn changes_over_a_day(&self, objects: &[String]) {
        self.call(reqwest::Method::POST, "/sim/clock/advance", serde_json::json!({"seconds": 6 * 3600})).await;
        for object in objects {
            let mutation = serde_json::json!({"insert": 3, "update": 4, "delete": 2});
            self.call(reqwest::Method::POST, &format!("/sim/objects/{object}/mutations"), mutation).await;
        }
        self.call(reqwest::Method::POST, "/sim/clock/advance", serde_json::json!({"seconds": 6 * 3600})).await;
    }
}

/// Waits until no request or job is waiting or in flight, twice in a row.
async fn settle(r: &AwsResources) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut quiet = 0;
    while quiet < 2 {
        assert!(Instant::now() < deadline, "the exports did not settle in 5 minutes");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let requests = r.requests.0.depth().await.unwrap();
        let jobs = r.jobs.0.depth().await.unwrap();
        quiet = if requests == QueueDepth::default() && jobs == QueueDepth::default() { quiet + 1 } else { 0 };
    }
    for dlq in [&r.requests.1, &r.jobs.1] {
        assert_eq!(dlq.depth().await.unwrap(), QueueDepth::default(), "{} is empty", dlq.url());
    }
}

async fn request(r: &AwsResources, body: &str) {
    r.requests.0.send(OutgoingMessage::new(body)).await.unwrap();
}

/// Waits for a multipart upload of an Account file to be open: a consumer is in the middle of that file.
async fn wait_for_account_upload(r: &AwsResources) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let uploads = r.aws.s3.list_multipart_uploads().bucket(&r.bucket).send().await.unwrap();
        if uploads.uploads().iter().any(|u| u.key().unwrap_or_default().starts_with("Account/")) {
            return;
        }
        assert!(Instant::now() < deadline, "no Account upload started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stored(r: &AwsResources, key: &str) -> Vec<u8> {
    let object = r.aws.s3.get_object().bucket(&r.bucket).key(key).send().await.unwrap();
    object.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binaries share queues with the test)"]
async fn days_of_exports_by_the_binaries_with_a_killed_consumer_merge_to_zuoras_data() {
    // The processes' logs are kept there if the test fails.
    let scratch = Scratch::new("binaries");
    let dir = scratch.path();
    let (_sim_process, base) = start_simulator(dir);
    let sim = Sim { base: base.clone(), http: reqwest::Client::new() };
    let r = AwsResources::provision(&base, 30, dir).await;
    // A short visibility, so the killed consumer's job comes back soon (the heartbeat keeps live work hidden).
    let config: PathBuf = dir.join("config.toml");
    std::fs::write(&config, with_settings(&r.config_text, &[("consumer", "visibility_secs = 6")])).unwrap();
    let config_arg = config.to_str().unwrap();
    let catalogue = common::config::Config::load(&config).unwrap().catalogue().unwrap();
    let objects: Vec<String> = catalogue.objects.iter().map(|o| o.name.clone()).collect();
    let clock: serde_json::Value =
        serde_json::from_str(&sim.call(reqwest::Method::GET, "/sim/clock", serde_json::Value::Null).await).unwrap();
    let day_one = clock["now"].as_str().unwrap()[..10].to_owned();

    let producer = start("producer", &["--config", config_arg, "serve"], &dir.join("producer.log"));
    // Day 1: one consumer, its Account file slowed down, killed with SIGKILL in the middle of it.
    let slow = serde_json::json!([{"endpoint": "file", "bandwidth_bytes_per_sec": 1_000_000}]);
    sim.call(reqwest::Method::PUT, "/sim/faults", slow).await;
    let doomed = start("consumer", &["--config", config_arg], &dir.join("consumer-killed.log"));
    request(&r, DAILY).await;
    wait_for_account_upload(&r).await;
    drop(doomed);
    sim.call(reqwest::Method::DELETE, "/sim/faults", serde_json::Value::Null).await;
    let consumers: Vec<Process> =
        (0..2).map(|n| start("consumer", &["--config", config_arg], &dir.join(format!("consumer-{n}.log")))).collect();
    settle(&r).await;

    for day in 2..=3 {
        sim.changes_over_a_day(&objects).await;
        request(&r, DAILY).await;
        if day == 2 {
            // Re-run at once, before the lake read anything: the old system lost a window here.
            request(&r, DAILY).await;
        }
        settle(&r).await;
    }
    sim.changes_over_a_day(&objects).await;
    let backfill = Command::new(workspace_binary("producer"))
        .args(["--config", config_arg, "backfill", "--from", &day_one])
        .output()
        .unwrap();
    assert!(backfill.status.success(), "{}", String::from_utf8_lossy(&backfill.stderr));
    request(&r, DAILY).await;
    settle(&r).await;

    for consumer in consumers {
        assert!(consumer.terminate().success(), "a consumer stops cleanly on SIGTERM");
    }
    assert!(producer.terminate().success(), "the producer stops cleanly on SIGTERM");

    let completions: Vec<CompletionMessage> =
        test_support::drain(&r.lake.0).await.iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect();
    let metadata = r.aws.s3.list_objects_v2().bucket(&r.bucket).send().await.unwrap();
    let metadata_keys: BTreeSet<&str> =
        metadata.contents().iter().filter_map(|o| o.key()).filter(|k| k.ends_with(".metadata.json")).collect();
    let announced: BTreeSet<&str> = completions.iter().map(|c| c.metadata_key.as_str()).collect();
    assert_eq!(announced, metadata_keys, "one completion message per metadata file");
    assert_eq!(announced.len(), completions.len(), "no completion announced twice");

    let mut sorted = completions.clone();
    sorted.sort_by(|a, b| (a.executed_at, &a.job_id).cmp(&(b.executed_at, &b.job_id)));
    for object in &catalogue.objects {
        let id = format!("{}.Id", object.name);
        let deleted = object.deleted_column.as_ref().map(|d| format!("{}.{d}", object.name));
        let mut lake = MergedTable::default();
        let files: Vec<&CompletionMessage> = sorted.iter().filter(|c| c.object == object.name).collect();
        assert!(files.len() >= 5, "{}: {} files", object.name, files.len());
        for file in files {
            let csv = stored(&r, &file.key).await;
            let records = csv::Reader::from_reader(csv.as_slice()).records().try_fold(0u64, |n, r| r.map(|_| n + 1));
            let records = records.unwrap();
            assert_eq!(records, file.record_count, "{}: RFC 4180 count = recordCount", file.key);
            lake.apply(&csv, &id, deleted.as_deref()).unwrap();
        }
        // The query's own truth: its filter and columns, joined ones included.
        let truth_url = format!("http://sim/sim/objects/{}/truth", object.name);
        let truth_url = reqwest::Url::parse_with_params(&truth_url, [("query", &object.query)]).unwrap();
        let truth_path = format!("{}?{}", truth_url.path(), truth_url.query().unwrap_or_default());
        let truth_csv = sim.call(reqwest::Method::GET, &truth_path, serde_json::Value::Null).await;
        let mut truth = MergedTable::default();
        truth.apply(truth_csv.as_bytes(), &id, None).unwrap();
        assert!(!truth.rows.is_empty(), "{}: rows", object.name);
        assert_eq!(lake.rows.len(), truth.rows.len(), "{}: live rows", object.name);
        for (id, row) in &lake.rows {
            let expected =
                truth.rows.get(id).unwrap_or_else(|| panic!("{} {id}: in the lake, not at Zuora", object.name));
            for (column, value) in row {
                assert_eq!(Some(value), expected.get(column), "{} {id} {column}", object.name);
            }
        }
    }
}

#[tokio::test]
async fn check_config_prints_the_configuration_with_the_secret_masked_and_names_a_bad_field() {
    let dir = Scratch::new("check-config");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, test_support::CHECKED_CONFIG).unwrap();
    let bad_partner = dir.path().join("bad-partner.toml");
    std::fs::write(&bad_partner, test_support::CHECKED_CONFIG.replace(r#"partner = "acme""#, r#"partner = " ""#))
        .unwrap();
    let bad_consumer = dir.path().join("bad-consumer.toml");
    let zero = test_support::CHECKED_CONFIG.replace("jobs_in_flight = 2", "jobs_in_flight = 0");
    std::fs::write(&bad_consumer, zero).unwrap();
    let check = |binary: &str, config: &Path| {
        let mut command = Command::new(workspace_binary(binary));
        command.arg("--config").arg(config).arg("check-config").env("ZUORA_CLIENT_SECRET", "hunter2");
        // The notification URL, whose path is the route's credential, given as the stack gives it.
        command.env("ZLE_NOTIFY_URL", "https://api.example.com/route-secret-91e3/job-finished?job=${JOBID}");
        command.env("RUST_LOG", "info").env_remove("ZLE_CONFIG").output().unwrap()
    };
    for binary in ["producer", "consumer"] {
        let out = check(binary, &good);
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{binary}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(printed.contains(r#"client_secret = "***""#) && !printed.contains("hunter2"), "{printed}");
        assert!(printed.contains(r#"notify_url = "***""#), "{binary}: the notify URL read and masked: {printed}");
        let logged = String::from_utf8_lossy(&out.stderr);
        for said in [&printed, &logged] {
            assert!(!said.contains("route-secret-91e3") && !said.contains("hunter2"), "{binary}: {said}");
        }
        assert!(printed.contains("busy_retry_secs = 300"), "{binary}: defaults filled in: {printed}");
        assert!(printed.contains("# catalogue: 13 objects"), "{printed}");
        for (bad, field) in [(&bad_partner, "session.partner"), (&bad_consumer, "consumer.jobs_in_flight")] {
            let out = check(binary, bad);
            assert_eq!(out.status.code(), Some(2), "{binary} with a bad {field}");
            assert!(String::from_utf8_lossy(&out.stderr).contains(field), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    // The table writer also needs its tables and its queue, and names the one missing.
    let tables = dir.path().join("tables.toml");
    let queue = r#"lake_dlq = "https://sqs.eu-west-1.amazonaws.com/123456789012/zle-lake-dlq.fifo""#;
    let with_tables = test_support::CHECKED_CONFIG.replace(
        queue,
        &format!(
            "{queue}\ntables = \"https://sqs.eu-west-1.amazonaws.com/123456789012/zle-tables.fifo\"\n\
         tables_dlq = \"https://sqs.eu-west-1.amazonaws.com/123456789012/zle-tables-dlq.fifo\""
        ),
    );
    std::fs::write(&tables, format!("{with_tables}[tables]\nlocation = \"s3://acme-zuora-tables/zuora/\"\n")).unwrap();
    let out = check("table-writer", &tables);
    assert!(out.status.success(), "table-writer: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#"location = "s3://acme-zuora-tables/zuora/""#));
    let out = check("table-writer", &good);
    assert_eq!(out.status.code(), Some(2), "table-writer without [tables]");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tables.location: needed by the table writer"), "{stderr}");
}
