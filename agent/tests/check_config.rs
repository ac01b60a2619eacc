//! `cnaas-agent check-config FILE`: exit 0 on a good file, exit 2 with file:line:column and a
//! hint for each problem on a bad one.

use std::process::Command;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_cnaas-agent"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("run: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "agent.toml");
    (out.status.code().unwrap_or(-1), text)
}

fn example() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/agent.example.toml");
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn the_example_config_is_good() {
    let (code, out) = check(&example());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("agent.toml: ok"), "{out}");
}

#[test]
fn a_misspelt_key_and_a_bad_duration_are_both_reported() {
    let text = example()
        .replace("retries = 1", "retires = 1")
        .replace("timeout = \"300ms\"", "timeout = \"300 potatoes\"");
    let (code, out) = check(&text);
    assert_eq!(code, 2, "{out}");
    let retires = text
        .lines()
        .position(|l| l.starts_with("retires"))
        .map(|i| i + 1);
    let timeout = text
        .lines()
        .position(|l| l.starts_with("timeout = \"300"))
        .map(|i| i + 1);
    let (Some(retires), Some(timeout)) = (retires, timeout) else {
        panic!("test edit did not apply");
    };
    assert!(
        out.contains(&format!(
            "agent.toml:{retires}:1: error: unknown field `retires`"
        )),
        "{out}"
    );
    assert!(out.contains("hint: did you mean `retries`?"), "{out}");
    assert!(
        out.contains(&format!(
            "agent.toml:{timeout}:11: error: invalid duration `300 potatoes`"
        )),
        "{out}"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_cnaas-agent"))
        .args(["check-config", "/nonexistent/agent.toml"])
        .output()
        .unwrap_or_else(|e| panic!("run: {e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("/nonexistent/agent.toml:1:1: error: cannot read the file")
    );
}
