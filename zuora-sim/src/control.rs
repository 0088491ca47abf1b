//! The `/sim/` control API: what tests, benchmarks and the chaos harness change and read in the simulated tenant
//! (rows, mutations, ground truth, the clock, faults, settings). Not part of Zuora's API, and not counted as calls.

use crate::respond::{Shared, blocking, internal_error, json_response};
use crate::state::{FaultRule, Mutation, SimError};
use crate::zoql;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The control API's routes, merged into [`crate::http::router`].
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/sim/objects", get(list_objects))
        .route("/sim/objects/{name}/rows", put(set_rows))
        .route("/sim/objects/{name}/mutations", post(mutate))
        .route("/sim/objects/{name}/truth", get(truth))
        .route("/sim/clock", get(clock))
        .route("/sim/clock/advance", post(advance_clock))
        .route("/sim/faults", put(set_faults).delete(clear_faults))
        .route("/sim/abort-next", post(abort_next))
        .route("/sim/jobs", get(list_jobs))
        .route("/sim/files/{id}/store", post(store_file))
        .route("/sim/settings", get(settings).patch(patch_settings))
}

async fn list_objects(State(sim): State<Shared>) -> Response {
    let counts = sim.row_counts();
    let objects: Vec<Value> = sim
        .schemas()
        .iter()
        .map(|s| {
            let rows = counts.iter().find(|(n, _)| *n == s.name).map_or(0, |(_, r)| *r);
            json!({"name": s.name, "rows": rows, "deletedSupported": s.deleted_supported,
                   "fields": s.fields.iter().map(|f| f.name).collect::<Vec<_>>()})
        })
        .collect();
    json_response(StatusCode::OK, json!(objects))
}

fn control_error(message: impl std::fmt::Display) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": message.to_string()}))
}

async fn store_file(State(sim): State<Shared>, Path(id): Path<String>, body: Bytes) -> Response {
    let path = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("path")?.as_str().map(str::to_owned));
    let Some(path) = path else { return control_error("expected {\"path\": \"/where/to/write/the/file\"}") };
    let stored = blocking(&sim, move |sim| sim.store_file(&id, std::path::Path::new(&path))).await;
    match stored {
        Some(Ok(bytes)) => json_response(StatusCode::OK, json!({"bytes": bytes})),
        Some(Err(e)) => control_error(e),
        None => internal_error(),
    }
}

async fn set_rows(State(sim): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    let rows = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("rows").and_then(Value::as_u64));
    let Some(rows) = rows else { return control_error("expected {\"rows\": N}") };
    match sim.set_rows(&name, rows) {
        Ok(()) => json_response(StatusCode::OK, json!({"object": name, "rows": rows})),
        Err(e) => control_error(e),
    }
}

async fn mutate(State(sim): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    let mutation: Mutation = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return control_error(e),
    };
    match sim.mutate(&name, mutation) {
        Ok(result) => json_response(StatusCode::OK, json!(result)),
        Err(e) => control_error(e),
    }
}

/// `?query=<ZOQL>`: the query's columns, joined ones included; otherwise every field of the object.
async fn truth(
    State(sim): State<Shared>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let query = params.get("query").cloned();
    let truth = blocking(&sim, move |sim| match query {
        Some(query) if zoql::from_object(&query).is_some_and(|o| o.eq_ignore_ascii_case(&name)) => {
            sim.ground_truth_of(&query)
        }
        Some(query) => Err(SimError::BadQuery(format!("the query is not on {name}: {query}"))),
        None => sim.ground_truth_csv(&name),
    });
    let Some(truth) = truth.await else { return internal_error() };
    match truth {
        Ok(csv) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/csv;charset=UTF-8")], csv).into_response(),
        Err(e) => control_error(e),
    }
}

async fn clock(State(sim): State<Shared>) -> Response {
    json_response(StatusCode::OK, json!({"now": sim.clock.now()}))
}

async fn advance_clock(State(sim): State<Shared>, body: Bytes) -> Response {
    let seconds = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("seconds").and_then(Value::as_i64));
    let Some(seconds) = seconds.filter(|s| *s >= 0) else { return control_error("expected {\"seconds\": N}, N >= 0") };
    json_response(StatusCode::OK, json!({"now": sim.advance_clock(chrono::Duration::seconds(seconds))}))
}

async fn set_faults(State(sim): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<Vec<FaultRule>>(&body) {
        Ok(rules) => {
            let count = rules.len();
            sim.set_faults(rules);
            json_response(StatusCode::OK, json!({"faults": count}))
        }
        Err(e) => control_error(e),
    }
}

async fn clear_faults(State(sim): State<Shared>) -> Response {
    sim.set_faults(Vec::new());
    json_response(StatusCode::OK, json!({"faults": 0}))
}

async fn abort_next(State(sim): State<Shared>, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(object), Some(message)) =
        (value.get("object").and_then(Value::as_str), value.get("message").and_then(Value::as_str))
    else {
        return control_error("expected {\"object\": ..., \"message\": ...}");
    };
    sim.abort_next_batch(object, message);
    json_response(StatusCode::OK, json!({"object": object}))
}

async fn list_jobs(State(sim): State<Shared>) -> Response {
    match blocking(&sim, |sim| sim.jobs()).await {
        Some(jobs) => json_response(StatusCode::OK, json!(jobs)),
        None => internal_error(),
    }
}

async fn settings(State(sim): State<Shared>) -> Response {
    json_response(StatusCode::OK, json!(sim.settings()))
}

async fn patch_settings(State(sim): State<Shared>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(Value::Object(p)) => Value::Object(p),
        _ => return control_error("expected a JSON object of settings"),
    };
    let mut merged = json!(sim.settings());
    if let (Some(target), Some(patch)) = (merged.as_object_mut(), patch.as_object()) {
        for (k, v) in patch {
            target.insert(k.clone(), v.clone());
        }
    }
    match serde_json::from_value(merged) {
        Ok(settings) => {
            sim.update_settings(|s| *s = settings);
            json_response(StatusCode::OK, json!(sim.settings()))
        }
        Err(e) => control_error(e),
    }
}
