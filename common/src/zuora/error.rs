//! Typed errors of the Zuora client: each says what failed and whether trying again can help.

use std::time::Duration;

/// A failed Zuora call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZuoraError {
    /// Zuora answered (usually with HTTP 200) with an `errorCode`: the request was understood and refused.
    #[error("Zuora error {code}: {message}")]
    Api {
        /// Zuora's code, e.g. `90005` (bad query) or `90028` (too many concurrent jobs).
        code: String,
        /// Zuora's message.
        message: String,
    },
    /// An HTTP status the client does not retry (a 4xx other than 401, 404 on a file, 429).
    #[error("Zuora answered HTTP {status} on {endpoint}{}: {body}", code.as_ref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    Http {
        /// Which call.
        endpoint: &'static str,
        /// The status.
        status: u16,
        /// The code found in the body, if any.
        code: Option<String>,
        /// The start of the body.
        body: String,
    },
    /// A 429 or 5xx that was still failing after every retry.
    #[error("Zuora kept answering HTTP {status} on {endpoint} after {attempts} attempts")]
    Unavailable {
        /// Which call.
        endpoint: &'static str,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// What the server asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Credentials refused, or a fresh token refused again.
    #[error("Zuora refused the credentials on {endpoint}: {detail}")]
    Unauthorized {
        /// Which call.
        endpoint: &'static str,
        /// What Zuora said (never the secret).
        detail: String,
    },
    /// The result file is gone: Zuora purges files about 72 hours after the job.
    #[error("file {file_id} is no longer on Zuora (purged)")]
    FilePurged {
        /// The file.
        file_id: String,
    },
    /// Zuora refuses to serve files over 2,047 MB (HTTP 403 `max-object-size`).
    #[error("file {file_id} is over Zuora's download size limit ({limit})")]
    FileTooLarge {
        /// The file.
        file_id: String,
        /// The limit as Zuora words it, e.g. `2047MB`.
        limit: String,
    },
    /// A connection failure, reset or timeout (retried, then reported).
    #[error("transport error on {endpoint}: {source}")]
    Transport {
        /// Which call.
        endpoint: &'static str,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// A response that could not be decoded.
    #[error("unexpected response from {endpoint}: {detail}")]
    Decode {
        /// Which call.
        endpoint: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// No client secret was given: commands that call Zuora need one (commands that do not, such as `redrive`,
    /// start without it).
    #[error("zuora.client_secret: not given (set it as ZUORA_CLIENT_SECRET); this command calls Zuora")]
    NoSecret,
    /// A job still not finished at its deadline (unknown statuses count as running until then).
    #[error("job {job_id} did not finish within {waited:?} (last status {last_status})")]
    Deadline {
        /// The job.
        job_id: String,
        /// How long it was waited for.
        waited: Duration,
        /// The last status seen.
        last_status: String,
    },
}

/// Zuora codes that mean "busy, try later" rather than "your request is wrong".
const BUSY_API_CODES: &[&str] = &[
    // Too many concurrent jobs (50 stateful + 50 stateless per tenant).
    "90028",
];

impl ZuoraError {
    /// True when Zuora is at capacity (too many concurrent jobs, or rate-limited after every retry): the same
    /// request will be accepted later, and waiting for that is the whole remedy.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Api { code, .. } => BUSY_API_CODES.contains(&code.as_str()),
            Self::Unavailable { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// True when the same call may succeed later; false when it needs a person or a different request.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { .. } => self.is_busy(),
            Self::Unavailable { .. } | Self::Transport { .. } | Self::Deadline { .. } => true,
            Self::Http { status, .. } => *status == 408,
            Self::Unauthorized { .. }
            | Self::FilePurged { .. }
            | Self::FileTooLarge { .. }
            | Self::Decode { .. }
            | Self::NoSecret => false,
        }
    }

    /// Zuora's own error code, when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::Http { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_codes_retry_and_bad_requests_do_not() {
        let busy = ZuoraError::Api { code: "90028".into(), message: "too many".into() };
        let bad = ZuoraError::Api { code: "90005".into(), message: "syntax".into() };
        assert!(busy.is_retryable() && busy.is_busy());
        assert!(!bad.is_retryable() && !bad.is_busy());
        let throttled = ZuoraError::Unavailable { endpoint: "submit", status: 429, attempts: 5, retry_after: None };
        let down = ZuoraError::Unavailable { endpoint: "submit", status: 503, attempts: 5, retry_after: None };
        assert!(throttled.is_busy() && !down.is_busy() && down.is_retryable());
        assert_eq!(bad.code(), Some("90005"));
        assert!(!ZuoraError::FilePurged { file_id: "f".into() }.is_retryable());
        assert!(bad.to_string().contains("90005"));
    }
}
