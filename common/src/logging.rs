//! Logging set-up shared by the binaries: JSON lines in containers (one object per event, its fields at the top
//! level, for CloudWatch Logs Insights), the human format on a terminal.

use std::io::IsTerminal;

/// The environment variable that chooses the log format: `json` or `text` (when unset: JSON unless stderr is a
/// terminal).
pub const LOG_FORMAT_ENV: &str = "ZLE_LOG_FORMAT";

/// Logs to stderr, filtered by `RUST_LOG` (`default` when it is not set, e.g. `info`).
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.to_owned().into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let choice = std::env::var(LOG_FORMAT_ENV).ok();
    if json(choice.as_deref(), std::io::stderr().is_terminal()) {
        logs.json().flatten_event(true).with_current_span(false).with_span_list(true).init();
    } else {
        logs.init();
    }
}

/// Whether logs are JSON: as `ZLE_LOG_FORMAT` says, otherwise unless a person reads them on a terminal.
fn json(choice: Option<&str>, terminal: bool) -> bool {
    match choice {
        Some(format) if format.eq_ignore_ascii_case("json") => true,
        Some(format) if format.eq_ignore_ascii_case("text") => false,
        _ => !terminal,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn containers_get_json_and_terminals_text_unless_the_environment_says() {
        assert!(super::json(None, false));
        assert!(!super::json(None, true));
        assert!(super::json(Some("JSON"), true));
        assert!(!super::json(Some("text"), false));
    }
}
