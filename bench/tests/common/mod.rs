//! Running a scenario of this build's `sluice-bench` against this build's `sluice`.

use std::process::Command;

/// Runs `sluice-bench SCENARIO ARGS… --out FILE` and returns the scenario's JSON.
pub fn run_scenario(scenario: &str, args: &[&str]) -> serde_json::Value {
    // The sluice binary of this build, beside the bench's (the workspace's tests build it).
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_sluice-bench"));
    let sluice = bench.with_file_name("sluice");
    assert!(
        sluice.is_file(),
        "{} is missing: build the workspace (`cargo build --workspace`)",
        sluice.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{scenario}.json"));
    let status = Command::new(bench)
        .arg(scenario)
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("SLUICE_BIN", &sluice)
        .status()
        .expect("sluice-bench runs");
    assert!(status.success(), "sluice-bench {scenario}: {status}");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("the scenario's JSON")
}
