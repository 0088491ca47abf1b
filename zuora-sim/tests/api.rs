//! The simulator over HTTP, with a bare HTTP client: the documented API, stateful semantics in sequence, errors,
//! faults and the control API.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Api, CLIENT_ID, QUERY, json_of, stateful};
use zuora_sim::Mutation;

#[tokio::test]
async fn stateful_sessions_go_full_then_incremental_then_full_on_a_changed_query() {
    let api = Api::start(|_| {}).await;
    let control = api.sim.control();

    // First run: a full load, no deleted rows, every live row.
    let (job, files) = api.export(stateful("seq", QUERY)).await;
    assert_eq!(job["batches"][0]["full"], true);
    let full = &files[0];
    assert_eq!(full[0], ["Account.IsDeleted", "Account.Id", "Account.Name", "Account.UpdatedDate"]);
    assert_eq!(full.len() - 1, 200);
    assert!(full[1..].iter().all(|r| r[0] == "false"));
    assert_eq!(job["batches"][0]["recordCount"], 200);

    // Changes, then an incremental run: the changes and the deleted row, flagged true in the first column.
    control.advance_clock(Duration::from_secs(60));
    let changes =
        control.mutate("Account", Mutation { insert: 2, update: 1, delete: 1, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(60));
    let (job, files) = api.export(stateful("seq", QUERY)).await;
    assert_eq!(job["batches"][0]["full"], false);
    let rows = &files[0][1..];
    assert_eq!(rows.len(), 4);
    let deleted: Vec<&str> = rows.iter().filter(|r| r[0] == "true").map(|r| r[1].as_str()).collect();
    assert_eq!(deleted, changes.deleted.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(rows.iter().filter(|r| r[0] == "true").all(|r| !r[1].is_empty() && !r[3].is_empty()), "base fields filled");

    // Nothing changed since: an empty increment is a header-only file.
    let (job, files) = api.export(stateful("seq", QUERY)).await;
    assert_eq!((job["batches"][0]["full"].clone(), files[0].len()), (json!(false), 1));

    // A changed query (a field added) is a full load again.
    let (job, files) = api.export(stateful("seq", "select Id, Name, Status, UpdatedDate from Account")).await;
    assert_eq!(job["batches"][0]["full"], true);
    assert_eq!(files[0].len() - 1, 201, "200 + 2 inserted - 1 deleted");

    // incrementalTime overrides the lower bound and does not move the session.
    control.advance_clock(Duration::from_secs(60));
    control.mutate("Account", Mutation { insert: 0, update: 2, delete: 0, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(60));
    let mut backfill = stateful("seq", "select Id, Name, Status, UpdatedDate from Account");
    backfill["incrementalTime"] = json!("2019-01-01 00:00:00");
    let (job, files) = api.export(backfill).await;
    assert_eq!(job["batches"][0]["full"], false);
    assert!(job["incrementalTime"].is_number(), "echoed as epoch milliseconds");
    assert_eq!(files[0].len() - 1, 201, "everything changed since 2019: every live row, plus nothing deleted before");
    let (_, files) = api.export(stateful("seq", "select Id, Name, Status, UpdatedDate from Account")).await;
    assert_eq!(files[0].len() - 1, 2, "the session still starts where the last normal run ended");
}

#[tokio::test]
async fn a_session_unused_for_180_days_starts_again_with_a_full_load() {
    let mut api = Api::start(|_| {}).await;
    let control = api.sim.control();
    api.export(stateful("idle", QUERY)).await;
    control.advance_clock(Duration::from_secs(179 * 86_400));
    api.sign_in_again().await;
    let (job, _) = api.export(stateful("idle", QUERY)).await;
    assert_eq!(job["batches"][0]["full"], false, "179 idle days: still an increment");
    control.advance_clock(Duration::from_secs(181 * 86_400));
    control.mutate("Account", Mutation { insert: 0, update: 0, delete: 3, ..Mutation::default() }).unwrap();
    api.sign_in_again().await;
    let (job, files) = api.export(stateful("idle", QUERY)).await;
    assert_eq!(job["batches"][0]["full"], true, "181 idle days: the session started again");
    assert_eq!(files[0].len() - 1, 197, "every live row, none of the deleted ones: the lake must replace, not merge");
    assert!(files[0][1..].iter().all(|r| r[0] == "false"));
}

#[tokio::test]
async fn an_increment_reports_only_the_deletions_zuora_still_keeps() {
    let mut api = Api::start(|_| {}).await;
    let control = api.sim.control();
    api.export(stateful("retention", QUERY)).await;
    let first_export = control.now();
    control.advance_clock(Duration::from_secs(3_600));
    let early = control.mutate("Account", Mutation { insert: 0, update: 0, delete: 2, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(40 * 86_400));
    let late = control.mutate("Account", Mutation { insert: 0, update: 0, delete: 1, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(3_600));
    api.sign_in_again().await;
    let (job, files) = api.export(stateful("retention", QUERY)).await;
    assert_eq!(job["batches"][0]["full"], false);
    let deleted: Vec<&str> = files[0][1..].iter().filter(|r| r[0] == "true").map(|r| r[1].as_str()).collect();
    assert_eq!(deleted, late.deleted.iter().map(String::as_str).collect::<Vec<_>>(), "purged: {:?}", early.deleted);
    // With Zuora's retention switched off, the same window reports both (a backfill of it, here).
    control.update_settings(|s| s.deleted_retention_days = 1e6);
    let mut backfill = stateful("retention", QUERY);
    let since = first_export - chrono::Duration::days(1);
    backfill["incrementalTime"] = json!(since.format("%Y-%m-%d %H:%M:%S").to_string());
    let (_, files) = api.export(backfill).await;
    assert_eq!(files[0][1..].iter().filter(|r| r[0] == "true").count(), 3);
}

#[tokio::test]
async fn select_star_reads_every_field_and_limit_caps_the_records() {
    let api = Api::start(|_| {}).await;
    let (job, files) = api.export(stateful("probe", "select * from Account limit 1")).await;
    assert_eq!((job["batches"][0]["recordCount"].as_u64(), files[0].len()), (Some(1), 2), "a header and one record");
    let header = &files[0][0];
    for field in ["Account.Id", "Account.Name", "Account.UpdatedDate", "Account.CreatedDate"] {
        assert!(header.iter().any(|h| h == field), "{field} in {header:?}");
    }
    let (job, files) =
        api.export(stateful("ordered", "select Id, UpdatedDate from Account order by UpdatedDate desc limit 3")).await;
    assert_eq!((job["batches"][0]["recordCount"].as_u64(), files[0].len() - 1), (Some(3), 3));
    let newest: Vec<&str> = files[0][1..].iter().map(|r| r[2].as_str()).collect();
    assert!(newest.windows(2).all(|w| w[0] >= w[1]), "the three newest, newest first: {newest:?}");
    let refused = api.submit(stateful("bad-limit", "select Id from Account limit many")).await;
    assert_eq!(refused["errorCode"], "90005", "{refused}");
}

#[tokio::test]
async fn incremental_time_is_read_in_pacific_time_in_the_us_and_utc_in_the_eu() {
    for (data_center, text) in
        [(zuora_sim::DataCenter::Us, "2022-09-30 17:00:00"), (zuora_sim::DataCenter::Eu, "2022-10-01 00:00:00")]
    {
        let api = Api::start(|c| c.data_center = data_center).await;
        let mut body = stateful("tz", QUERY);
        body["incrementalTime"] = json!(text);
        let job = api.submit(body).await;
        assert_eq!(job["incrementalTime"], 1_664_582_400_000i64, "{data_center:?}: 2022-10-01T00:00:00Z");
    }
}

#[tokio::test]
async fn jobs_of_one_session_run_one_at_a_time_in_arrival_order() {
    let api = Api::start(|c| c.settings.job_execution_secs = 30.0).await;
    let first = api.submit(stateful("serial", QUERY)).await;
    let second = api.submit(stateful("serial", QUERY)).await;
    let other = api.submit(stateful("other-project", QUERY)).await;
    let status = |job: Value| job["status"].as_str().unwrap().to_owned();
    assert_eq!(status(api.job(first["id"].as_str().unwrap()).await), "executing");
    assert_eq!(status(api.job(second["id"].as_str().unwrap()).await), "submitted", "waits for the first");
    assert_eq!(status(api.job(other["id"].as_str().unwrap()).await), "executing", "another session does not wait");
    api.sim.control().advance_clock(Duration::from_secs(31));
    assert_eq!(status(api.job(first["id"].as_str().unwrap()).await), "completed");
    assert_eq!(status(api.job(second["id"].as_str().unwrap()).await), "executing");
}

#[tokio::test]
async fn refused_submissions_are_http_200_with_an_error_code() {
    let api = Api::start(|c| c.settings.max_concurrent_jobs = 1).await;
    let many: Vec<Value> = (0..51).map(|_| json!({"query": QUERY, "type": "zoqlexport"})).collect();
    let cases = [
        (stateful("e", "select Id, Nope from Account"), "90005"),
        (stateful("e", "select Id from NoSuchObject"), "90005"),
        (json!({"version": "1.1", "partner": "p", "project": "e", "queries": many}), "90004"),
        (
            json!({"version": "1.0", "queries": [{"query": QUERY, "deleted": {"column": "IsDeleted", "format": "Boolean"}}]}),
            "90012",
        ),
        (json!({"version": "1.0"}), "90016"),
        (
            {
                let mut b = stateful("e", QUERY);
                b["incrementalTime"] = json!("01/02/2022");
                b
            },
            "90015",
        ),
    ];
    for (body, code) in cases {
        let answer = api.submit(body.clone()).await;
        assert_eq!(answer["errorCode"], code, "{body}: {answer}");
        assert_eq!(answer["status"], "error");
        assert!(answer.get("id").is_none());
    }
    api.sim.control().update_settings(|s| s.job_execution_secs = 60.0);
    assert!(api.submit(stateful("busy-1", QUERY)).await["id"].is_string());
    assert_eq!(api.submit(stateful("busy-2", QUERY)).await["errorCode"], "90028");
    let malformed = api.http.post(api.url("/v1/batch-query/")).bearer_auth(&api.token).body("{").send().await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(malformed.json::<Value>().await.unwrap()["code"], 50000090);
}

#[tokio::test]
async fn authentication_is_required_and_tokens_expire_on_the_simulated_clock() {
    let api = Api::start(|_| {}).await;
    let anonymous = api.http.get(api.url("/v1/batch-query/jobs/x")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers()["www-authenticate"].to_str().unwrap().contains("Bearer realm=Zuora API"));
    let basic = api
        .http
        .get(api.url("/v1/batch-query/jobs/x"))
        .basic_auth(CLIENT_ID, Some("sim-client-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.json::<Value>().await.unwrap()["errorCode"], "90002", "Basic auth works; the job is unknown");
    assert_eq!(api.get("/v1/batch-query/jobs/x").await.status(), 200);
    api.sim.control().advance_clock(Duration::from_secs(3600));
    assert_eq!(api.get("/v1/batch-query/jobs/x").await.status(), 401);
    let bad = api
        .http
        .post(api.url("/oauth/token"))
        .form(&[("client_id", CLIENT_ID), ("client_secret", "wrong"), ("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    // Every call of the API is counted by its route, refused ones too; the control API's are not.
    let calls = api.sim.control().calls();
    assert_eq!(calls.get("GET /v1/batch-query/jobs/{id}"), Some(&4), "{calls:?}");
    assert!(calls.get("POST /oauth/token").is_some_and(|n| *n >= 2), "{calls:?}");
    assert!(calls.keys().all(|route| !route.contains("/sim/")), "{calls:?}");
}

#[tokio::test]
async fn labels_numeric_flags_gzip_and_legacy_json_follow_the_documented_shapes() {
    let api = Api::start(|c| c.settings.legacy_json = true).await;
    let body = json!({"version": "1.1", "partner": "p", "project": "shapes", "format": "GZIP",
                      "queries": [{"query": "select Id, AccountNumber from Account", "type": "zoqlexport",
                                   "deleted": {"column": "Gone", "format": "Numeric"}}]});
    let submitted = api.submit(body).await;
    assert_eq!(submitted["format"], "GZIP");
    let job = api.job(submitted["id"].as_str().unwrap()).await;
    assert!(job["version"].is_number() && job["batches"][0]["recordCount"].is_string(), "{job}");
    assert!(job["startTime"].as_str().unwrap().len() == 19, "wall-clock startTime: {job}");
    let response = api.get(&format!("/v1/files/{}", job["batches"][0]["fileId"].as_str().unwrap())).await;
    assert_eq!(response.headers()["content-type"], "application/x-gzip;charset=UTF-8");
    let gz = response.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_ref()), &mut text).unwrap();
    assert!(text.starts_with("Account.Gone,Account: ID,Account: Account Number\n"), "{}", &text[..80]);
    assert!(text.lines().skip(1).all(|l| l.starts_with("0,")));
}

#[tokio::test]
async fn objects_without_deleted_support_end_deleted_notallowed() {
    let api = Api::start(|_| {}).await;
    let mut body = stateful("periods", "select Id, Name from AccountingPeriod");
    body["queries"][0]["name"] = json!("AccountingPeriod");
    let (job, files) = api.export(body).await;
    assert_eq!(job["batches"][0]["status"], "deleted_notallowed");
    assert!(job["batches"][0].get("fileId").is_none() && files.is_empty());
}

#[tokio::test]
async fn double_slashes_in_paths_are_tolerated_like_zuoras_front_end() {
    let api = Api::start(|_| {}).await;
    let job = api.submit(stateful("slash", QUERY)).await;
    let response = api.get(&format!("/v1/batch-query//jobs/{}", job["id"].as_str().unwrap())).await;
    assert_eq!(response.json::<Value>().await.unwrap()["id"], job["id"]);
}

#[tokio::test]
async fn the_control_api_mutates_reads_truth_and_is_deterministic_per_seed() {
    let a = Api::start(|c| c.seed = 7).await;
    let b = Api::start(|c| c.seed = 7).await;
    let c = Api::start(|c| c.seed = 8).await;
    let truth = |api: &Api| api.sim.control().ground_truth_csv("Invoice").unwrap();
    assert_eq!(truth(&a), truth(&b));
    assert_ne!(truth(&a), truth(&c));

    let mutation = json!({"insert": 1, "delete": 2});
    let changed = json_of(a.http.post(a.url("/sim/objects/Invoice/mutations")).json(&mutation)).await;
    assert_eq!(changed["inserted"].as_array().unwrap().len(), 1);
    let csv = a.http.get(a.url("/sim/objects/Invoice/truth")).send().await.unwrap().text().await.unwrap();
    let ids: Vec<String> =
        csv::Reader::from_reader(csv.as_bytes()).records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert_eq!(ids.len(), 499);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by Id");
    assert!(ids.contains(&changed["inserted"][0].as_str().unwrap().to_owned()));
    assert!(!ids.contains(&changed["deleted"][0].as_str().unwrap().to_owned()));
    let objects: Value = a.http.get(a.url("/sim/objects")).send().await.unwrap().json().await.unwrap();
    assert_eq!(objects.as_array().unwrap().len(), 17);
    let bad = a.http.post(a.url("/sim/objects/Nope/mutations")).json(&json!({"insert": 1})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn faults_truncate_bodies_and_throttle_bandwidth_on_request() {
    let api = Api::start(|_| {}).await;
    let (job, files) = api.export(stateful("faults", QUERY)).await;
    let file_id = job["batches"][0]["fileId"].as_str().unwrap().to_owned();
    let whole = api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap();
    assert_eq!(files[0].len(), 201);
    let rules = json!([{"endpoint": "file", "truncate_after_bytes": 1000, "times": 1}]);
    assert_eq!(api.http.put(api.url("/sim/faults")).json(&rules).send().await.unwrap().status(), 200);
    let cut = api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap();
    assert_eq!(cut.len(), 1000, "ends cleanly, short");
    assert_eq!(api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap(), whole, "the rule was spent");
    let slow = json!([{"endpoint": "file", "bandwidth_bytes_per_sec": whole.len() * 4}]);
    api.http.put(api.url("/sim/faults")).json(&slow).send().await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap(), whole);
    assert!(started.elapsed() >= Duration::from_millis(200), "a quarter of a second at that rate");
}

#[tokio::test]
async fn a_stored_file_is_sent_from_disk_byte_for_byte_with_faults_still_applied() {
    let api = Api::start(|_| {}).await;
    let (job, _) = api.export(stateful("stored", QUERY)).await;
    let file_id = job["batches"][0]["fileId"].as_str().unwrap().to_owned();
    let rendered = api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{file_id}.csv"));
    let store = |id: &str| api.http.post(api.url(&format!("/sim/files/{id}/store"))).json(&json!({"path": path}));
    let answer: Value = store(&file_id).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["bytes"], rendered.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), rendered);
    // Sent from the file: what is on disk is what goes out.
    let mut edited = std::fs::read(&path).unwrap();
    edited[0] = b'#';
    std::fs::write(&path, &edited).unwrap();
    assert_eq!(api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap(), edited);
    let rules = json!([{"endpoint": "file", "truncate_after_bytes": 100, "times": 1}]);
    api.http.put(api.url("/sim/faults")).json(&rules).send().await.unwrap();
    assert_eq!(api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap(), edited[..100]);
    assert_eq!(store("nope").send().await.unwrap().status(), 400, "unknown file");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn order_by_sorts_the_file_and_is_null_filters_as_zoql_does() {
    let api = Api::start(|_| {}).await;
    let (job, files) =
        api.export(stateful("ordered", "select Id, Balance from Account order by Balance desc, Id")).await;
    assert_eq!(job["batches"][0]["status"], "completed");
    // Nulls sort first (the simulator's choice), so last when descending.
    let balances: Vec<Option<f64>> = files[0][1..].iter().map(|r| r[2].parse().ok()).collect();
    assert_eq!(balances.len(), 200);
    assert!(balances.windows(2).all(|pair| pair[0] >= pair[1]), "descending");
    assert!(balances.iter().filter(|b| b.is_some()).count() > 100);

    // Notes is free text, sometimes null (an empty value): IS NULL and IS NOT NULL split the table.
    let (_, nulls) = api.export(stateful("nulls", "SELECT Id, Notes FROM Account WHERE Notes IS NULL")).await;
    let (_, filled) = api.export(stateful("filled", "SELECT Id, Notes FROM Account WHERE Notes is not null")).await;
    let (nulls, filled) = (&nulls[0][1..], &filled[0][1..]);
    assert!(!nulls.is_empty() && !filled.is_empty());
    assert_eq!(nulls.len() + filled.len(), 200);
    assert!(nulls.iter().all(|r| r[2].is_empty()) && filled.iter().all(|r| !r[2].is_empty()));
}
