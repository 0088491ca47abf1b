//! What the HTTP tests share: a started simulator, a token, and helpers to submit, poll and download.
#![allow(dead_code)] // each test file uses a different part

use serde_json::{Value, json};
use std::time::Duration;
use zuora_sim::{RunningSim, SimConfig, Simulator};

pub const CLIENT_ID: &str = "0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b";

pub struct Api {
    pub sim: RunningSim,
    pub http: reqwest::Client,
    pub token: String,
}

impl Api {
    pub async fn start(tune: impl FnOnce(&mut SimConfig)) -> Self {
        let mut config = SimConfig::default();
        config.settings.job_execution_secs = 0.0;
        tune(&mut config);
        let sim = Simulator::start(config).await.unwrap();
        let http = reqwest::Client::new();
        let token = sign_in(&sim, &http).await;
        Self { sim, http, token }
    }

    /// A fresh token, after the simulated clock ran past the last one's hour.
    pub async fn sign_in_again(&mut self) {
        self.token = sign_in(&self.sim, &self.http).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    pub async fn submit(&self, body: Value) -> Value {
        let response =
            self.http.post(self.url("/v1/batch-query/")).bearer_auth(&self.token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(&self.token).send().await.unwrap()
    }

    /// A GET with HTTP Basic credentials: still accepted after the simulated clock outran the bearer token.
    pub async fn get_basic(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).basic_auth(CLIENT_ID, Some("sim-client-secret")).send().await.unwrap()
    }

    /// Polls a job until it is no longer submitted or executing (tests run with zero execution time).
    pub async fn finished(&self, id: &str) -> Value {
        let mut job = self.job(id).await;
        for _ in 0..200 {
            if job["status"] != "submitted" && job["status"] != "executing" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            job = self.job(id).await;
        }
        job
    }

    pub async fn job(&self, id: &str) -> Value {
        self.get(&format!("/v1/batch-query/jobs/{id}")).await.json().await.unwrap()
    }

    /// Submits, waits for completion, and returns the job and each batch's records (header first).
    pub async fn export(&self, body: Value) -> (Value, Vec<Vec<Vec<String>>>) {
        let submitted = self.submit(body).await;
        let id = submitted["id"].as_str().unwrap_or_else(|| panic!("no job id: {submitted}")).to_owned();
        let job = self.finished(&id).await;
        let mut files = Vec::new();
        for batch in job["batches"].as_array().unwrap() {
            if let Some(file_id) = batch["fileId"].as_str() {
                files.push(self.file(file_id).await);
            }
        }
        (job, files)
    }

    pub async fn file(&self, file_id: &str) -> Vec<Vec<String>> {
        let body = self.get(&format!("/v1/file/{file_id}")).await.bytes().await.unwrap();
        records(&body)
    }
}

/// The JSON body of a request's answer.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// A token from the simulator's OAuth endpoint, checked to be shaped as Zuora's.
async fn sign_in(sim: &RunningSim, http: &reqwest::Client) -> String {
    let form = [("client_id", CLIENT_ID), ("client_secret", "sim-client-secret"), ("grant_type", "client_credentials")];
    let response = json_of(http.post(format!("{}/oauth/token", sim.base_url())).form(&form)).await;
    assert_eq!(response["token_type"], "bearer");
    assert_eq!(response["expires_in"], 3599);
    response["access_token"].as_str().unwrap().to_owned()
}

/// Parses a CSV file with a real RFC 4180 reader: every record, header first.
pub fn records(body: &[u8]) -> Vec<Vec<String>> {
    {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(body);
        reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect()
    }
}

pub fn stateful(project: &str, query: &str) -> Value {
    json!({"format": "csv", "version": "1.1", "name": "t", "encrypted": "none", "useQueryLabels": "true",
           "dateTimeUtc": "true", "partner": "p", "project": project,
           "queries": [{"name": "Account", "query": query, "type": "zoqlexport",
                        "deleted": {"column": "IsDeleted", "format": "Boolean"}}]})
}

pub const QUERY: &str = "select Id, Name, UpdatedDate from Account";
