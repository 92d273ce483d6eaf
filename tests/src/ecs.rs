//! Helpers for the ECS tests: the official Python SDK interpreter and running its scripts.
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};


/// The Python interpreter with Alibaba Cloud's official SDKs. Fails (never skips) when missing.
pub fn python() -> PathBuf {
    crate::python_with(&["aliyunsdkcore", "aliyunsdkecs", "alibabacloud_tea_openapi"])
}

/// Runs `tests/python/<script>` with `input` as JSON on stdin; returns its JSON stdout.
/// Blocking: call it from `spawn_blocking` when an emulator runs on the same runtime.
pub fn run_python(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let script_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let mut child = Command::new(python())
        .arg(&script_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", script_path.display()));
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.to_string().as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for python");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// [`run_python`] on a blocking thread, for async tests.
pub async fn run_python_async(script: &'static str, input: serde_json::Value) -> serde_json::Value {
    tokio::task::spawn_blocking(move || run_python(script, &input))
        .await
        .expect("python thread panicked")
}
