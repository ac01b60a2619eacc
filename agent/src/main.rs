//! `cnaas-agent`: command line, logging, config, run.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cnaas_agent::config::AgentConfig;
use cnaas_shared::runtime;

/// CNaaS site probe: polls switches over SNMP and publishes state changes over MQTT.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file: print every problem with line and column; exit 2 if any.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = cli.command {
        return check_config(&file);
    }
    let Some(path) = cli.config else {
        eprintln!("cnaas-agent: give --config FILE (or `check-config FILE`)");
        return ExitCode::from(2);
    };
    runtime::init_tracing(cli.log_json, "info");
    let cfg = match AgentConfig::load(&path) {
        Ok((cfg, warnings)) => {
            for w in warnings.warnings() {
                tracing::warn!("{w}");
            }
            cfg
        }
        Err(diags) => {
            eprintln!("{diags}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cnaas-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let token = runtime::shutdown_on_signals();
        cnaas_agent::app::run(cfg, token).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cnaas-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match AgentConfig::load(file) {
        Ok((_, warnings)) => {
            for w in &warnings.0 {
                println!("{w}");
            }
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(diags) => {
            println!("{diags}");
            ExitCode::from(2)
        }
    }
}
