//! A stand-in for the stack's notification route: API Gateway's HTTP API with its `SQS-SendMessage` integration
//! (`deploy/template.yaml`, `NotifyRoute`), which puts the `job` query parameter of `GET /<secret>/job-finished` on
//! the jobs queue as it is, with the constant message attribute `origin = notify`, and answers every other path
//! 404. No code of the exporter's runs in that path in the stack; none but this forwarding runs here.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use common::messages::{NOTIFY_ORIGIN, ORIGIN_ATTRIBUTE};
use common::queue::{OutgoingMessage, Queue};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The route, serving until dropped.
pub struct NotifyRoute {
    addr: SocketAddr,
    secret: String,
    task: tokio::task::JoinHandle<()>,
}

struct Route {
    jobs: Arc<dyn Queue>,
    secret: String,
}

impl NotifyRoute {
    /// Serves `GET /<secret>/job-finished?job=...` into `jobs` on a free local port.
    pub async fn start(jobs: Arc<dyn Queue>, secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the notification route");
        let addr = listener.local_addr().expect("its address");
        let state = Arc::new(Route { jobs, secret: secret.to_owned() });
        let app = axum::Router::new().route("/{secret}/job-finished", axum::routing::get(forward)).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, secret: secret.to_owned(), task }
    }

    /// The `producer.notify_url` that makes Zuora call this route, as the stack's `NotifyUrl` output reads.
    pub fn notify_url(&self) -> String {
        format!("http://{}/{}/job-finished?job=${{JOBID}}", self.addr, self.secret)
    }
}

impl Drop for NotifyRoute {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(route): State<Arc<Route>>,
    Path(secret): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> StatusCode {
    if secret != route.secret {
        return StatusCode::NOT_FOUND;
    }
    // API Gateway answers 400 when a parameter its mapping names is missing.
    let Some(job) = query.get("job") else {
        return StatusCode::BAD_REQUEST;
    };
    let message = OutgoingMessage::new(job.clone()).attribute(ORIGIN_ATTRIBUTE, NOTIFY_ORIGIN);
    match route.jobs.send(message).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
