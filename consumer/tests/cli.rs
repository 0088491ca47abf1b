//! The `consumer` binary: help, and SIGTERM in the middle of a stream, with and without enough grace.

use std::time::Duration;
use test_support::Deployment;
use zuora_sim::FaultRule;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn help_describes_the_consumer() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_consumer")).arg("--help").output().await.unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--config"), "{}", text(&out.stdout));
}

/// Starts `consumer` on a deployment whose single job streams slowly, and sends SIGTERM once a multipart upload
/// is open (and then Ctrl-C's SIGINT when `twice`). Returns the exit status.
async fn sigterm_mid_stream(d: &Deployment, grace_secs: u64, twice: bool) -> std::process::ExitStatus {
    let config = d.dir().join("grace.toml");
    let grace = format!("shutdown_grace_secs = {grace_secs}");
    std::fs::write(&config, test_support::with_settings(&d.config_text, &[("consumer", &grace)])).unwrap();
    let producer = producer_for(d).await;
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["InvoiceItem"]}"#, "slow").await.unwrap();
    // About 6 MB at 1.5 MB/s: the file takes about four seconds to stream.
    d.sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        bandwidth_bytes_per_sec: Some(1_500_000),
        ..FaultRule::default()
    }]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_consumer"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut open = false;
    for _ in 0..200 {
        if d.bucket.open_uploads().await > 0 {
            open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open, "the consumer started streaming");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    if twice {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exits in time").unwrap()
}

async fn producer_for(d: &Deployment) -> producer::service::Producer {
    producer::service::Producer::from_config(&d.config(), &d.services()).unwrap()
}

async fn objects(d: &Deployment) -> usize {
    d.bucket.keys("InvoiceItem/").await.len()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn sigterm_mid_stream_finishes_the_file_within_the_grace_period() {
    let d = Deployment::start(|c| {
        c.rows.insert("InvoiceItem".into(), 35_000);
    })
    .await;
    let status = sigterm_mid_stream(&d, 60, false).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(objects(&d).await, 2, "the CSV and its metadata");
    assert_eq!(test_support::drain(d.queues().lake.as_ref()).await.len(), 1);
    assert!(d.queues().jobs.receive(1, Duration::from_secs(1)).await.unwrap().is_empty(), "the job message is deleted");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn sigterm_mid_stream_past_the_grace_period_aborts_the_upload_and_releases_the_message() {
    let d = Deployment::start(|c| {
        c.rows.insert("InvoiceItem".into(), 35_000);
    })
    .await;
    let status = sigterm_mid_stream(&d, 1, false).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(d.bucket.open_uploads().await, 0, "aborted");
    assert_eq!(objects(&d).await, 0, "nothing published");
    let released = d.queues().jobs.receive(1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(released.len(), 1, "the message is visible again at once, not after its visibility timeout");
    assert_eq!(released[0].receive_count, 2);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn a_second_signal_mid_stream_stops_at_once_with_exit_130_and_publishes_nothing() {
    let d = Deployment::start(|c| {
        c.rows.insert("InvoiceItem".into(), 35_000);
    })
    .await;
    let status = sigterm_mid_stream(&d, 60, true).await;
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(objects(&d).await, 0, "nothing published: the job message comes back after its visibility timeout");
    assert!(test_support::drain(d.queues().lake.as_ref()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the binary shares queues with the test)"]
async fn a_published_file_is_logged_as_json_with_its_fields_and_measured_in_embedded_metric_format() {
    let d = Deployment::start(|_| {}).await;
    let config = d.config_file();
    producer_for(&d)
        .await
        .serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "json")
        .await
        .unwrap();
    // As in a container: stderr is not a terminal and no format is asked for.
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_consumer"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove(common::logging::LOG_FORMAT_ENV)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if objects(&d).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let json_lines = |bytes: &[u8]| -> Vec<serde_json::Value> {
        text(bytes).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    };
    let logs = json_lines(&out.stderr);
    let published = logs.iter().find(|l| l["message"] == "published").unwrap_or_else(|| panic!("{logs:?}"));
    assert_eq!((published["level"].as_str(), published["object"].as_str()), (Some("INFO"), Some("Account")));
    let records = published["record_count"].as_u64().expect("record_count, a number");
    assert!(published["location"].as_str().unwrap().starts_with("s3://"), "{published}");
    assert!(published["timestamp"].is_string() && published["spans"].is_array(), "{published}");

    let metrics = json_lines(&out.stdout);
    let file = metrics.iter().find(|l| l["Object"] == "Account").unwrap_or_else(|| panic!("{metrics:?}"));
    let directive = &file["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], common::metrics::NAMESPACE);
    assert_eq!(file["Records"].as_f64(), Some(records as f64));
    assert_eq!(file["Files"].as_f64(), Some(1.0));
    assert!(file["Bytes"].as_f64().unwrap() > 0.0 && file["LagSeconds"].as_f64().unwrap() >= 0.0, "{file}");
    for metric in directive["Metrics"].as_array().unwrap() {
        assert!(file[metric["Name"].as_str().unwrap()].is_number(), "{metric}");
    }
}
