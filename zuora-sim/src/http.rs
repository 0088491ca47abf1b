//! The HTTP surface: Zuora's endpoints and the file downloads on all their paths; the `/sim/` control API is
//! merged in from [`crate::control`].

use crate::control;
use crate::files::file_chunks;
use crate::respond::{Shared, blocking, internal_error, json_response};
use crate::state::{ApiError, DownloadError, FaultRule, MALFORMED, Sim};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

/// Every route.
pub fn router(sim: Shared) -> Router {
    let file = get(download);
    Router::new()
        .route("/oauth/token", post(token))
        .route("/v1/batch-query/", post(submit))
        .route("/v1/batch-query", post(submit))
        .route("/apps/api/batch-query/", post(submit))
        .route("/apps/api/batch-query", post(submit))
        .route("/v1/batch-query/jobs/{id}", get(job).delete(cancel))
        .route("/apps/api/batch-query/jobs/{id}", get(job).delete(cancel))
        .route("/v1/batch-query/jobs/partner/{partner}/project/{project}", get(last_completed))
        .route("/v1/describe/{object}", get(describe))
        .route("/v1/file/{id}", file.clone())
        .route("/v1/files/{id}", file.clone())
        .route("/v1/batch-query/file/{id}", file.clone())
        .route("/apps/api/file/{id}", file.clone())
        .route("/apps/api/batch-query/file/{id}", file)
        .merge(control::routes())
        .layer(axum::middleware::from_fn_with_state(sim.clone(), request_ids))
        .with_state(sim)
}

/// Every response carries a `Zuora-Request-Id` and echoes the caller's `Zuora-Track-Id`, as Zuora's do; every call
/// of the API is counted by its route.
async fn request_ids(State(sim): State<Shared>, request: Request, next: axum::middleware::Next) -> Response {
    if let Some(route) = request.extensions().get::<axum::extract::MatchedPath>()
        && !route.as_str().starts_with("/sim/")
    {
        sim.count_call(format!("{} {}", request.method(), route.as_str()));
    }
    let track = request.headers().get("Zuora-Track-Id").cloned();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&sim.new_id()) {
        headers.insert("Zuora-Request-Id", id);
    }
    if let Some(track) = track {
        headers.insert("Zuora-Track-Id", track);
    }
    response
}

/// Collapses repeated slashes (`/v1/batch-query//jobs/x`, which some clients send), as Zuora's front end does.
pub fn normalize_path(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.contains("//") {
        let mut collapsed = String::with_capacity(path.len());
        for c in path.chars() {
            if !(c == '/' && collapsed.ends_with('/')) {
                collapsed.push(c);
            }
        }
        let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        if let Ok(uri) = format!("{collapsed}{query}").parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

fn unauthorized() -> Response {
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        json!({"success": false, "reasons": [{"code": 90000011, "message": "Authentication error"}]}),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=Zuora API, ZSession realm=Zuora API, Bearer realm=Zuora API"),
    );
    response
}

/// The answer to a call that may not proceed: no valid credentials (401), or, on a multi-entity tenant, no entity
/// of the tenant named in `Zuora-Entity-Ids` (400; Zuora's exact answer is not documented: see the README).
fn refused(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    if !authorized(sim, headers) {
        return Some(unauthorized());
    }
    let entities = &sim.config.entity_ids;
    let named = headers.get("Zuora-Entity-Ids").and_then(|v| v.to_str().ok()).map(str::trim);
    if !entities.is_empty() && !named.is_some_and(|id| entities.iter().any(|e| e == id)) {
        let message = match named {
            None => "This tenant has several entities: name one in the Zuora-Entity-Ids header".to_owned(),
            Some(id) => format!("Zuora-Entity-Ids: {id} is not an entity of this tenant"),
        };
        let reasons = json!([{"code": 50000040, "message": message}]);
        return Some(json_response(StatusCode::BAD_REQUEST, json!({"success": false, "reasons": reasons})));
    }
    None
}

fn authorized(sim: &Sim, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        return sim.token_valid(token.trim());
    }
    if let Some(basic) = value.strip_prefix("Basic ") {
        let expected = format!("{}:{}", sim.config.client_id, sim.config.client_secret);
        return base64_decode(basic.trim()).is_some_and(|decoded| decoded == expected.as_bytes());
    }
    false
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | ALPHABET.iter().position(|a| *a == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn api_error_response(error: ApiError, body: &Value) -> Response {
    let mut echo = json!({"errorCode": error.code, "message": error.message, "status": "error"});
    for key in ["name", "version", "format", "encrypted", "partner", "project"] {
        if let Some(v) = body.get(key) {
            echo[key] = v.clone();
        }
    }
    echo["useLastCompletedJobQueries"] = json!(false);
    if let Some(queries) = body.get("queries").and_then(Value::as_array) {
        echo["batches"] = json!(
            queries
                .iter()
                .map(|q| json!({"name": q.get("name"), "query": q.get("query"), "status": "pending"}))
                .collect::<Vec<_>>()
        );
    }
    json_response(StatusCode::OK, echo)
}

/// Applies latency and status faults; returns a response when the request must fail here.
async fn fault_gate(sim: &Sim, endpoint: &str) -> (Option<Response>, Vec<FaultRule>) {
    let faults = sim.faults_for(endpoint);
    for fault in &faults {
        if let Some(ms) = fault.latency_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    for fault in &faults {
        if let Some(status) = fault.status {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = json_response(
                code,
                json!({"success": false, "reasons": [{"code": "SystemError", "message": format!("injected {status}")}]}),
            );
            if let Some(after) = fault.retry_after_secs
                && let Ok(value) = HeaderValue::from_str(&after.to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return (Some(response), faults);
        }
    }
    (None, faults)
}

async fn token(State(sim): State<Shared>, body: String) -> Response {
    if let (Some(response), _) = fault_gate(&sim, "token").await {
        return response;
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        json_response(StatusCode::BAD_REQUEST, json!({"error": "unsupported_grant_type"}))
    } else {
        match sim.issue_token(field("client_id"), field("client_secret")) {
            Some((token, lifetime)) => json_response(
                StatusCode::OK,
                json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime,
                       "scope": "user.simulated entity.simulated", "jti": sim.new_id()}),
            ),
            None => unauthorized(),
        }
    }
}

async fn submit(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    async {
        if let Some(refused) = refused(&sim, &headers) {
            return refused;
        }
        if let (Some(response), _) = fault_gate(&sim, "submit").await {
            return response;
        }
        let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"success": false, "code": 50000090, "message": "Oops, request is malformed. Please check your request."}),
            );
        };
        let key = headers.get("Idempotency-Key").and_then(|v| v.to_str().ok());
        match sim.submit(&body, key) {
            Ok(job) => json_response(StatusCode::OK, job),
            Err(e) if e.code == MALFORMED => json_response(
                StatusCode::BAD_REQUEST,
                json!({"success": false, "code": 50000090, "message": e.message}),
            ),
            Err(e) => api_error_response(e, &body),
        }
    }
    .await
}

async fn job(State(sim): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    async {
        if let Some(refused) = refused(&sim, &headers) {
            return refused;
        }
        let (failed, faults) = fault_gate(&sim, "job").await;
        if let Some(response) = failed {
            return response;
        }
        let Some(found) = blocking(&sim, move |sim| sim.job(&id)).await else { return internal_error() };
        match found {
            Some(mut job) => {
                if let Some(status) = faults.iter().find_map(|f| f.job_status.clone()) {
                    job["status"] = json!(status);
                }
                json_response(StatusCode::OK, job)
            }
            None => json_response(
                StatusCode::OK,
                json!({"errorCode": "90002", "message": "Invalid job id", "status": "error"}),
            ),
        }
    }
    .await
}

async fn cancel(State(sim): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    async {
        if let Some(refused) = refused(&sim, &headers) {
            return refused;
        }
        if let (Some(response), _) = fault_gate(&sim, "cancel").await {
            return response;
        }
        match sim.cancel(&id) {
            Ok(job) => json_response(StatusCode::OK, job),
            Err(e) => {
                json_response(StatusCode::OK, json!({"errorCode": e.code, "message": e.message, "status": "error"}))
            }
        }
    }
    .await
}

async fn last_completed(
    State(sim): State<Shared>,
    headers: HeaderMap,
    Path((partner, project)): Path<(String, String)>,
) -> Response {
    async {
        if let Some(refused) = refused(&sim, &headers) {
            return refused;
        }
        if let (Some(response), _) = fault_gate(&sim, "last").await {
            return response;
        }
        let Some(found) = blocking(&sim, move |sim| sim.last_completed(&partner, &project)).await else {
            return internal_error();
        };
        match found {
            Some(job) => json_response(StatusCode::OK, job),
            None => json_response(
                StatusCode::NOT_FOUND,
                json!({"success": false, "reasons": [{"code": "90002", "message": "No completed job found for this partner and project"}]}),
            ),
        }
    }
    .await
}

/// Describe: the object's fields as XML, each with its type, `required` and the `export` context; 404 for a name
/// that is not an object (a relation such as `BillToContact`). Zuora's answer to an unknown object is not
/// documented: see the README.
async fn describe(State(sim): State<Shared>, headers: HeaderMap, Path(object): Path<String>) -> Response {
    if let Some(refused) = refused(&sim, &headers) {
        return refused;
    }
    if let (Some(response), _) = fault_gate(&sim, "describe").await {
        return response;
    }
    let Some(schema) = sim.schema(&object) else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"success": false, "reasons": [{"code": 50000040, "message": format!("Unknown object {object}")}]}),
        );
    };
    let fields: String = schema
        .fields
        .iter()
        .map(|f| {
            format!(
                "<field><name>{}</name><label>{}</label><type>{}</type><required>{}</required>\
                 <contexts><context>soap</context><context>export</context></contexts></field>",
                f.name,
                f.name,
                f.ty.zuora_type(),
                f.ty.required()
            )
        })
        .collect();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<object><name>{0}</name><label>{0}</label><fields>{fields}</fields></object>",
        schema.name
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml;charset=utf-8")], xml).into_response()
}

async fn download(State(sim): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    async {
        if let Some(refused) = refused(&sim, &headers) {
            return refused;
        }
        let (failed, faults) = fault_gate(&sim, "file").await;
        if let Some(response) = failed {
            return response;
        }
        let file_id = id.clone();
        let Some(found) = blocking(&sim, move |sim| sim.download(&file_id)).await else { return internal_error() };
        let file = match found {
            Ok(file) => file,
            Err(DownloadError::NotFound) => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    json!({"success": false, "reasons": [{"code": "FileNotFound", "message": format!("File {id} not found")}]}),
                );
            }
            Err(DownloadError::TooLarge(limit)) => {
                let body = format!("<security:max-object-size>{}MB</security:max-object-size>", limit / (1024 * 1024));
                return (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/xml")], body).into_response();
            }
        };
        let content_type =
            if file.spec.gzip { "application/x-gzip;charset=UTF-8" } else { "text/csv;charset=UTF-8" };
        let reset = faults.iter().find_map(|f| f.reset_after_bytes);
        let truncate = faults.iter().find_map(|f| f.truncate_after_bytes);
        let bandwidth = faults.iter().find_map(|f| f.bandwidth_bytes_per_sec);
        let body = match file.stored {
            Some(path) => match tokio::fs::File::open(&path).await {
                Ok(stored) => file_stream(stored_chunks(stored), reset, truncate, bandwidth).boxed(),
                Err(_) => return internal_error(),
            },
            None => {
                let threads = match sim.config.render_inline {
                    true => 0,
                    false => std::thread::available_parallelism().map_or(2, |n| n.get()),
                };
                file_stream(file_chunks(file.spec, threads), reset, truncate, bandwidth).boxed()
            }
        };
        let mut response = Response::new(Body::from_stream(body));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(size) = file.size
            && let Ok(value) = HeaderValue::from_str(&size.to_string())
        {
            response.headers_mut().insert(header::CONTENT_LENGTH, value);
        }
        response
    }
    .await
}

/// A stored file's bytes, in chunks of at most 64 KiB.
fn stored_chunks(file: tokio::fs::File) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut chunk = bytes::BytesMut::with_capacity(64 * 1024);
        match tokio::io::AsyncReadExt::read_buf(&mut file, &mut chunk).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(chunk.freeze()), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// A file body as a stream, with the injected faults applied.
fn file_stream(
    body: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send,
    reset_after: Option<u64>,
    truncate_after: Option<u64>,
    bandwidth: Option<u64>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let limit = reset_after.or(truncate_after);
    let mut paced: Option<(tokio::time::Instant, u64)> = None;
    body.scan(0u64, move |sent, item| {
        let item = match (item, limit) {
            (Ok(_), Some(limit)) if *sent >= limit => None,
            (Ok(mut chunk), Some(limit)) if *sent + chunk.len() as u64 > limit => {
                chunk.truncate((limit - *sent) as usize);
                Some(Ok(chunk))
            }
            (item, _) => Some(item),
        };
        if let Some(Ok(c)) = &item {
            *sent += c.len() as u64;
        }
        std::future::ready(item)
    })
    .chain(futures::stream::iter(
        reset_after.map(|_| Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected connection reset"))),
    ))
    .then(move |item| {
        // Paced against the clock from the first byte, not by a sleep per chunk: each sleep overshoots by the
        // timer's granularity, and 64 KiB chunks at 20 MB/s lost a quarter of the rate that way.
        let due = match (&item, bandwidth) {
            (Ok(chunk), Some(rate)) => {
                let (started, sent) = paced.get_or_insert_with(|| (tokio::time::Instant::now(), 0));
                *sent += chunk.len() as u64;
                Some(*started + Duration::from_secs_f64(*sent as f64 / rate.max(1) as f64))
            }
            _ => None,
        };
        async move {
            match (&item, due) {
                (Ok(_), Some(due)) => tokio::time::sleep_until(due).await,
                // Let the bytes before the reset reach the wire first, as a real mid-transfer reset does.
                (Err(_), _) => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => {}
            }
            item
        }
    })
}
