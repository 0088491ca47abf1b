//! What the tests share: deployments and buckets on either tier's back end (the servers `tests/run.sh` starts, or
//! memory and a local directory), the servers themselves, an intercepting store and a failing queue, a stand-in for
//! the stack's notification route, child processes, and where the tools `tests/run.sh` installs are.
//!
//! Tests that need the servers whatever the tier (the SQS and S3 adapters, the binaries, third-party clients) are
//! marked `#[ignore = "real-protocol tier: ./tests/run.sh"]`: `cargo test` skips them and says so, `tests/run.sh`
//! runs them.

mod config;
mod deployment;
mod notify;
pub mod queues;
mod servers;
pub mod stores;

pub use deployment::{Bucket, Deployment, drain, with_settings};
pub use notify::NotifyRoute;
pub use servers::{Aws, AwsResources, aws_config};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The Python interpreter of the test venv (with moto and zuora-sdk), as exported by `tests/run.sh`.
pub fn test_python() -> PathBuf {
    PathBuf::from(required_env("ZLE_TEST_PYTHON"))
}

/// A script or fixture under `tests/`.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// deploy/template.yaml, parsed (CloudFormation's short-form tags are kept as YAML tags).
pub fn deploy_template() -> serde_yaml::Value {
    let text = std::fs::read_to_string(tests_dir().join("../deploy/template.yaml")).expect("deploy/template.yaml");
    serde_yaml::from_str(&text).expect("the template is YAML")
}

pub(crate) fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with ./tests/run.sh, which installs and starts what these tests need")
    })
}

/// A binary of the workspace, built by `cargo test --workspace` next to the test executables.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target/PROFILE/deps").join(name);
    assert!(path.exists(), "{}: not built; run the suite with ./tests/run.sh (cargo test --workspace)", path.display());
    path
}

/// A child process killed when the test ends, whatever happens.
pub struct Process(pub std::process::Child);

impl Process {
    /// Starts `command` with its stdout and stderr in the file `log`.
    pub fn start(mut command: std::process::Command, log: &std::path::Path) -> Self {
        let log = std::fs::File::create(log).expect("the log file");
        let child = command.stdout(log.try_clone().expect("the log file")).stderr(log).spawn().expect("it starts");
        Self(child)
    }

    /// Stops it with SIGTERM, as ECS does; its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
        self.0.wait().expect("it ends")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A new empty directory in the system's temporary directory, removed when dropped, or kept (its path printed) if
/// the test is failing. Tests that run in parallel must not share a directory: two once named theirs after the same
/// clock read and read each other's ledger.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    /// A directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self(tempfile::Builder::new().prefix(&format!("{prefix}-")).tempdir().expect("a temporary directory"))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.disable_cleanup(true);
            eprintln!("{} kept for inspection", self.0.path().display());
        }
    }
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{}", nanos % 1_000_000_000_000, NEXT.fetch_add(1, Ordering::SeqCst))
}

/// A whole configuration for commands that only read it (`check-config`): real-looking AWS queue URLs, no secret
/// (it comes from `ZUORA_CLIENT_SECRET`), the consumer's jobs in flight spelt out for tests to change.
pub const CHECKED_CONFIG: &str = r#"raw_bucket = "acme-zuora-raw"
[zuora]
base_url = "https://rest.zuora.com"
client_id = "f4b2c1d0-0000-4000-8000-000000000001"
[session]
partner = "acme"
project = "zuora-datalake-export"
[aws]
region = "eu-west-1"
[queues]
requests = "https://sqs.eu-west-1.amazonaws.com/123456789012/zle-requests"
requests_dlq = "https://sqs.eu-west-1.amazonaws.com/123456789012/zle-requests-dlq"
jobs = "https://sqs.eu-west-1.amazonaws.com/123456789012/zle-jobs"
jobs_dlq = "https://sqs.eu-west-1.amazonaws.com/123456789012/zle-jobs-dlq"
lake = "https://sqs.eu-west-1.amazonaws.com/123456789012/zle-lake.fifo"
lake_dlq = "https://sqs.eu-west-1.amazonaws.com/123456789012/zle-lake-dlq.fifo"
[ledger]
bucket = "acme-zuora-raw"
[consumer]
jobs_in_flight = 2
"#;

#[cfg(test)]
mod tests {
    use super::{Scratch, with_settings};

    #[test]
    fn settings_replace_a_sections_own_key_or_are_added_to_it() {
        let text = "top = 1\n[a]\nx = 1\ny = 2\n[b]\nx = 3\n";
        let edited = with_settings(text, &[("b", "x = 4\nz = 5"), ("a", "y = 6")]);
        assert_eq!(edited, "top = 1\n[a]\nx = 1\ny = 6\n[b]\nz = 5\nx = 4\n");
    }

    #[test]
    fn a_scratch_directory_is_its_own_and_goes_with_its_test_unless_the_test_fails() {
        let (a, b) = (Scratch::new("same"), Scratch::new("same"));
        assert_ne!(a.path(), b.path());
        let path = a.path().to_owned();
        std::fs::write(path.join("file"), b"x").unwrap();
        drop(a);
        assert!(!path.exists(), "removed with its test");

        let kept = std::sync::Mutex::new(None);
        let failed = std::panic::catch_unwind(|| {
            let scratch = Scratch::new("failing");
            *kept.lock().unwrap() = Some(scratch.path().to_owned());
            panic!("a failing test");
        });
        assert!(failed.is_err());
        let kept = kept.into_inner().unwrap().unwrap();
        assert!(kept.is_dir(), "kept for inspection");
        std::fs::remove_dir(kept).unwrap();
    }
}
