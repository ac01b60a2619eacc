//! A real headless Chromium, driven over WebDriver: Debian's `chromedriver` on a free loopback
//! port (stopped by PID with the test) and `fantoccini` as the client.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::{Process, find_program, free_port, http_json, wait_until};

/// A running chromedriver.
pub struct Chromedriver {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The process.
    pub process: Process,
    dir: tempfile::TempDir,
}

impl Chromedriver {
    /// Starts chromedriver and waits until it is ready.
    pub fn start() -> Result<Chromedriver> {
        let program = find_program("chromedriver")?;
        find_program("chromium")?;
        let dir = tempfile::Builder::new()
            .prefix("cnaas-chromium-")
            .tempdir()?;
        let port = free_port();
        let mut cmd = Command::new(program);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1");
        let mut process =
            Process::spawn("chromedriver", cmd, &dir.path().join("chromedriver.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver", Duration::from_secs(20), || {
            process.check_alive().ok()?;
            let v = http_json(&format!("{url}/status")).ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .with_context(|| process.log())?;
        Ok(Chromedriver { url, process, dir })
    }

    /// Browsers a test left open (a failed assertion skips `close`) are children of
    /// chromedriver that outlive it: each is found by its profile folder, which is ours alone.
    fn stop_browsers(&self) {
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.dir.path())
            .status();
    }

    /// A new headless browser session with its own profile.
    pub async fn connect(&self) -> Result<fantoccini::Client> {
        let profile = self.dir.path().join(format!("profile-{}", free_port()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        let mut builder =
            fantoccini::ClientBuilder::rustls().context("cannot set up the WebDriver client")?;
        builder
            .capabilities(caps)
            .connect(&self.url)
            .await
            .with_context(|| format!("cannot start Chromium through chromedriver at {}", self.url))
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // chromedriver itself is stopped by `Process`'s drop, after this.
        self.stop_browsers();
    }
}
