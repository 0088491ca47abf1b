//! The test deployments' configuration, on either tier.

use crate::unique;
use std::path::Path;

/// A deployment's configuration: a simulator at `base_url`, the six queue URLs (requests, its DLQ, jobs, its DLQ,
/// lake, its DLQ), one bucket for the ledger and every object (a catalogue file naming it is written in `dir`),
/// and the `[aws]` section's lines. Short delays everywhere, so the tests run fast.
pub(crate) fn config_text(base_url: &str, queues: &[String], bucket: &str, aws_section: &str, dir: &Path) -> String {
    let catalogue = dir.join("catalogue.toml");
    let builtin = include_str!("../../common/catalogue.toml")
        .replace("bucket = \"zuora-raw\"", &format!("bucket = \"{bucket}\""));
    std::fs::write(&catalogue, builtin).expect("write catalogue");
    let [requests, requests_dlq, jobs, jobs_dlq, lake, lake_dlq] = queues else {
        panic!("six queue URLs, not {}", queues.len())
    };
    format!(
        r#"
catalogue = "{catalogue}"

[zuora]
base_url = "{base_url}"
allow_custom_base_url = true
client_id = "0b9e5d6c-1f3a-4e2b-9c8d-7a6f5e4d3c2b"
client_secret = "sim-client-secret"
data_center = "us"

[zuora.retry]
max_attempts = 4
base_delay_ms = 10
max_delay_ms = 100
max_retry_after_secs = 2

[session]
partner = "test-partner"
project = "{project}"

[aws]
{aws_section}
[queues]
requests = "{requests}"
requests_dlq = "{requests_dlq}"
jobs = "{jobs}"
jobs_dlq = "{jobs_dlq}"
lake = "{lake}"
lake_dlq = "{lake_dlq}"

[ledger]
bucket = "{bucket}"

[full_export]
earliest = "2020-01-01"
window_months = 6

[producer]
wait_secs = 1
busy_retry_secs = 1

[consumer]
jobs_in_flight = 2
part_size_mib = 5
part_pool_mib = 16
wait_secs = 1
poll_delay_secs = 1
max_poll_delay_secs = 2
visibility_secs = 30
file_attempts = 2
shutdown_grace_secs = 5
"#,
        catalogue = catalogue.display(),
        project = unique("project"),
    )
}
