//! The Zuora client against the simulator: every behaviour the client promises, over real HTTP.

use common::secret::Secret;
use common::zuora::{
    BatchQueryRequest, BatchStatus, DataCenter, DeletedFormat, DeletedSpec, Job, JobStatus, Query, RetryPolicy,
    ZuoraClient, ZuoraConfig, ZuoraError,
};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use zuora_sim::{FaultRule, Mutation, RunningSim, SimConfig, Simulator};

const POLL: Duration = Duration::from_millis(20);
const DEADLINE: Duration = Duration::from_secs(30);

async fn start_sim(tune: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut config = SimConfig::default();
    config.settings.job_execution_secs = 0.0;
    tune(&mut config);
    Simulator::start(config).await.expect("simulator starts")
}

fn config_for(sim: &RunningSim) -> ZuoraConfig {
    let mut config =
        ZuoraConfig::new(sim.base_url(), "0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b", Secret::new("sim-client-secret"));
    config.retry = RetryPolicy { max_attempts: 4, base_delay_ms: 5, max_delay_ms: 50, max_retry_after_secs: 2 };
    config
}

fn client_for(sim: &RunningSim) -> ZuoraClient {
    ZuoraClient::new(config_for(sim)).expect("client builds")
}

fn stateful(project: &str) -> BatchQueryRequest {
    let account = Query::export(
        "Account",
        "SELECT Id, Name, Notes, UpdatedDate FROM Account",
        Some(DeletedSpec { column: "IsDeleted".into(), format: DeletedFormat::Boolean, force_export: None }),
    );
    BatchQueryRequest::stateful("client-test", "test-partner", project, vec![account])
}

/// Downloads a file whole (fine for the small test files) and parses it with an independent RFC 4180 reader.
async fn download_records(client: &ZuoraClient, file_id: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut stream = client.download(file_id).await.expect("download starts");
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("chunk"));
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body.as_slice());
    let header = reader.headers().expect("header").iter().map(str::to_owned).collect();
    let records = reader.records().map(|r| r.expect("record").iter().map(str::to_owned).collect()).collect();
    (header, records)
}

async fn export(client: &ZuoraClient, request: &BatchQueryRequest) -> Job {
    static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
    let key = format!("key-{}", NEXT_KEY.fetch_add(1, Ordering::SeqCst));
    let submitted = client.submit(request, &key).await.expect("submit");
    assert_eq!(submitted.status, JobStatus::Submitted);
    client.wait_for_job(&submitted.id, POLL, DEADLINE).await.expect("job finishes")
}

#[tokio::test]
async fn exports_a_full_load_whose_records_match_record_count() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    let job = export(&client, &stateful("full")).await;
    assert_eq!(job.status, JobStatus::Completed);
    let batch = &job.batches[0];
    assert_eq!(batch.full, Some(true));
    let (header, records) = download_records(&client, batch.file_ids()[0]).await;
    assert_eq!(header, ["Account.IsDeleted", "Account.Id", "Account.Name", "Account.Notes", "Account.UpdatedDate"]);
    assert_eq!(Some(records.len() as u64), batch.record_count);
    assert!(records.iter().any(|r| r[3].contains('\n')), "some Notes hold newlines inside quotes");
}

#[tokio::test]
async fn an_expired_token_is_refreshed_in_the_middle_of_a_run() {
    let sim = start_sim(|c| c.token_lifetime_secs = 3599).await;
    let client = client_for(&sim);
    let job = export(&client, &stateful("token")).await;
    // Two hours later the cached token is dead on the server although the client's own clock says it is fresh.
    sim.control().advance_clock(Duration::from_secs(2 * 3600));
    let again = client.job(&job.id).await.expect("the client fetches a new token after the 401");
    assert_eq!(again.id, job.id);
}

#[tokio::test]
async fn wrong_credentials_are_a_permanent_error_that_does_not_show_the_secret() {
    let sim = start_sim(|_| {}).await;
    let mut config = config_for(&sim);
    config.client_secret = Secret::new("not-the-secret");
    let client = ZuoraClient::new(config).unwrap();
    let err = client.job("0123456789abcdef0123456789abcdef").await.unwrap_err();
    assert!(matches!(err, ZuoraError::Unauthorized { endpoint: "token", .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_servers_delay_and_then_succeed() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    let job = export(&client, &stateful("429")).await;
    sim.control().set_faults(vec![FaultRule {
        endpoint: "job".into(),
        status: Some(429),
        retry_after_secs: Some(1),
        times: Some(2),
        ..FaultRule::default()
    }]);
    let started = std::time::Instant::now();
    let again = client.job(&job.id).await.expect("succeeds after two 429s");
    assert_eq!(again.status, JobStatus::Completed);
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 1 was honoured twice");
}

#[tokio::test]
async fn server_errors_that_persist_end_as_a_retryable_unavailable_error() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    sim.control().set_faults(vec![FaultRule { endpoint: "submit".into(), status: Some(503), ..FaultRule::default() }]);
    let err = client.submit(&stateful("503"), "k").await.unwrap_err();
    assert!(matches!(err, ZuoraError::Unavailable { status: 503, attempts: 4, .. }), "{err:?}");
    assert!(err.is_retryable());
    sim.control().set_faults(vec![FaultRule {
        endpoint: "submit".into(),
        status: Some(500),
        times: Some(1),
        ..FaultRule::default()
    }]);
    let job = client.submit(&stateful("503"), "k2").await.expect("one 500 is retried");
    assert_eq!(job.status, JobStatus::Submitted);
}

#[tokio::test]
async fn a_bad_query_is_reported_with_zuoras_code_and_is_not_retried() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    let query = Query::export("Account", "SELECT Id, NoSuchField FROM Account", None);
    let request = BatchQueryRequest::stateful("bad", "p", "bad", vec![query]);
    let err = client.submit(&request, "bad").await.unwrap_err();
    assert_eq!(err.code(), Some("90005"), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_aborted_batch_ends_the_job_with_its_message() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    sim.control().abort_next_batch("Account", "java.lang.RuntimeException: You must specify a select.");
    let job = export(&client, &stateful("abort")).await;
    assert_eq!(job.status, JobStatus::Aborted);
    assert_eq!(job.batches[0].status, BatchStatus::Aborted);
    assert!(job.batches[0].message.as_deref().unwrap_or_default().contains("You must specify a select"));
}

#[tokio::test]
async fn an_unknown_status_is_polled_until_the_deadline_not_forever() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    let job = client.submit(&stateful("unknown"), "u").await.unwrap();
    sim.control().set_faults(vec![FaultRule {
        endpoint: "job".into(),
        job_status: Some("paused".into()),
        ..FaultRule::default()
    }]);
    let err = client.wait_for_job(&job.id, POLL, Duration::from_millis(300)).await.unwrap_err();
    match err {
        ZuoraError::Deadline { last_status, .. } => assert_eq!(last_status, "paused"),
        other => panic!("expected a deadline, got {other:?}"),
    }
}

#[tokio::test]
async fn a_purged_file_is_reported_as_purged() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    let job = export(&client, &stateful("purge")).await;
    let file_id = job.batches[0].file_ids()[0].to_owned();
    sim.control().advance_clock(Duration::from_secs(73 * 3600));
    let err = client.download(&file_id).await.err().expect("purged");
    assert!(matches!(&err, ZuoraError::FilePurged { file_id: f } if *f == file_id), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_reported_as_too_large() {
    let sim = start_sim(|c| c.settings.max_file_bytes = Some(1_000)).await;
    let client = client_for(&sim);
    let job = export(&client, &stateful("large")).await;
    let err = client.download(job.batches[0].file_ids()[0]).await.err().expect("too large");
    assert!(matches!(&err, ZuoraError::FileTooLarge { limit, .. } if !limit.is_empty()), "{err:?}");
}

#[tokio::test]
async fn a_connection_reset_in_the_middle_of_a_file_is_a_retryable_stream_error() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    let job = export(&client, &stateful("reset")).await;
    sim.control().set_faults(vec![FaultRule {
        endpoint: "file".into(),
        reset_after_bytes: Some(2_000),
        times: Some(1),
        ..FaultRule::default()
    }]);
    let file_id = job.batches[0].file_ids()[0];
    let mut stream = client.download(file_id).await.expect("headers arrive");
    let mut received = 0;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received += bytes.len(),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    let err = failure.expect("the body fails part-way");
    assert!(err.is_retryable(), "{err:?}");
    assert!(received <= 2_000, "{received} bytes before the reset");
    // The fault was for one request: the retry gets the whole file.
    let (_, records) = download_records(&client, file_id).await;
    assert_eq!(Some(records.len() as u64), job.batches[0].record_count);
}

#[tokio::test]
async fn files_download_from_every_configured_path_and_report_content_length() {
    let sim = start_sim(|c| c.settings.content_length = true).await;
    let job = export(&client_for(&sim), &stateful("paths")).await;
    let file_id = job.batches[0].file_ids()[0];
    for path in [
        "/v1/file/{fileId}",
        "/v1/files/{fileId}",
        "/v1/batch-query/file/{fileId}",
        "/apps/api/file/{fileId}",
        "/apps/api/batch-query/file/{fileId}",
    ] {
        let mut config = config_for(&sim);
        config.file_path = path.into();
        let client = ZuoraClient::new(config).unwrap();
        let stream = client.download(file_id).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(stream.content_length.is_some_and(|n| n > 0), "{path}: Content-Length");
        assert!(stream.content_type.as_deref().unwrap_or_default().starts_with("text/csv"), "{path}");
        let (_, records) = download_records(&client, file_id).await;
        assert_eq!(Some(records.len() as u64), job.batches[0].record_count, "{path}");
    }
}

#[tokio::test]
async fn cancel_stops_a_running_job_and_is_refused_for_a_finished_one() {
    let sim = start_sim(|c| c.settings.job_execution_secs = 3600.0).await;
    let client = client_for(&sim);
    let job = client.submit(&stateful("cancel"), "c").await.unwrap();
    let cancelled = client.cancel(&job.id).await.expect("cancel");
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(client.job(&job.id).await.unwrap().status, JobStatus::Cancelled);

    sim.control().update_settings(|s| s.job_execution_secs = 0.0);
    let done = export(&client, &stateful("cancel-done")).await;
    let err = client.cancel(&done.id).await.unwrap_err();
    assert_eq!(err.code(), Some("90003"), "{err:?}");
}

#[tokio::test]
async fn last_completed_job_is_none_before_any_and_the_job_after() {
    let sim = start_sim(|_| {}).await;
    let client = client_for(&sim);
    assert!(client.last_completed_job("test-partner", "last").await.unwrap().is_none());
    let job = export(&client, &stateful("last")).await;
    let last = client.last_completed_job("test-partner", "last").await.unwrap().expect("a completed job");
    assert_eq!(last.id, job.id);
}

#[tokio::test]
async fn an_increment_holds_changes_and_deleted_rows_and_incremental_time_is_read_in_pacific_time() {
    let sim = start_sim(|c| c.data_center = zuora_sim::DataCenter::Us).await;
    let client = client_for(&sim);
    let control = sim.control();
    export(&client, &stateful("window")).await;

    let before_changes = control.now();
    control.advance_clock(Duration::from_secs(600));
    let changes =
        control.mutate("Account", Mutation { insert: 2, update: 3, delete: 1, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(60));

    // A backfill from just before the changes, rendered in Pacific time by the client: exactly the changes.
    let backfill = stateful("window").with_incremental_time(before_changes, DataCenter::Us);
    let job = export(&client, &backfill).await;
    let batch = &job.batches[0];
    assert_eq!(batch.full, Some(false));
    let (_, records) = download_records(&client, batch.file_ids()[0]).await;
    let mut live: Vec<&str> = records.iter().filter(|r| r[0] == "false").map(|r| r[1].as_str()).collect();
    let deleted: Vec<&str> = records.iter().filter(|r| r[0] == "true").map(|r| r[1].as_str()).collect();
    live.sort_unstable();
    let mut expected: Vec<&str> = changes.inserted.iter().chain(&changes.updated).map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(live, expected);
    assert_eq!(deleted, changes.deleted.iter().map(String::as_str).collect::<Vec<_>>());

    // Rendered as UTC, the same wall-clock text is read 7 or 8 hours later in Los Angeles, after the changes.
    let wrong_zone = stateful("window").with_incremental_time(before_changes, DataCenter::Eu);
    let job = export(&client, &wrong_zone).await;
    assert_eq!(job.batches[0].record_count, Some(0), "an EU rendering for a US tenant misses the changes");
}

#[tokio::test]
async fn segmented_full_loads_come_as_several_files_each_with_a_header() {
    let sim = start_sim(|c| c.settings.segment_rows = Some(70)).await;
    let client = client_for(&sim);
    let job = export(&client, &stateful("segments")).await;
    let batch = &job.batches[0];
    let files = batch.file_ids();
    assert!(files.len() > 1, "{} files", files.len());
    let mut total = 0;
    for file_id in files {
        let (header, records) = download_records(&client, file_id).await;
        assert_eq!(header[0], "Account.IsDeleted");
        assert!(records.len() <= 70);
        total += records.len() as u64;
    }
    assert_eq!(Some(total), batch.record_count);
}

#[tokio::test]
async fn on_a_multi_entity_tenant_every_call_names_the_configured_entity() {
    let sim = start_sim(|c| c.entity_ids = vec!["8a8082c4-north".into(), "8a8082c4-south".into()]).await;
    // Without an entity the tenant refuses the call, with its reason and HTTP status.
    match client_for(&sim).submit(&stateful("entities"), "no-entity").await {
        Err(ZuoraError::Http { status: 400, body, .. }) => assert!(body.contains("Zuora-Entity-Ids"), "{body}"),
        other => panic!("{other:?}"),
    }
    let mut config = config_for(&sim);
    config.entity_id = Some("8a8082c4-south".into());
    let client = ZuoraClient::new(config).unwrap();
    let job = export(&client, &stateful("entities")).await;
    let file = job.batches[0].file_id.clone().unwrap();
    let (header, records) = download_records(&client, &file).await;
    assert_eq!((header[1].as_str(), records.len()), ("Account.Id", 200), "submit, poll and download in the entity");
    let refused = client.cancel(&job.id).await.unwrap_err().to_string();
    assert!(!refused.contains("Zuora-Entity-Ids"), "a finished job is refused for itself, not for want of an entity");
}

/// A server that answers every request with `answer`, counting the connections it was given.
async fn canned_server(answer: String) -> (String, std::sync::Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(AtomicU64::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = vec![0; 16 * 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (address, connections)
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed_so_the_client_secret_stays_with_zuora() {
    // A host that would collect the client secret, and a tenant URL that redirects the token call there (a 307
    // makes a client post the same form again).
    let (collector, collected) = canned_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_owned()).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {collector}/oauth/token\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let (tenant, _) = canned_server(redirect).await;
    let mut config = ZuoraConfig::new(tenant, "id", Secret::new("the-client-secret"));
    config.retry = RetryPolicy { max_attempts: 1, base_delay_ms: 1, max_delay_ms: 1, max_retry_after_secs: 1 };
    let client = ZuoraClient::new(config).unwrap();
    let err = client.job("0123456789abcdef0123456789abcdef").await.unwrap_err();
    assert_eq!(collected.load(Ordering::SeqCst), 0, "the redirect was followed to another host: {err:?}");
    assert!(!format!("{err} {err:?}").contains("the-client-secret"), "{err:?}");
}
