//! The `producer` binary: its commands, its exit codes, and its errors for bad configuration and bad input.

use chrono::Utc;
use common::ledger::Ledger;
use common::marks::PublishedMark;
use common::messages::Window;
use common::queue::OutgoingMessage;
use std::process::Output;
use test_support::{Deployment, Scratch};

async fn producer(config: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_producer"));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.args(args).env_remove("ZLE_CONFIG").env("RUST_LOG", "warn").output().await.expect("producer runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn help_lists_every_command_and_each_command_has_help() {
    let out = producer(None, &["--help"]).await;
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["serve", "submit", "backfill", "redrive", "status"] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
        let sub = producer(None, &[command, "--help"]).await;
        assert!(sub.status.success() && text(&sub.stdout).contains("Usage: producer"), "{command} --help");
    }
}

#[tokio::test]
async fn a_bad_configuration_stops_start_up_with_the_field_named() {
    let dir = Scratch::new("producer-cli");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[zuora]\nbase_url = \"https://rest.zuora.com\"\nclient_id = \"x\"\nclient_secret = \"y\"\n[session]\npartner = \"p\"\nproject = \"\"\n").unwrap();
    let out = producer(Some(&path), &["status"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("missing field `queues`") || err.contains("session.project"), "{err}");
    let missing = producer(None, &["status"]).await;
    assert!(text(&missing.stderr).contains("--config"), "{}", text(&missing.stderr));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn submit_serves_a_request_and_refuses_a_bad_one_with_its_reason() {
    let d = Deployment::start(|_| {}).await;
    let config = d.config_file();
    let out =
        producer(Some(&config), &["submit", r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("jobs "), "{}", text(&out.stdout));
    assert_eq!(test_support::drain(d.queues().jobs.as_ref()).await.len(), 1);

    let bad = producer(Some(&config), &["submit", r#"{"exportFromDate":"beginning"}"#]).await;
    assert_eq!(bad.status.code(), Some(3), "refused: do not retry");
    assert!(text(&bad.stderr).contains("fullExport"), "{}", text(&bad.stderr));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn backfill_puts_a_request_on_the_requests_queue() {
    let d = Deployment::start(|_| {}).await;
    let config = d.config_file();
    let out = producer(Some(&config), &["backfill", "--from", "2022-05-04", "--objects", "Account,Invoice"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let messages = test_support::drain(d.queues().requests.as_ref()).await;
    assert_eq!(messages.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&messages[0].body).unwrap();
    assert_eq!(body["exportFromDate"], "2022-05-04");
    assert_eq!(body["objects"], serde_json::json!(["Account", "Invoice"]));
    let said = text(&out.stdout);
    assert!(said.contains("it exports changes since 2022-05-04T00:00:00Z"), "{said}");
    assert!(said.contains("the old export read 2022-05-04 as US Pacific midnight, 2022-05-04T07:00:00Z"), "{said}");
    let unknown = producer(Some(&config), &["backfill", "--from", "2022-05-04", "--objects", "Nope"]).await;
    assert_eq!(unknown.status.code(), Some(3), "refused: do not retry");
    assert!(test_support::drain(d.queues().requests.as_ref()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn redrive_moves_dead_letters_back_and_prints_the_count() {
    let d = Deployment::start(|_| {}).await;
    let config = d.config_file();
    for i in 0..3 {
        let message = OutgoingMessage::new(format!("{{\"n\":{i}}}")).attribute("reason", format!("reason number {i}"));
        d.queues().jobs_dlq.send(message).await.unwrap();
    }
    // A look first: each dead letter with its reason, all left where they are.
    let look = producer(Some(&config), &["redrive", "--queue", "jobs", "--dry-run"]).await;
    assert!(look.status.success(), "{}", text(&look.stderr));
    let listed = text(&look.stdout);
    for i in 0..3 {
        assert!(
            listed.contains(&format!("reason: reason number {i}")) && listed.contains(&format!("{{\"n\":{i}}}")),
            "{listed}"
        );
    }
    assert!(listed.contains("3 dead letter(s)"), "{listed}");
    assert!(test_support::drain(d.queues().jobs.as_ref()).await.is_empty(), "a look moves nothing");
    let without_queue = producer(Some(&config), &["redrive"]).await;
    assert_eq!(without_queue.status.code(), Some(2), "--queue is required");
    let out = producer(Some(&config), &["redrive", "--queue", "jobs"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("moved 3 messages"), "{}", text(&out.stdout));
    assert_eq!(test_support::drain(d.queues().jobs.as_ref()).await.len(), 3);
    assert!(test_support::drain(d.queues().jobs_dlq.as_ref()).await.is_empty());
}

#[tokio::test]
async fn redriving_the_tables_queue_without_a_table_writer_names_the_missing_queue() {
    let dir = Scratch::new("producer-cli");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, test_support::CHECKED_CONFIG).unwrap();
    let out = producer(Some(&config), &["redrive", "--queue", "tables", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("queues.tables: not configured"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn status_fails_while_any_object_is_stale_and_passes_when_all_are_fresh() {
    let d = Deployment::start(|_| {}).await;
    let config_path = d.config_file();
    let config = d.config();
    let ledger = Ledger::new(d.bucket.store(), &config.ledger.bucket, &config.ledger.prefix);
    let now = Utc::now();
    let mark = |object: &str, age_hours: i64| PublishedMark {
        object: object.to_owned(),
        job_id: "2c92c0f966cd4f580166ec0ac89d5bb7".into(),
        window: Window { from: None, to: now - chrono::Duration::hours(age_hours) },
        executed_at: now - chrono::Duration::hours(age_hours),
        published_at: now,
        bucket: d.bucket.name.clone(),
        key: format!("{object}/x.csv"),
        segment: 0,
        segments: 1,
        kind: Some(common::messages::JobKind::Increment),
    };
    let catalogue = config.catalogue().unwrap();
    for object in &catalogue.objects {
        let age = if object.name == "Invoice" { 48 } else { 2 };
        ledger.marks().record(&mark(&object.name, age)).await.unwrap();
    }
    let stale = producer(Some(&config_path), &["status"]).await;
    assert_eq!(stale.status.code(), Some(1), "{}", text(&stale.stderr));
    let table = text(&stale.stdout);
    let invoice_line = table.lines().find(|l| l.starts_with("Invoice ")).unwrap();
    assert!(invoice_line.contains("STALE"), "{table}");
    assert!(!table.lines().find(|l| l.starts_with("Account ")).unwrap().contains("STALE"), "{table}");
    // The same for automation: one JSON document on stdout, the same exit code.
    let json = producer(Some(&config_path), &["status", "--json"]).await;
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("stdout is one JSON document");
    assert_eq!(report["stale"], 1);
    let stale_objects: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["stale"] == true)
        .map(|o| o["object"].as_str().unwrap())
        .collect();
    assert_eq!(stale_objects, ["Invoice"]);
    // The scheduled check's metric line, which the staleness alarm reads.
    let metrics = producer(Some(&config_path), &["status", "--metrics"]).await;
    let line = text(&metrics.stdout).lines().find(|l| l.contains("StaleObjects")).map(str::to_owned).unwrap();
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["StaleObjects"], 1.0);

    ledger.marks().record(&mark("Invoice", 1)).await.unwrap();
    let fresh = producer(Some(&config_path), &["status"]).await;
    assert!(fresh.status.success(), "{}", text(&fresh.stdout));
    let lenient = producer(Some(&config_path), &["status", "--stale-after-hours", "100"]).await;
    assert!(lenient.status.success());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn serve_serves_requests_and_stops_cleanly_on_sigterm() {
    let d = Deployment::start(|_| {}).await;
    let config = d.config_file();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_producer"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("producer serve starts");
    d.queues()
        .requests
        .send(OutgoingMessage::new(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#))
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for _ in 0..30 {
        jobs.extend(test_support::drain(d.queues().jobs.as_ref()).await);
        if !jobs.is_empty() {
            break;
        }
    }
    assert_eq!(jobs.len(), 1, "the served request's job is on the jobs queue");
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn the_configuration_can_come_from_the_environment_as_toml() {
    let d = Deployment::start(|_| {}).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_producer"))
        .arg("status")
        .env_remove("ZLE_CONFIG")
        .env("ZLE_CONFIG_TOML", &d.config_text)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("never exported"), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn commands_that_never_call_zuora_start_without_its_secret_and_those_that_do_name_it() {
    let d = Deployment::start(|_| {}).await;
    let config = d.dir().join("no-secret.toml");
    let with = d.config_text.clone();
    let without: String = with.lines().filter(|l| !l.starts_with("client_secret")).map(|l| format!("{l}\n")).collect();
    assert_ne!(without, with, "the test configuration had a secret to take out");
    std::fs::write(&config, without).unwrap();
    let run = async |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_producer"));
        command.arg("--config").arg(&config).args(args).env_remove("ZLE_CONFIG").env_remove("ZUORA_CLIENT_SECRET");
        command.env("RUST_LOG", "warn").output().await.expect("producer runs")
    };
    d.queues().jobs_dlq.send(OutgoingMessage::new("{\"n\":1}".to_owned())).await.unwrap();
    let out = run(&["redrive", "--queue", "jobs"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(test_support::drain(d.queues().jobs.as_ref()).await.len(), 1);
    let out = run(&["backfill", "--from", "2022-05-04"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["submit", r#"{"exportFromDate":"afterLastIncrement"}"#]).await;
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    assert!(text(&out.stderr).contains("ZUORA_CLIENT_SECRET"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn version_names_the_commit_built_and_the_catalogues() {
    let out = producer(None, &["--version"]).await;
    let version = text(&out.stdout);
    let head = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().unwrap();
    let head = text(&head.stdout);
    assert!(version.starts_with("producer 0.1.0 (commit ") && version.contains(", catalogues "), "{version}");
    if !head.trim().is_empty() {
        assert!(version.contains(head.trim()), "{version} is not of {head}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (moto's S3 and Garage)"]
async fn the_ledger_proves_its_store_honours_conditional_writes_as_moto_does_and_garage_does_not() {
    use common::store::{ObjectStore, S3Store};
    let ledger_on = |aws: test_support::Aws, bucket: String| {
        let store: std::sync::Arc<dyn ObjectStore> = std::sync::Arc::new(S3Store::new(aws.s3));
        Ledger::new(store, bucket, "ledger/")
    };
    let moto = test_support::Aws::connect().await;
    let bucket = moto.bucket("ledger").await;
    let ledger = ledger_on(moto, bucket);
    ledger.prove_conditional_writes().await.unwrap();
    ledger.prove_conditional_writes().await.expect("a second start finds the probe and proves it again");

    // Garage 2.5 takes a create over an existing object and an update of a version that is not the object's.
    let garage = test_support::Aws::connect_strict().await;
    let bucket = garage.bucket("ledger").await;
    let refused = ledger_on(garage, bucket).prove_conditional_writes().await.unwrap_err();
    let said = refused.to_string();
    assert!(said.contains("ignores If-None-Match") && said.contains("ledger/probe/"), "{said}");
    let chain: Vec<&(dyn std::error::Error + 'static)> = vec![&refused];
    assert_eq!(common::exit::Exit::of_failure(chain), common::exit::Exit::Usage, "exit 2: fix the deployment");
}
