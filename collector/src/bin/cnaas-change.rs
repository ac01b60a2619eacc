//! `cnaas-change`: announce, list, reschedule and cancel changes, and place change orders,
//! from a terminal, through the collector's API.
//!
//! The bearer token comes from `CNAAS_TOKEN` or `--token-file`, never from the command line.
//! Exit codes: 0 done, 1 the API said no (the reason is printed), 2 bad usage or no answer.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "cnaas-change",
    about = "Changes and change orders through the collector API"
)]
struct Cli {
    /// The collector's API (or CNAAS_API).
    #[arg(long, env = "CNAAS_API", default_value = "http://127.0.0.1:16980")]
    api: String,
    /// A file holding the bearer token (else the CNAAS_TOKEN environment variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the changes.
    List,
    /// Announces a change (a planned one needs 8 working days' notice).
    Announce {
        /// What.
        #[arg(long)]
        title: String,
        /// planned or emergency.
        #[arg(long, default_value = "planned")]
        kind: String,
        /// Window start (RFC 3339, e.g. 2026-12-08T18:00:00+01:00).
        #[arg(long)]
        start: DateTime<Utc>,
        /// Window end.
        #[arg(long)]
        end: DateTime<Utc>,
        /// An affected device (repeat for more).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// An affected site (all its devices; repeat for more).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// Details.
        #[arg(long, default_value = "")]
        description: String,
        /// Expected impact for users.
        #[arg(long, default_value = "")]
        impact: String,
    },
    /// Moves a change to a new window (the customers are told again).
    Reschedule {
        /// Change id.
        id: i64,
        /// New start.
        #[arg(long)]
        start: DateTime<Utc>,
        /// New end.
        #[arg(long)]
        end: DateTime<Utc>,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Cancels a change (the customers are told).
    Cancel {
        /// Change id.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Orders a change (a customer's technical contact).
    Order {
        /// What.
        #[arg(long)]
        title: String,
        /// Details: where, why.
        #[arg(long, default_value = "")]
        description: String,
        /// Wanted window start.
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Wanted window end.
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// Lists change orders.
    Orders,
}

fn token(cli: &Cli) -> anyhow::Result<String> {
    let raw = match &cli.token_file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the token file {}", p.display()))?,
        None => std::env::var("CNAAS_TOKEN")
            .context("give the token in CNAAS_TOKEN or a --token-file")?,
    };
    let t = raw.trim().to_owned();
    if t.is_empty() {
        bail!("the token is empty");
    }
    Ok(t)
}

/// The request a command makes: method, path, body.
fn request(cmd: &Command) -> (&'static str, String, Option<Value>) {
    match cmd {
        Command::List => ("GET", "/api/v1/changes".into(), None),
        Command::Orders => ("GET", "/api/v1/change-orders".into(), None),
        Command::Announce {
            title,
            kind,
            start,
            end,
            devices,
            sites,
            description,
            impact,
        } => (
            "POST",
            "/api/v1/changes".into(),
            Some(json!({
                "title": title, "kind": kind, "starts_at": start, "ends_at": end,
                "devices": devices, "sites": sites, "description": description, "impact": impact,
            })),
        ),
        Command::Reschedule {
            id,
            start,
            end,
            reason,
        } => (
            "POST",
            format!("/api/v1/changes/{id}/reschedule"),
            Some(json!({ "starts_at": start, "ends_at": end, "reason": reason })),
        ),
        Command::Cancel { id, reason } => (
            "POST",
            format!("/api/v1/changes/{id}/cancel"),
            Some(json!({ "reason": reason })),
        ),
        Command::Order {
            title,
            description,
            from,
            to,
        } => (
            "POST",
            "/api/v1/change-orders".into(),
            Some(
                json!({ "title": title, "description": description, "wanted_from": from, "wanted_to": to }),
            ),
        ),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let token = token(&cli)?;
    let (method, path, body) = request(&cli.command);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()?;
    let url = format!("{}{path}", cli.api.trim_end_matches('/'));
    let mut req = client
        .request(reqwest::Method::from_bytes(method.as_bytes())?, &url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("no answer from {}", cnaas_shared::config::redact_url(&url)))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let reason = value["error"].as_str().unwrap_or("no reason given");
    eprintln!("cnaas-change: refused ({status}): {reason}");
    if let Some(d) = value["earliest_start"].as_str() {
        eprintln!("cnaas-change: the earliest allowed start date is {d}");
    }
    Ok(ExitCode::from(1))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cnaas-change: {e:#}");
            ExitCode::from(2)
        }
    }
}
