//! The shipped Prometheus files are valid for a real promtool.

use anyhow::Result;
use cnaas_tests::{find_program, repo_root};

fn promtool(args: &[&str]) -> Result<(bool, String)> {
    let out = std::process::Command::new(find_program("promtool")?)
        .current_dir(repo_root().join("deploy/prometheus"))
        .args(args)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[test]
fn alert_rules_and_scrape_config_pass_promtool() -> Result<()> {
    let (ok, text) = promtool(&["check", "rules", "cnaas-alerts.yml"])?;
    assert!(ok, "{text}");
    // Every metric an alert names is one the binaries export.
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/cnaas-alerts.yml"))?;
    for name in [
        "cnaas_collector_notifications_total",
        "cnaas_collector_dead_letters_total",
        "cnaas_agent_device_up",
    ] {
        assert!(rules.contains(name), "{name}");
    }
    let (ok, text) = promtool(&["check", "config", "prometheus.yml"])?;
    assert!(ok, "{text}");
    Ok(())
}
