//! Shared harness of the cross-process tests: where the tools that `tests/run.sh` installs and starts are.

use std::path::PathBuf;

/// The Python interpreter of the test venv (with moto and zuora-sdk), as exported by `tests/run.sh`.
pub fn test_python() -> PathBuf {
    PathBuf::from(required_env("ZLE_TEST_PYTHON"))
}

/// A script or fixture under `tests/`.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with ./tests/run.sh, which installs and starts what these tests need")
    })
}
