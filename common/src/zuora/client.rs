//! The AQuA client: every call authenticates, retries what is transient, and maps failures to [`ZuoraError`].

use super::token::TokenCache;
use super::types::{BatchQueryRequest, Job, Phase};
use super::{Described, ZuoraConfig, ZuoraError};
use crate::secret::Secret;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT_ENCODING, HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};

/// How much of an error body is kept in an error message.
const ERROR_BODY_SNIPPET: usize = 512;
/// The largest JSON (or Describe XML) answer read: a job of 50 batches with thousands of segments is well under
/// 1 MiB, an object of hundreds of fields described about 100 KiB.
const MAX_JSON_BODY: usize = 8 * 1024 * 1024;

/// A client for one tenant. Cheap to clone; clones share the connection pool and the token.
#[derive(Clone)]
pub struct ZuoraClient {
    http: reqwest::Client,
    config: Arc<ZuoraConfig>,
    tokens: Arc<TokenCache>,
}

/// A result file's body, as a stream of chunks; nothing holds the whole file.
pub struct FileStream {
    /// `Content-Length`, when Zuora sent one (it often streams chunked).
    pub content_length: Option<u64>,
    /// `Content-Type`, e.g. `text/csv;charset=UTF-8`.
    pub content_type: Option<String>,
    body: Pin<Box<dyn Stream<Item = Result<Bytes, ZuoraError>> + Send>>,
}

impl Stream for FileStream {
    type Item = Result<Bytes, ZuoraError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.body.as_mut().poll_next(cx)
    }
}

impl ZuoraClient {
    /// Builds a client; fails only if the TLS stack cannot be set up.
    pub fn new(config: ZuoraConfig) -> Result<Self, ZuoraError> {
        if config.client_secret.is_empty() {
            return Err(ZuoraError::NoSecret);
        }
        let http = reqwest::Client::builder()
            .redirect(redirects_within(&config.base_url))
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .read_timeout(Duration::from_secs(config.read_timeout_secs))
            .user_agent(concat!("zuora-lake-export/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ZuoraError::Transport { endpoint: "client", source })?;
        Ok(Self { http, config: Arc::new(config), tokens: Arc::default() })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ZuoraConfig {
        &self.config
    }

    /// Submits a job. `idempotency_key` (at most 255 characters) makes a retried POST safe: Zuora runs the job
    /// once, so a connection reset after the request left cannot move the stateful session twice.
    pub async fn submit(&self, request: &BatchQueryRequest, idempotency_key: &str) -> Result<Job, ZuoraError> {
        let url = self.url("/v1/batch-query/");
        let timeout = self.request_timeout();
        let response = self
            .authorized("submit", |token| {
                self.http
                    .post(&url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", idempotency_key)
                    .timeout(timeout)
                    .json(request)
            })
            .await?;
        decode_json("submit", response).await
    }

    /// Reads a job.
    pub async fn job(&self, job_id: &str) -> Result<Job, ZuoraError> {
        let url = self.url(&format!("/v1/batch-query/jobs/{job_id}"));
        self.get_json("job", &url).await
    }

    /// The last completed job of a stateful session, or `None` when it has none.
    pub async fn last_completed_job(&self, partner: &str, project: &str) -> Result<Option<Job>, ZuoraError> {
        let url = self.url(&format!("/v1/batch-query/jobs/partner/{partner}/project/{project}"));
        match self.get_json("last", &url).await {
            Ok(job) => Ok(Some(job)),
            Err(ZuoraError::Http { status: 404, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// What Zuora says of an object's fields (`GET /v1/describe/{object}`), or `None` when it describes no such
    /// object (a relation named after a field, not an object).
    pub async fn describe(&self, object: &str) -> Result<Option<Described>, ZuoraError> {
        let url = self.url(&format!("/v1/describe/{object}"));
        let timeout = self.request_timeout();
        let response =
            self.authorized("describe", |token| self.http.get(&url).bearer_auth(token).timeout(timeout)).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body = read_snippet("describe", response).await?;
            return Err(ZuoraError::Http {
                endpoint: "describe",
                status: status.as_u16(),
                code: error_code(&body),
                body,
            });
        }
        let body = read_at_most("describe", response, MAX_JSON_BODY).await?;
        let text = String::from_utf8_lossy(&body);
        Described::parse(&text).map(Some).map_err(|detail| ZuoraError::Decode { endpoint: "describe", detail })
    }

    /// Cancels a job that has not finished; Zuora answers with the job, status `cancelled`.
    pub async fn cancel(&self, job_id: &str) -> Result<Job, ZuoraError> {
        let url = self.url(&format!("/v1/batch-query/jobs/{job_id}"));
        let timeout = self.request_timeout();
        let response =
            self.authorized("cancel", |token| self.http.delete(&url).bearer_auth(token).timeout(timeout)).await?;
        decode_json("cancel", response).await
    }

    /// Polls a job until it stops running or `deadline` passes. A status this client does not know is logged and
    /// polled like a running one, but only until the deadline: it is never waited on forever.
    pub async fn wait_for_job(
        &self,
        job_id: &str,
        poll_every: Duration,
        deadline: Duration,
    ) -> Result<Job, ZuoraError> {
        let started = Instant::now();
        loop {
            let job = self.job(job_id).await?;
            if job.status.phase() != Phase::Running {
                return Ok(job);
            }
            if job.status.is_unknown() {
                warn!(job_id, status = %job.status, "unknown job status, treating it as running until the deadline");
            }
            if started.elapsed() >= deadline {
                return Err(ZuoraError::Deadline {
                    job_id: job_id.to_owned(),
                    waited: started.elapsed(),
                    last_status: job.status.to_string(),
                });
            }
            tokio::time::sleep(poll_every.min(deadline.saturating_sub(started.elapsed()))).await;
        }
    }

    /// Opens a result file as a stream. Failures before the body are retried here; a failure in the middle of the
    /// body surfaces as a retryable [`ZuoraError::Transport`] and the caller starts the file again.
    pub async fn download(&self, file_id: &str) -> Result<FileStream, ZuoraError> {
        let url = self.url(&self.config.file_path.replace("{fileId}", file_id));
        // Identity: a gzip transfer encoding would hide the file's real bytes from the record count.
        let response = self
            .authorized("file", |token| self.http.get(&url).bearer_auth(token).header(ACCEPT_ENCODING, "identity"))
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(ZuoraError::FilePurged { file_id: file_id.to_owned() });
        }
        if !status.is_success() {
            let body = read_snippet("file", response).await?;
            if status == StatusCode::FORBIDDEN && body.contains("max-object-size") {
                return Err(ZuoraError::FileTooLarge { file_id: file_id.to_owned(), limit: max_object_size(&body) });
            }
            return Err(ZuoraError::Http { endpoint: "file", status: status.as_u16(), code: error_code(&body), body });
        }
        let content_type =
            response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_length = response.content_length();
        let body = response.bytes_stream().map_err(|source| ZuoraError::Transport { endpoint: "file", source }).boxed();
        Ok(FileStream { content_length, content_type, body })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.config.request_timeout_secs)
    }

    async fn get_json<T: DeserializeOwned>(&self, endpoint: &'static str, url: &str) -> Result<T, ZuoraError> {
        let timeout = self.request_timeout();
        let response =
            self.authorized(endpoint, |token| self.http.get(url).bearer_auth(token).timeout(timeout)).await?;
        decode_json(endpoint, response).await
    }

    /// Sends with a bearer token; on a 401 fetches a new token and tries once more.
    async fn authorized(
        &self,
        endpoint: &'static str,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<Response, ZuoraError> {
        let mut refreshed = false;
        loop {
            let token = self.bearer().await?;
            let response = self.send_with_retry(endpoint, || self.in_entity(build(token.expose()))).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            if refreshed {
                let detail = read_snippet(endpoint, response).await?;
                return Err(ZuoraError::Unauthorized { endpoint, detail });
            }
            debug!(endpoint, "token refused, fetching a new one");
            self.tokens.invalidate(&token).await;
            refreshed = true;
        }
    }

    /// The request with the configured entity named (`Zuora-Entity-Ids`), if any.
    fn in_entity(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.config.entity_id {
            Some(id) => request.header("Zuora-Entity-Ids", id),
            None => request,
        }
    }

    async fn bearer(&self) -> Result<Secret, ZuoraError> {
        let margin = Duration::from_secs(self.config.token_refresh_margin_secs);
        self.tokens.get_or_refresh(margin, || self.fetch_token()).await
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration), ZuoraError> {
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: Secret,
            #[serde(default)]
            expires_in: Option<serde_json::Value>,
        }
        let url = self.url("/oauth/token");
        let form = [
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("grant_type", "client_credentials"),
        ];
        let timeout = self.request_timeout();
        let response = self.send_with_retry("token", || self.http.post(&url).form(&form).timeout(timeout)).await?;
        if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN) {
            let detail = read_snippet("token", response).await?;
            return Err(ZuoraError::Unauthorized { endpoint: "token", detail });
        }
        let token: TokenResponse = decode_json("token", response).await?;
        // Zuora documents one hour; a missing or odd value is taken as that.
        let lifetime = token
            .expires_in
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .unwrap_or(3600);
        debug!(expires_in = lifetime, "fetched a Zuora token");
        Ok((token.access_token, Duration::from_secs(lifetime)))
    }

    /// Sends a request, retrying 429, 5xx and transport failures with backoff (or the server's `Retry-After`).
    async fn send_with_retry(
        &self,
        endpoint: &'static str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ZuoraError> {
        let policy = &self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= policy.max_attempts;
            let delay = match build().send().await {
                Ok(response) if is_transient(response.status()) => {
                    let status = response.status().as_u16();
                    let retry_after = retry_after(response.headers());
                    if last {
                        return Err(ZuoraError::Unavailable { endpoint, status, attempts: attempt, retry_after });
                    }
                    let delay = retry_after
                        .map(|d| d.min(Duration::from_secs(policy.max_retry_after_secs)))
                        .unwrap_or_else(|| policy.backoff(attempt - 1));
                    warn!(endpoint, status, attempt, delay_ms = delay.as_millis() as u64, "Zuora busy, retrying");
                    delay
                }
                Ok(response) => return Ok(response),
                Err(source) => {
                    if last || source.is_builder() {
                        return Err(ZuoraError::Transport { endpoint, source });
                    }
                    let delay = policy.backoff(attempt - 1);
                    warn!(endpoint, attempt, error = %source, delay_ms = delay.as_millis() as u64, "Zuora unreachable, retrying");
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
    }
}

/// 429 and the 5xx family: the server may answer differently next time.
fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Zuora).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok().map(Duration::from_secs)
}

/// Decodes a JSON response, turning Zuora's error shapes (HTTP 200 with `errorCode`, `success: false`) and
/// non-2xx statuses into errors that carry Zuora's code.
async fn decode_json<T: DeserializeOwned>(endpoint: &'static str, response: Response) -> Result<T, ZuoraError> {
    let status = response.status();
    if !status.is_success() {
        let body = read_snippet(endpoint, response).await?;
        return Err(ZuoraError::Http { endpoint, status: status.as_u16(), code: error_code(&body), body });
    }
    let bytes = read_at_most(endpoint, response, MAX_JSON_BODY).await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ZuoraError::Decode { endpoint, detail: format!("not JSON ({e}): {}", snippet(&bytes)) })?;
    if let Some((code, message)) = api_error(&value) {
        return Err(ZuoraError::Api { code, message });
    }
    serde_json::from_value(value).map_err(|e| ZuoraError::Decode { endpoint, detail: e.to_string() })
}

/// Zuora's error in a JSON body, in any of its shapes: `{"errorCode","message"}` (AQuA),
/// `{"success":false,"code","message"}` and `{"success":false,"reasons":[{"code","message"}]}` (v1).
fn api_error(value: &serde_json::Value) -> Option<(String, String)> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    if let Some(code) = value.get("errorCode").filter(|c| !c.is_null()) {
        return Some((text(code), value.get("message").map(text).unwrap_or_default()));
    }
    if value.get("success").and_then(serde_json::Value::as_bool) == Some(false) {
        let reason = value.get("reasons").and_then(|r| r.get(0)).unwrap_or(value);
        let code = reason.get("code").map(text).unwrap_or_else(|| "unknown".to_owned());
        return Some((code, reason.get("message").map(text).unwrap_or_default()));
    }
    None
}

fn error_code(body: &str) -> Option<String> {
    serde_json::from_str(body).ok().as_ref().and_then(api_error).map(|(code, _)| code)
}

/// The limit named in a `<security:max-object-size>2047MB</security:max-object-size>` body.
fn max_object_size(body: &str) -> String {
    body.split('>').nth(1).and_then(|rest| rest.split('<').next()).unwrap_or("unknown").to_owned()
}

async fn read_snippet(endpoint: &'static str, response: Response) -> Result<String, ZuoraError> {
    let bytes = read_at_most(endpoint, response, MAX_JSON_BODY).await?;
    Ok(snippet(&bytes))
}

/// The body, refused once it grows past `limit` bytes: a server (or a proxy before it) that answers without end
/// cannot exhaust the memory a task is sized for.
async fn read_at_most(endpoint: &'static str, mut response: Response, limit: usize) -> Result<Vec<u8>, ZuoraError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|source| ZuoraError::Transport { endpoint, source })? {
        if body.len() + chunk.len() > limit {
            return Err(ZuoraError::Decode {
                endpoint,
                detail: format!("the response is over {limit} bytes: {}", snippet(&body)),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_BODY_SNIPPET)]);
    text.into_owned()
}

/// The redirects the client follows: to the base URL's own origin, or to an https host under Zuora's domain, at
/// most five. Zuora documents no redirect on any AQuA call, file downloads included; one elsewhere (a 307 would
/// post the client secret again) stops, and its 3xx answer is the call's error.
fn redirects_within(base_url: &str) -> reqwest::redirect::Policy {
    let base = url::Url::parse(base_url).ok().map(|url| url.origin());
    reqwest::redirect::Policy::custom(move |attempt| {
        let allowed = Some(attempt.url().origin()) == base || super::config::is_zuora_url(attempt.url());
        if attempt.previous().len() >= 5 {
            attempt.error("more than five redirects")
        } else if allowed {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_json_answer_without_end_is_refused_not_read_into_memory() {
        let huge = Response::from(http::Response::new(vec![b' '; MAX_JSON_BODY + 1]));
        match decode_json::<serde_json::Value>("job", huge).await {
            Err(ZuoraError::Decode { detail, .. }) => assert!(detail.contains("over 8388608 bytes"), "{detail}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let fine = Response::from(http::Response::new(br#"{"id":"1"}"#.to_vec()));
        assert_eq!(decode_json::<serde_json::Value>("job", fine).await.unwrap()["id"], "1");
    }

    #[test]
    fn finds_the_code_in_every_error_shape() {
        let aqua = serde_json::json!({"errorCode": "90005", "message": "syntax", "status": "error"});
        let v1 = serde_json::json!({"success": false, "code": 50000090, "message": "Oops"});
        let reasons = serde_json::json!({"success": false, "reasons": [{"code": "SystemError", "message": "boom"}]});
        assert_eq!(api_error(&aqua), Some(("90005".into(), "syntax".into())));
        assert_eq!(api_error(&v1), Some(("50000090".into(), "Oops".into())));
        assert_eq!(api_error(&reasons), Some(("SystemError".into(), "boom".into())));
        assert_eq!(api_error(&serde_json::json!({"id": "x", "status": "completed"})), None);
    }

    #[test]
    fn reads_the_size_limit_from_the_403_body() {
        assert_eq!(max_object_size("<security:max-object-size>2047MB</security:max-object-size>"), "2047MB");
    }
}
