//! Logging set-up shared by the binaries.

/// Logs to stderr, filtered by `RUST_LOG` (`default` when it is not set, e.g. `info`).
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.to_owned().into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
