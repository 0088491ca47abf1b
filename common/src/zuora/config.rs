//! Connection settings for one Zuora tenant.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where the tenant lives. It decides how Zuora reads `incrementalTime`: US data centres read it as US Pacific time
/// (DST-aware), the EU one as UTC, whatever `dateTimeUtc` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataCenter {
    /// US Cloud 1 and 2, production and sandboxes: `incrementalTime` is America/Los_Angeles.
    #[default]
    Us,
    /// EU production and sandboxes: `incrementalTime` is UTC.
    Eu,
}

impl DataCenter {
    /// Zuora's system time here: the zone of a datetime Zuora writes without an offset, and of `incrementalTime`.
    pub fn zone(self) -> chrono_tz::Tz {
        match self {
            Self::Us => chrono_tz::America::Los_Angeles,
            Self::Eu => chrono_tz::UTC,
        }
    }

    /// The IANA name of [`DataCenter::zone`].
    pub fn zone_name(self) -> &'static str {
        self.zone().name()
    }
}

/// How transient failures (429, 5xx, timeouts, connection resets) are retried.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. tap-zuora's 5 tries were not enough to ride out Zuora's
    /// one-minute rate windows, hence 8.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles each attempt.
    pub base_delay_ms: u64,
    /// Ceiling of the computed delay, in milliseconds.
    pub max_delay_ms: u64,
    /// Ceiling of a server-sent `Retry-After`, in seconds: a longer one is an outage, better handled by the queue.
    pub max_retry_after_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, base_delay_ms: 1_000, max_delay_ms: 60_000, max_retry_after_secs: 300 }
    }
}

impl RetryPolicy {
    /// The computed backoff before retry number `retry` (0-based): exponential, capped, with full jitter in its
    /// upper half so a pool of consumers does not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_delay_ms.saturating_mul(1u64 << retry.min(30));
        let capped = exp.min(self.max_delay_ms);
        let jittered = capped / 2 + rand::random_range(0..=capped - capped / 2);
        Duration::from_millis(jittered)
    }
}

/// Everything needed to talk to one tenant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZuoraConfig {
    /// REST base URL, e.g. `https://rest.zuora.com` (no trailing path).
    pub base_url: String,
    /// OAuth client id (36 characters on a real tenant).
    pub client_id: String,
    /// OAuth client secret; never logged. Usually given as `ZUORA_CLIENT_SECRET`; only commands that call Zuora
    /// need it (a client is not built without it).
    #[serde(default)]
    pub client_secret: Secret,
    /// Where the tenant lives; decides the zone of `incrementalTime`.
    #[serde(default)]
    pub data_center: DataCenter,
    /// Download path of a result file, `{fileId}` replaced. Zuora serves the same file on several paths.
    #[serde(default = "default_file_path")]
    pub file_path: String,
    /// Connect timeout, in seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Timeout of one JSON call (token, submit, poll, cancel), in seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Longest silence while reading a file body before the download counts as stalled, in seconds.
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// How long before `expires_in` runs out a token is refreshed, in seconds (capped at half its lifetime).
    #[serde(default = "default_refresh_margin")]
    pub token_refresh_margin_secs: u64,
    /// Retries of transient failures.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// The entity every call works in, sent as `Zuora-Entity-Ids` (Zuora Multi-entity tenants, whose API user can
    /// reach several entities). Absent on single-entity tenants.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// Accept a `base_url` outside Zuora's domain ([`ZUORA_DOMAIN`]): the simulator, a test double. Off, the client
    /// secret can only be sent to Zuora.
    #[serde(default)]
    pub allow_custom_base_url: bool,
}

/// Every data centre's REST host, and every host a Zuora file download is served from, is under this domain
/// (docs/configuration.md, "Data centres").
pub const ZUORA_DOMAIN: &str = ".zuora.com";

/// Whether `url` is an https URL of a host under [`ZUORA_DOMAIN`].
pub fn is_zuora_url(url: &url::Url) -> bool {
    url.scheme() == "https" && url.host_str().is_some_and(|host| host.ends_with(ZUORA_DOMAIN))
}

fn default_file_path() -> String {
    "/v1/file/{fileId}".to_owned()
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    60
}
fn default_read_timeout() -> u64 {
    120
}
fn default_refresh_margin() -> u64 {
    300
}

impl ZuoraConfig {
    /// A config with defaults for everything but the tenant and its credentials.
    pub fn new(base_url: impl Into<String>, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            base_url: base_url.into(),
            client_id: client_id.into(),
            client_secret,
            data_center: DataCenter::default(),
            file_path: default_file_path(),
            connect_timeout_secs: default_connect_timeout(),
            request_timeout_secs: default_request_timeout(),
            read_timeout_secs: default_read_timeout(),
            token_refresh_margin_secs: default_refresh_margin(),
            retry: RetryPolicy::default(),
            entity_id: None,
            allow_custom_base_url: false,
        }
    }

    /// Checks the values a typo would break, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.base_url).map_err(|e| format!("zuora.base_url: {e}"))?;
        // Plain HTTP only to this machine (the simulator): credentials and billing data never cross a network in clear.
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(format!("zuora.base_url: https is required (http only to this machine), got {url}")),
            scheme => return Err(format!("zuora.base_url: scheme must be https, not {scheme}")),
        }
        // The client secret is posted to this host: only Zuora's, unless the configuration says otherwise.
        if !is_zuora_url(&url) && !self.allow_custom_base_url {
            return Err(format!(
                "zuora.base_url: {url} is not a Zuora data centre (https://*{ZUORA_DOMAIN}, docs/configuration.md); \
                 set zuora.allow_custom_base_url = true for a simulator"
            ));
        }
        if self.client_id.is_empty() {
            return Err("zuora.client_id: must not be empty".to_owned());
        }
        if !self.file_path.starts_with('/') || !self.file_path.contains("{fileId}") {
            return Err(format!("zuora.file_path: must start with / and contain {{fileId}}, got {:?}", self.file_path));
        }
        if self.retry.max_attempts == 0 {
            return Err("zuora.retry.max_attempts: must be at least 1".to_owned());
        }
        if let Some(id) = &self.entity_id
            && (id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(format!("zuora.entity_id: {id:?} is not an entity id (letters, digits and -)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let policy = RetryPolicy { max_attempts: 5, base_delay_ms: 100, max_delay_ms: 1_000, max_retry_after_secs: 1 };
        for retry in 0..10 {
            let exp = (100u64 << retry).min(1_000);
            let delay = policy.backoff(retry).as_millis() as u64;
            assert!(delay >= exp / 2 && delay <= exp, "retry {retry}: {delay} not in [{}, {exp}]", exp / 2);
        }
    }

    #[test]
    fn validate_names_the_field() {
        let mut config = ZuoraConfig::new("https://rest.zuora.com", "id", Secret::new("s"));
        assert!(config.validate().is_ok());
        config.file_path = "/v1/file/".into();
        assert!(config.validate().unwrap_err().starts_with("zuora.file_path"));
        config.file_path = default_file_path();
        config.entity_id = Some("a b".into());
        assert!(config.validate().unwrap_err().starts_with("zuora.entity_id"));
        config.entity_id = Some("8a8082c4-5b2d".into());
        assert!(config.validate().is_ok());
        config.base_url = "rest.zuora.com".into();
        assert!(config.validate().unwrap_err().starts_with("zuora.base_url"));
        for (url, accepted, custom) in [
            ("http://rest.zuora.com", false, false),
            ("http://10.0.0.7:8080", false, true),
            ("ftp://rest.zuora.com", false, true),
            ("http://127.0.0.1:8080", true, true),
            ("http://localhost:8080", true, true),
            ("http://[::1]:8080", true, true),
            ("https://rest.eu.zuora.com", true, false),
            ("https://rest.test.ap.zuora.com", true, false),
            ("https://rest.sandbox.na.zuora.com", true, false),
            // The client secret would go to whoever runs these.
            ("https://rest.zuora.com.example.net", false, false),
            ("https://evilzuora.com", false, false),
            ("https://example.net", false, false),
            ("https://example.net", true, true),
            ("http://127.0.0.1:8080", false, false),
        ] {
            config.base_url = url.into();
            config.allow_custom_base_url = custom;
            assert_eq!(config.validate().is_ok(), accepted, "{url} (custom {custom}): {:?}", config.validate());
        }
        config.base_url = "https://example.net".into();
        config.allow_custom_base_url = false;
        let refused = config.validate().unwrap_err();
        assert!(refused.starts_with("zuora.base_url") && refused.contains("allow_custom_base_url"), "{refused}");
    }

    #[test]
    fn every_data_centre_of_the_documentation_is_a_zuora_url() {
        let table = include_str!("../../../docs/configuration.md");
        let hosts: Vec<&str> = table
            .lines()
            .filter_map(|l| l.split(" | ").nth(1))
            .filter_map(|cell| cell.strip_prefix('`')?.strip_suffix('`'))
            .filter(|cell| cell.starts_with("https://"))
            .collect();
        assert!(hosts.len() >= 10, "{hosts:?}");
        for host in hosts {
            assert!(is_zuora_url(&url::Url::parse(host).unwrap()), "{host}");
        }
    }

    #[test]
    fn a_client_needs_the_secret_and_the_configuration_does_not() {
        let mut config = ZuoraConfig::new("https://rest.zuora.com", "id", Secret::new(""));
        assert!(config.validate().is_ok());
        let error = crate::zuora::ZuoraClient::new(config.clone()).err().expect("no client without a secret");
        assert!(error.to_string().contains("ZUORA_CLIENT_SECRET"), "{error}");
        config.client_secret = Secret::new("s");
        assert!(crate::zuora::ZuoraClient::new(config).is_ok());
    }
}
