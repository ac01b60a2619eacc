//! `cnaas-collector check-config FILE`: exit 0 on a good file, exit 2 with file:line:column
//! and a hint for each problem on a bad one.

use std::process::Command;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("collector.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write: {e}"));
    // The example refers to its tokens file by a relative path.
    let tokens = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/tokens.example.toml");
    std::fs::copy(tokens, dir.path().join("tokens.example.toml"))
        .unwrap_or_else(|e| panic!("copy: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_cnaas-collector"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("run: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).replace(&path.display().to_string(), "collector.toml");
    (out.status.code().unwrap_or(-1), text)
}

fn example() -> String {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/collector.example.toml"
    );
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn the_example_config_is_good() {
    let (code, out) = check(&example());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_misspelt_key_and_a_bad_value_are_both_reported() {
    let text = example()
        .replace("id = \"collector-1\"", "idd = \"collector-1\"")
        .replace("listen = \"127.0.0.1:16980\"", "listen = \"localhost\"");
    let (code, out) = check(&text);
    assert_eq!(code, 2, "{out}");
    let line = |p: &str| {
        text.lines()
            .position(|l| l.starts_with(p))
            .map(|i| i + 1)
            .unwrap_or(0)
    };
    assert!(
        out.contains(&format!(
            "collector.toml:{}:1: error: unknown field `idd`",
            line("idd")
        )),
        "{out}"
    );
    assert!(out.contains("did you mean `id`?"), "{out}");
    assert!(
        out.contains(&format!(
            "collector.toml:{}:10: error: invalid socket address",
            line("listen")
        )),
        "{out}"
    );
}

#[test]
fn a_broken_tokens_file_is_an_error() {
    let text = example().replace(
        "tokens_file = \"tokens.example.toml\"",
        "tokens_file = \"missing-tokens.toml\"",
    );
    let (code, out) = check(&text);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot read the tokens file"), "{out}");
}

#[test]
fn a_bad_duration_in_mqtt_keep_alive_has_a_position() {
    let text = example().replace(
        "url = \"mqtt://127.0.0.1:16883\"",
        "url = \"mqtt://127.0.0.1:16883\"\nkeep_alive = \"soon\"",
    );
    let (code, out) = check(&text);
    assert_eq!(code, 2, "{out}");
    let line = text
        .lines()
        .position(|l| l.starts_with("keep_alive"))
        .map(|i| i + 1)
        .unwrap_or(0);
    assert!(
        out.contains(&format!(
            "collector.toml:{line}:14: error: invalid duration `soon`"
        )),
        "{out}"
    );
}

#[test]
fn notify_queues_and_policy_are_checked() {
    let text = example()
        .replace(
            "    { channel = \"ssc-log\", to = \"ssc\" },\n",
            "    { channel = \"ssc-pager\", to = \"ssc\" },\n",
        )
        .replace(
            "language = \"nb\"                          #",
            "language = \"de\" #",
        )
        .replace("attempts = 8 ", "attempts = 0 ");
    let (code, out) = check(&text);
    assert_eq!(code, 2, "{out}");
    for want in [
        "error: `ssc` uses channel `ssc-pager`, which is not defined",
        "error: language `de`: use nb or en",
        "error: at least one attempt is needed",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // SSC on one channel only: it works, with a warning.
    let one = example().replace("    { channel = \"ssc-log\", to = \"ssc\" },\n", "");
    let (code, out) = check(&one);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SSC is reached on one channel only"), "{out}");
}

#[test]
fn a_missing_secret_file_is_an_error() {
    let text = example().replace(
        "# username = \"collector\"\n# password_file = \"/etc/cnaas/collector-mqtt.pass\"",
        "username = \"collector\"\npassword_file = \"no-such.pass\"",
    );
    assert!(text.contains("no-such.pass"));
    let (code, out) = check(&text);
    assert_eq!(code, 2, "{out}");
    let line = text
        .lines()
        .position(|l| l.starts_with("password_file"))
        .map_or(0, |i| i + 1);
    assert!(
        out.contains(&format!("collector.toml:{line}:")) && out.contains("no-such.pass"),
        "{out}"
    );
}
