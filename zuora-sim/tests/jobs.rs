//! Job life cycle over HTTP: cancellation, the last completed job of a session, reused queries, aborted batches,
//! refused bodies, and the control API's view of jobs and settings.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Api, QUERY, json_of, stateful};

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap_or_else(|| panic!("no id: {job}")).to_owned()
}

async fn cancel(api: &Api, job: &str) -> Value {
    let response = api.http.delete(api.url(&format!("/v1/batch-query/jobs/{job}"))).bearer_auth(&api.token).send();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn cancelling_stops_an_unfinished_job_lets_the_next_one_start_and_refuses_finished_ones() {
    let api = Api::start(|c| c.settings.job_execution_secs = 30.0).await;
    let first = id(&api.submit(stateful("cancel", QUERY)).await);
    let second = id(&api.submit(stateful("cancel", QUERY)).await);
    assert_eq!(api.job(&second).await["status"], "submitted");

    let cancelled = cancel(&api, &first).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["id"], first);
    assert!(cancelled["batches"][0].get("fileId").is_none());
    assert_eq!(api.job(&first).await["status"], "cancelled");
    assert_eq!(api.job(&second).await["status"], "executing", "the session's next job no longer waits");
    assert_eq!(cancel(&api, &first).await["errorCode"], "90003", "already finished");

    api.sim.control().advance_clock(Duration::from_secs(31));
    let done = api.job(&second).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["batches"][0]["full"], false, "the cancelled job had moved the session (our choice)");
    assert_eq!(cancel(&api, &second).await["errorCode"], "90003");
    assert_eq!(cancel(&api, "00000000000000000000000000000000").await["errorCode"], "90002");
}

#[tokio::test]
async fn the_last_completed_job_of_a_session_is_404_until_one_completes() {
    let api = Api::start(|_| {}).await;
    let path = "/v1/batch-query/jobs/partner/p/project/last";
    let none = api.get(path).await;
    assert_eq!(none.status(), 404);
    assert_eq!(none.json::<Value>().await.unwrap()["reasons"][0]["code"], "90002");

    let (done, _) = api.export(stateful("last", QUERY)).await;
    let last: Value = api.get(path).await.json().await.unwrap();
    assert_eq!((last["id"].clone(), last["status"].clone()), (done["id"].clone(), json!("completed")));
    assert_eq!(last["batches"][0]["fileId"], done["batches"][0]["fileId"]);

    api.sim.control().update_settings(|s| s.job_execution_secs = 600.0);
    let running = id(&api.submit(stateful("last", QUERY)).await);
    let last: Value = api.get(path).await.json().await.unwrap();
    assert_eq!(last["id"], done["id"], "a running job is not the last completed one");
    assert_ne!(last["id"], running);
    assert_eq!(api.get("/v1/batch-query/jobs/partner/p/project/other").await.status(), 404);
}

#[tokio::test]
async fn a_stateful_job_without_queries_reuses_the_sessions_queries_incrementally() {
    let api = Api::start(|_| {}).await;
    api.export(stateful("reuse", QUERY)).await;
    api.sim.control().advance_clock(Duration::from_secs(5));
    api.sim
        .control()
        .mutate("Account", zuora_sim::Mutation { insert: 0, update: 3, delete: 0, ..zuora_sim::Mutation::default() })
        .unwrap();
    api.sim.control().advance_clock(Duration::from_secs(5));
    let mut body = stateful("reuse", QUERY);
    body.as_object_mut().unwrap().remove("queries");
    let (job, files) = api.export(body).await;
    assert_eq!(job["batches"][0]["query"], QUERY);
    assert_eq!(job["batches"][0]["full"], false);
    assert_eq!(files[0].len() - 1, 3);
    let mut fresh = stateful("never-ran", QUERY);
    fresh.as_object_mut().unwrap().remove("queries");
    assert_eq!(api.submit(fresh).await["errorCode"], "90016", "nothing to reuse");
}

#[tokio::test]
async fn an_aborted_batch_aborts_its_job_with_the_message() {
    let api = Api::start(|_| {}).await;
    let abort = json!({"object": "account", "message": "java.lang.RuntimeException: You must specify a select."});
    assert_eq!(api.http.post(api.url("/sim/abort-next")).json(&abort).send().await.unwrap().status(), 200);
    let (job, files) = api.export(stateful("abort", QUERY)).await;
    assert_eq!(job["status"], "aborted");
    assert_eq!(job["batches"][0]["status"], "aborted");
    assert_eq!(job["batches"][0]["message"], abort["message"]);
    assert!(files.is_empty());
    let (job, _) = api.export(stateful("abort", QUERY)).await;
    assert_eq!(job["status"], "completed", "only the next batch");
}

#[tokio::test]
async fn a_query_that_would_run_past_the_time_limit_is_killed_and_a_smaller_one_runs() {
    // 100 s a record: Account's 200 records take 20,000 s, past the 3-hour limit; 50 of them take 5,000 s.
    let api = Api::start(|c| c.settings.query_secs_per_record = 100.0).await;
    let (job, files) = api.export(stateful("limit", QUERY)).await;
    assert_eq!((job["status"].as_str(), job["batches"][0]["status"].as_str()), (Some("aborted"), Some("aborted")));
    assert!(job["batches"][0]["message"].as_str().unwrap().contains("90029"), "{job}");
    assert!(files.is_empty());
    let (job, files) = api.export(stateful("limit-small", "select Id, Name, UpdatedDate from Account limit 50")).await;
    assert_eq!((job["status"].as_str(), files[0].len() - 1), (Some("completed"), 50));
}

#[tokio::test]
async fn submit_answers_follow_the_documented_shapes_and_lenient_types() {
    let api = Api::start(|_| {}).await;
    let body = json!({"format": "csv", "version": 1.1, "name": "n".repeat(40), "partner": "p", "project": "shapes",
                      "useQueryLabels": true, "offset": 60, "somethingNew": {"ignored": true},
                      "queries": [{"query": QUERY, "type": "zoqlexport", "apiVersion": "58.0"}]});
    let job = api.submit(body).await;
    assert_eq!(job["status"], "submitted");
    assert_eq!(job["version"], "1.1");
    assert_eq!(job["format"], "CSV");
    assert_eq!(job["name"].as_str().unwrap().len(), 32);
    assert_eq!(job["offset"], 60);
    let batch = &job["batches"][0];
    assert_eq!(
        (&batch["status"], &batch["recordCount"], &batch["batchType"], &batch["apiVersion"], &batch["full"]),
        (&json!("pending"), &json!(0), &json!("zoqlexport"), &json!("58.0"), &json!(true))
    );
    assert_eq!(batch["batchId"].as_str().unwrap().len(), 32);
    assert_eq!(id(&job).len(), 32);
    let read = api.finished(&id(&job)).await;
    assert_eq!(read["sourceData"], "LIVE");
    let start = read["startTime"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_str(start, "%Y-%m-%dT%H:%M:%S%z").is_ok(), "{start}");
    let window = &api.sim.control().jobs()[0].batches[0];
    let expected = api.sim.control().now() - chrono::Duration::seconds(60);
    assert!(window.to <= expected, "offset pulls the upper bound back");

    let zip = api.submit(json!({"format": "zip", "queries": [{"query": QUERY}]})).await;
    assert_eq!((zip["errorCode"].as_str(), zip["status"].as_str()), (Some("90005"), Some("error")));
    assert!(zip["batches"][0].get("batchId").is_none());
    let json_format =
        api.http.post(api.url("/v1/batch-query")).bearer_auth(&api.token).json(&json!({"format": "json"})).send();
    let json_format = json_format.await.unwrap();
    assert_eq!(json_format.status(), 400);
    assert_eq!(json_format.json::<Value>().await.unwrap()["code"], 50000090);
    let legacy_path = api
        .http
        .post(api.url("/apps/api/batch-query/"))
        .bearer_auth(&api.token)
        .json(&json!({"queries": [{"query": QUERY}]}))
        .send()
        .await
        .unwrap();
    assert!(legacy_path.json::<Value>().await.unwrap()["id"].is_string());
}

#[tokio::test]
async fn the_control_api_lists_jobs_with_windows_and_patches_settings() {
    let api = Api::start(|_| {}).await;
    let settings = json!({"job_execution_secs": 120.0, "line_ending": "\r\n"});
    let patched = json_of(api.http.patch(api.url("/sim/settings")).json(&settings)).await;
    assert_eq!(
        (patched["job_execution_secs"].as_f64(), patched["max_concurrent_jobs"].as_u64()),
        (Some(120.0), Some(50))
    );
    let bad = api.http.patch(api.url("/sim/settings")).json(&json!({"nope": 1})).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    let job = id(&api.submit(stateful("listed", QUERY)).await);
    let clock = json_of(api.http.get(api.url("/sim/clock"))).await;
    let advanced = json_of(api.http.post(api.url("/sim/clock/advance")).json(&json!({"seconds": 121}))).await;
    assert!(advanced["now"].as_str().unwrap() > clock["now"].as_str().unwrap());
    let jobs = json_of(api.http.get(api.url("/sim/jobs"))).await;
    let listed = &jobs[0];
    assert_eq!((listed["id"].as_str(), listed["status"].as_str()), (Some(job.as_str()), Some("completed")));
    assert_eq!((listed["partner"].as_str(), listed["project"].as_str()), (Some("p"), Some("listed")));
    let batch = &listed["batches"][0];
    assert_eq!((batch["full"].as_bool(), batch["recordCount"].as_u64()), (Some(true), Some(200)));
    assert!(batch["from"].is_null() && batch["to"].is_string());

    let file = api.job(&job).await["batches"][0]["fileId"].as_str().unwrap().to_owned();
    let body = api.get_basic(&format!("/v1/file/{file}")).await.text().await.unwrap();
    assert!(body.starts_with("Account.IsDeleted,Account.Id,Account.Name,Account.UpdatedDate\r\n"));
}

#[tokio::test]
async fn a_queued_job_reads_the_data_as_of_when_it_starts_and_the_next_increment_continues_from_there() {
    // Zuora records a job's "Transaction Start Date": its data, and where the session's next increment starts.
    let api = Api::start(|c| c.settings.job_execution_secs = 1.0).await;
    let control = api.sim.control();
    let (first, _) = api.export(stateful("queued", QUERY)).await;
    assert_eq!(first["batches"][0]["full"], true);
    control.update_settings(|s| s.job_queue_secs = 600.0);
    let queued = id(&api.submit(stateful("queued", QUERY)).await);
    // Changed while the job waits in Zuora's queue: the job, when it starts, reads them.
    control.advance_clock(Duration::from_secs(100));
    let changed = control
        .mutate("Account", zuora_sim::Mutation { insert: 2, update: 3, delete: 0, ..zuora_sim::Mutation::default() })
        .unwrap();
    control.advance_clock(Duration::from_secs(600));
    control.update_settings(|s| s.job_queue_secs = 0.0);
    let done = api.finished(&queued).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["batches"][0]["recordCount"], 5, "the changes made before it started: {changed:?}");
    // The next increment starts where that job started, not where it was submitted: nothing twice.
    control.advance_clock(Duration::from_secs(60));
    let (next, _) = api.export(stateful("queued", QUERY)).await;
    assert_eq!(next["batches"][0]["recordCount"], 0);
}
