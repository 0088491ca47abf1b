//! Result files over HTTP: every download path, headers, sizes, purges, segments, and injected faults.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Api, QUERY, records, stateful};
use zuora_sim::{FaultRule, Mutation};

const PATHS: [&str; 5] =
    ["/v1/file/", "/v1/files/", "/v1/batch-query/file/", "/apps/api/file/", "/apps/api/batch-query/file/"];

/// A completed stateful full load of Account; returns (job, file id).
async fn exported(api: &Api, query: &str) -> (Value, String) {
    let (job, _) = api.export(stateful("files", query)).await;
    let file_id = job["batches"][0]["fileId"].as_str().unwrap_or_else(|| panic!("no file: {job}")).to_owned();
    (job, file_id)
}

#[tokio::test]
async fn every_documented_download_path_serves_the_same_file_streamed_without_a_length() {
    let api = Api::start(|_| {}).await;
    let (job, file_id) = exported(&api, "select Id, Name, Notes, UpdatedDate from Account").await;
    let mut bodies = Vec::new();
    for path in PATHS {
        let response = api
            .http
            .get(api.url(&format!("{path}{file_id}")))
            .bearer_auth(&api.token)
            .header("Zuora-Track-Id", "track-42")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/csv;charset=UTF-8", "{path}");
        assert!(response.headers().get("content-length").is_none(), "chunked by default: {path}");
        assert_eq!(response.headers()["zuora-track-id"], "track-42");
        assert_eq!(response.headers()["zuora-request-id"].len(), 32);
        bodies.push(response.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "one file, whatever the path");
    // Free text with commas, quotes and newlines: records, not lines, match the count.
    let parsed = records(&bodies[0]);
    assert_eq!((parsed.len() - 1) as u64, job["batches"][0]["recordCount"].as_u64().unwrap());
    assert!(bodies[0].iter().filter(|b| **b == b'\n').count() > parsed.len(), "embedded newlines present");
    let basic = api.get_basic(&format!("/apps/api/file/{file_id}")).await;
    assert_eq!(basic.bytes().await.unwrap(), bodies[0], "Basic auth works too");
    let anonymous = api.http.get(api.url(&format!("/v1/file/{file_id}"))).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(api.get("/v1/file/00000000000000000000000000000000").await.status(), 404);
}

#[tokio::test]
async fn content_length_is_sent_only_when_the_setting_asks_for_it() {
    let api = Api::start(|_| {}).await;
    let (_, file_id) = exported(&api, QUERY).await;
    api.sim.control().update_settings(|s| s.content_length = true);
    let response = api.get(&format!("/v1/file/{file_id}")).await;
    let length: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(response.bytes().await.unwrap().len(), length);
    api.sim.control().update_settings(|s| s.content_length = false);
    assert!(api.get(&format!("/v1/file/{file_id}")).await.headers().get("content-length").is_none());
}

#[tokio::test]
async fn files_over_the_size_limit_are_refused_with_403_max_object_size() {
    let api = Api::start(|c| {
        c.rows.insert("Account".into(), 20_000);
        c.settings.max_file_bytes = Some(1024 * 1024);
    })
    .await;
    let (_, file_id) = exported(&api, "select Id, Name, Notes from Account").await;
    let response = api.get(&format!("/v1/file/{file_id}")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.text().await.unwrap(), "<security:max-object-size>1MB</security:max-object-size>");
    api.sim.control().update_settings(|s| s.max_file_bytes = None);
    let response = api.get(&format!("/v1/file/{file_id}")).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().len() > 1024 * 1024);
}

#[tokio::test]
async fn files_are_purged_after_their_lifetime_on_the_simulated_clock() {
    let api = Api::start(|_| {}).await;
    let (_, file_id) = exported(&api, QUERY).await;
    api.sim.control().advance_clock(Duration::from_secs(71 * 3600));
    assert_eq!(api.get_basic(&format!("/v1/file/{file_id}")).await.status(), 200, "71 h: still there");
    api.sim.control().advance_clock(Duration::from_secs(2 * 3600));
    let gone = api.get_basic(&format!("/v1/file/{file_id}")).await;
    assert_eq!(gone.status(), 404, "73 h: purged");
    assert_eq!(gone.json::<Value>().await.unwrap()["success"], false);
}

#[tokio::test]
async fn segmented_full_loads_list_segments_each_with_a_header_and_increments_do_not() {
    let api = Api::start(|c| c.settings.segment_rows = Some(70)).await;
    let (job, _) = api.export(stateful("segments", QUERY)).await;
    let batch = &job["batches"][0];
    assert!(batch.get("fileId").is_none(), "{batch}");
    let segments: Vec<&str> = batch["segments"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(segments.len(), 3, "200 records in files of at most 70");
    let mut ids = std::collections::HashSet::new();
    for segment in &segments {
        let file = api.file(segment).await;
        assert_eq!(file[0], ["Account.IsDeleted", "Account.Id", "Account.Name", "Account.UpdatedDate"]);
        assert!(file.len() - 1 <= 70);
        ids.extend(file[1..].iter().map(|r| r[1].clone()));
    }
    assert_eq!(ids.len() as u64, batch["recordCount"].as_u64().unwrap(), "segments add up, no overlap");
    api.sim.control().mutate("Account", Mutation { insert: 1, update: 0, delete: 0, ..Mutation::default() }).unwrap();
    api.sim.control().advance_clock(Duration::from_secs(10));
    let (job, files) = api.export(stateful("segments", QUERY)).await;
    assert_eq!(job["batches"][0]["full"], false);
    assert!(job["batches"][0]["fileId"].is_string() && job["batches"][0].get("segments").is_none());
    assert_eq!(files[0].len(), 2);
}

#[tokio::test]
async fn a_throttled_request_gets_429_with_retry_after_then_succeeds() {
    let api = Api::start(|_| {}).await;
    let submitted = api.submit(stateful("throttle", QUERY)).await;
    let id = submitted["id"].as_str().unwrap();
    api.sim.control().set_faults(vec![FaultRule {
        endpoint: "job".into(),
        status: Some(429),
        retry_after_secs: Some(2),
        times: Some(1),
        ..FaultRule::default()
    }]);
    let throttled = api.get(&format!("/v1/batch-query/jobs/{id}")).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "2");
    let job = api.job(id).await;
    assert_eq!(job["id"], id, "the rule was spent after one request");

    // Over HTTP, on the token endpoint, for every request until cleared.
    let rules = json!([{"endpoint": "token", "status": 503}]);
    assert_eq!(api.http.put(api.url("/sim/faults")).json(&rules).send().await.unwrap().status(), 200);
    let token = || {
        api.http.post(api.url("/oauth/token")).form(&[
            ("client_id", support::CLIENT_ID),
            ("client_secret", "sim-client-secret"),
            ("grant_type", "client_credentials"),
        ])
    };
    assert_eq!(token().send().await.unwrap().status(), 503);
    assert_eq!(token().send().await.unwrap().status(), 503);
    api.http.delete(api.url("/sim/faults")).send().await.unwrap();
    assert_eq!(token().send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_reset_aborts_the_body_mid_transfer_and_a_truncation_ends_it_short() {
    let api = Api::start(|_| {}).await;
    let (_, file_id) = exported(&api, "select Id, Name, Notes from Account").await;
    let whole = api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap();
    assert!(whole.len() > 5000);
    let control = api.sim.control();
    control.set_faults(vec![FaultRule {
        endpoint: "file".into(),
        reset_after_bytes: Some(3000),
        times: Some(1),
        ..FaultRule::default()
    }]);
    let mut response = api.get(&format!("/v1/file/{file_id}")).await;
    assert_eq!(response.status(), 200, "the failure comes in the body");
    let mut received = 0;
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(outcome.is_err(), "the connection is aborted, not ended cleanly");
    assert!(received <= 3000);
    control.set_faults(vec![FaultRule {
        endpoint: "any".into(),
        truncate_after_bytes: Some(2500),
        ..FaultRule::default()
    }]);
    let cut = api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap();
    assert_eq!(cut, whole[..2500], "a clean, short body");
    control.clear_faults();
    assert_eq!(api.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap(), whole);
}

#[tokio::test]
async fn stateless_jobs_are_full_loads_and_force_export_adds_deleted_rows_flagged() {
    let api = Api::start(|_| {}).await;
    let control = api.sim.control();
    control.advance_clock(Duration::from_secs(1));
    let changes =
        control.mutate("Account", Mutation { insert: 0, update: 0, delete: 2, ..Mutation::default() }).unwrap();
    control.advance_clock(Duration::from_secs(1));
    let body = json!({"version": "1.0", "format": "CSV", "useQueryLabels": true,
                      "queries": [{"query": QUERY, "type": "zoqlexport",
                                   "deleted": {"column": "Gone", "format": "Numeric", "forceExport": true}}]});
    let (job, files) = api.export(body).await;
    assert_eq!(job["batches"][0]["full"], true);
    assert!(job.get("partner").is_none());
    let rows = &files[0][1..];
    assert_eq!(rows.len(), 200);
    let mut deleted: Vec<&str> = rows.iter().filter(|r| r[0] == "1").map(|r| r[1].as_str()).collect();
    deleted.sort();
    let mut expected: Vec<&str> = changes.deleted.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(deleted, expected);
    assert!(rows.iter().all(|r| r[0] == "0" || r[0] == "1"));
    // Without deleted: live rows only, every time (no session).
    let plain = json!({"queries": [{"query": QUERY}]});
    let (job, files) = api.export(plain.clone()).await;
    assert_eq!((job["version"].as_str(), files[0].len() - 1), (Some("1.0"), 198));
    assert_eq!(files[0][0], ["Account: ID", "Account: Name", "Account: Updated Date"], "labels by default");
    assert_eq!(api.export(plain).await.1[0].len() - 1, 198, "stateless: the same again");
}
