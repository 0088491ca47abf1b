//! A local simulator of Zuora's AQuA batch-query API, faithful to the documented behaviour, with a control API
//! for tests, benchmarks and the local quick start.
//!
//! # Layout
//! - [`config`]: what is fixed at start ([`SimConfig`]) and what tests tune while it runs ([`Settings`]).
//! - [`clock`]: the simulated clock (real time plus what tests advance it by).
//! - [`schema`]: the simulated objects and their fields.
//! - [`data`]: tables as generated rows plus an overlay of changes; a row's state as of any instant.
//! - [`zoql`]: the subset of Export ZOQL the simulator reads.
//! - [`files`]: which rows a batch returns, rendered as CSV chunk by chunk.
//! - [`state`]: tokens, jobs, stateful sessions, files, faults.
//! - [`http`]: the endpoints, on every documented path.
//! - [`control`]: the `/sim/` control API.
//! - [`respond`]: what every route shares (the state, JSON responses).
//!
//! Start it in-process with [`Simulator::start`] (binds `127.0.0.1:0` by default) or run the `zuora-sim` binary.

pub mod clock;
pub mod config;
pub mod control;
pub mod data;
pub mod files;
pub mod http;
pub mod respond;
pub mod schema;
pub mod state;
pub mod zoql;

pub use config::{DataCenter, Settings, SimConfig};
pub use state::{DeletedRow, FaultRule, JobSummary, Mutation, MutationResult, SimError};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds `config.listen` and serves until the returned handle is shut down or dropped.
    pub async fn start(config: SimConfig) -> anyhow::Result<RunningSim> {
        config.check().map_err(|e| anyhow::anyhow!("simulator configuration: {e}"))?;
        let listener = tokio::net::TcpListener::bind(&config.listen).await?;
        let addr = listener.local_addr()?;
        let sim = Arc::new(state::Sim::new(config));
        let notifier = tokio::spawn(state::run_notifier(Arc::downgrade(&sim)));
        let router = http::router(sim.clone());
        let app = tower::Layer::layer(&axum::middleware::map_request(|r| async { http::normalize_path(r) }), router);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let service = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            notifier.abort();
        });
        Ok(RunningSim { addr, sim, stop: Some(stop), task: Some(task) })
    }
}

/// A running simulator.
pub struct RunningSim {
    addr: SocketAddr,
    sim: Arc<state::Sim>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The control handle.
    pub fn control(&self) -> Control {
        Control { sim: self.sim.clone() }
    }

    /// Stops serving, letting requests in flight finish (at most a few seconds).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Drives the simulator from Rust: the same operations as the `/sim/` HTTP API.
#[derive(Clone)]
pub struct Control {
    sim: Arc<state::Sim>,
}

impl Control {
    /// Inserts, updates and deletes rows now; returns the ids touched.
    pub fn mutate(&self, object: &str, mutation: Mutation) -> Result<MutationResult, SimError> {
        self.sim.mutate(object, mutation)
    }

    /// Resets an object's table to `rows` generated rows.
    pub fn set_rows(&self, object: &str, rows: u64) -> Result<(), SimError> {
        self.sim.set_rows(object, rows)
    }

    /// Moves the simulated clock forward; returns the new now.
    pub fn advance_clock(&self, by: Duration) -> chrono::DateTime<chrono::Utc> {
        self.sim.advance_clock(chrono::Duration::from_std(by).unwrap_or_default())
    }

    /// The simulated now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.sim.clock.now()
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, faults: Vec<FaultRule>) {
        self.sim.set_faults(faults);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.sim.set_faults(Vec::new());
    }

    /// Changes run-time settings.
    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        self.sim.update_settings(f);
    }

    /// Every job so far.
    pub fn jobs(&self) -> Vec<JobSummary> {
        self.sim.jobs()
    }

    /// The API calls received so far (the control API's own left out), by method and route, e.g.
    /// `GET /v1/batch-query/jobs/{id}`.
    pub fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.sim.calls()
    }

    /// The live rows of an object now, every field, sorted by Id.
    pub fn ground_truth_csv(&self, object: &str) -> Result<String, SimError> {
        self.sim.ground_truth_csv(object)
    }

    /// What a lake fed with every completed job of `query` should hold now: its columns (joined ones as the
    /// last batch that returned each row read them), live rows, sorted by Id.
    pub fn ground_truth_of(&self, query: &str) -> Result<String, SimError> {
        self.sim.ground_truth_of(query)
    }

    /// Every row of `object` deleted by now, with its creation and deletion instants.
    pub fn deleted_rows(&self, object: &str) -> Result<Vec<DeletedRow>, SimError> {
        self.sim.deleted_rows(object)
    }

    /// Makes the next batch on `object` end `aborted` with `message`.
    pub fn abort_next_batch(&self, object: &str, message: &str) {
        self.sim.abort_next_batch(object, message);
    }
}
