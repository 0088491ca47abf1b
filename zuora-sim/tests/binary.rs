//! The `zuora-sim` binary: announces its address on stdout, serves, and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_binary_prints_its_address_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zuora-sim"))
        .args(["--listen", "127.0.0.1:0", "--seed", "9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("zuora-sim listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async { reqwest::get(format!("{base}/sim/clock")).await.unwrap().status() });
    assert_eq!(status, 200);

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success(), "a graceful stop exits 0");
}

#[test]
fn help_documents_every_option() {
    let output = Command::new(env!("CARGO_BIN_EXE_zuora-sim")).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for option in ["--listen", "--config", "--seed"] {
        assert!(help.contains(option), "{option} in {help}");
    }
}
