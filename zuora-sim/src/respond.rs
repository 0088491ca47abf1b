//! What every route of the simulator shares: its state, JSON responses, and work taken off the async workers.

use crate::state::Sim;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// The simulator, as every handler holds it.
pub type Shared = Arc<Sim>;

/// Runs work that may read every row of a table (counting records, sizing a file) off the async workers.
pub async fn blocking<T: Send + 'static>(sim: &Shared, work: impl FnOnce(&Sim) -> T + Send + 'static) -> Option<T> {
    let sim = sim.clone();
    tokio::task::spawn_blocking(move || work(&sim)).await.ok()
}

/// Zuora's answer when something failed on its side.
pub fn internal_error() -> Response {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"reasons": [{"code": "SystemError", "message": "internal server error"}]}),
    )
}

/// A JSON body, with the content type Zuora sends.
pub fn json_response(status: StatusCode, value: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json;charset=utf-8")], value.to_string()).into_response()
}
