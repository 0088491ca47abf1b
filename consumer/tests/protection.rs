//! Task scale-in protection against a local stand-in of the ECS agent's endpoint (`PUT
//! $ECS_AGENT_URI/task-protection/v1/state`): a task is protected while it works on jobs, renewed while the work
//! goes on, cleared when idle; a refused call is tried again; through the consumer service, a job's work is
//! protected from its start to its end.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use common::config::Config;
use common::services::Services;
use consumer::protection::TaskProtection;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the stand-in agent was asked, and how many of its next answers are refusals.
#[derive(Default)]
struct Agent {
    asked: Mutex<Vec<Value>>,
    refuse: Mutex<u32>,
}

impl Agent {
    fn asked(&self) -> Vec<Option<bool>> {
        self.asked.lock().unwrap().iter().map(|body| body["ProtectionEnabled"].as_bool()).collect()
    }
}

async fn state(State(agent): State<Arc<Agent>>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    agent.asked.lock().unwrap().push(body.clone());
    let mut refuse = agent.refuse.lock().unwrap();
    if *refuse > 0 {
        *refuse -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "agent busy"})));
    }
    let enabled = body["ProtectionEnabled"].as_bool().unwrap_or(false);
    (StatusCode::OK, Json(json!({"protection": {"ProtectionEnabled": enabled, "TaskArn": "arn:aws:ecs:task/t"}})))
}

/// The stand-in, serving on a free port; its base URI.
async fn start_agent() -> (Arc<Agent>, String) {
    let agent = Arc::new(Agent::default());
    let app = axum::Router::new().route("/task-protection/v1/state", put(state)).with_state(agent.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (agent, uri)
}

#[tokio::test]
async fn a_task_is_protected_while_it_works_renewed_before_it_lapses_and_cleared_when_idle() {
    let (agent, uri) = start_agent().await;
    let protection = TaskProtection::new(Some(uri.clone()));
    protection.job_started().await;
    protection.job_started().await;
    protection.keep().await;
    assert_eq!(agent.asked(), [Some(true)], "one protection for both jobs, not renewed while far from lapsing");
    assert_eq!(agent.asked.lock().unwrap()[0]["ExpiresInMinutes"], 60);
    protection.job_ended().await;
    assert_eq!(agent.asked().len(), 1, "still working on one job");
    protection.job_ended().await;
    assert_eq!(agent.asked(), [Some(true), Some(false)]);

    // A protection that lapses within the renewal margin is renewed at every beat; a refused call is tried again.
    let (agent, uri) = start_agent().await;
    let short = TaskProtection::with_timing(Some(uri), 1, Duration::from_secs(120));
    *agent.refuse.lock().unwrap() = 1;
    short.job_started().await;
    short.keep().await;
    short.keep().await;
    short.job_ended().await;
    assert_eq!(agent.asked(), [Some(true), Some(true), Some(true), Some(false)]);

    // Outside ECS nothing is called.
    let off = TaskProtection::new(None);
    off.job_started().await;
    off.job_ended().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_service_protects_its_task_from_a_jobs_start_to_its_end() {
    let (agent, uri) = start_agent().await;
    let mut sim_config = zuora_sim::SimConfig::default();
    sim_config.settings.job_execution_secs = 0.0;
    let sim = zuora_sim::Simulator::start(sim_config).await.unwrap();
    let lake = test_support::Scratch::new("protection");
    let mut config = Config::parse(include_str!("../../deploy/examples/local.toml"), "local.toml", None).unwrap();
    config.zuora.base_url = sim.base_url();
    config.aws.local_dir = Some(lake.path().to_owned());
    let services = Services::connect(&config).await;
    let producer = producer::service::Producer::from_config(&config, &services).unwrap();
    producer.serve(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#, "m1").await.unwrap();
    let worker = consumer::worker::Worker::from_config(&config, &services)
        .unwrap()
        .with_protection(TaskProtection::new(Some(uri)));
    let lake_queue = services.queues.lake.clone();
    let published = async move { while lake_queue.receive(1, Duration::from_millis(200)).await.unwrap().is_empty() {} };
    let run = consumer::service::run(Arc::new(worker), published);
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("the job is published and the service stops");
    let asked = agent.asked();
    assert_eq!(asked.first(), Some(&Some(true)), "{asked:?}");
    assert_eq!(asked.last(), Some(&Some(false)), "idle again: {asked:?}");
}
