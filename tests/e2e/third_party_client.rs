//! A client this project did not write, Zuora's official Python SDK, exports from the simulator unchanged: the
//! simulator follows the documented API, not our client's habits.

use test_support::{test_python, tests_dir};
use zuora_sim::{SimConfig, Simulator};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (the Zuora Python SDK)"]
async fn zuora_python_sdk_exports_full_then_incremental_with_a_deleted_row() {
    let mut config = SimConfig::default();
    config.settings.job_execution_secs = 0.2;
    let sim = Simulator::start(config).await.expect("simulator starts");
    let script = tests_dir().join("third_party/zuora_sdk_export.py");
    let output = tokio::process::Command::new(test_python())
        .arg(&script)
        .arg(sim.base_url())
        .output()
        .await
        .expect("the test venv's python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "zuora-sdk export failed\nstdout: {stdout}\nstderr: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("summary JSON");
    assert_eq!(summary["deleted"].as_array().map(Vec::len), Some(1), "{summary}");
    assert!(summary["full_records"].as_u64() > Some(0), "{summary}");
}
