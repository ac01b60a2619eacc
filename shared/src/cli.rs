//! The command line both binaries share: `--config FILE`, `--log-json` and
//! `check-config FILE`, config loading with its diagnostics, the runtime, and the exit codes
//! (0 ok, 1 failure, 2 bad configuration or usage).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Diagnostics;
use crate::runtime;

/// Arguments of both binaries.
#[derive(Parser)]
struct Cli {
    /// Config file (TOML).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Collector: move an empty or damaged database aside (kept as `<file>.damaged-<time>`)
    /// and begin an empty one, instead of refusing to start. (The agent salvages a damaged
    /// spool by itself.)
    #[arg(long)]
    reinitialise: bool,
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

static REINITIALISE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the command line asked to begin anew on a damaged state file (`--reinitialise`).
pub fn reinitialise() -> bool {
    REINITIALISE.load(std::sync::atomic::Ordering::Relaxed)
}

/// How a binary loads its config.
pub type Loader<C> = fn(&Path) -> Result<(C, Diagnostics), Diagnostics>;

/// The whole `main` of a binary: parse the command line, check or load the config, set up
/// tracing and the runtime, run until SIGTERM/SIGINT, and map the outcome to an exit code.
pub fn main<C, Run, Fut>(
    name: &'static str,
    about: &'static str,
    load: Loader<C>,
    run: Run,
) -> ExitCode
where
    Run: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let matches = Cli::command()
        .name(name)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Some(Command::CheckConfig { file }) = cli.command {
        return check_config(&file, load);
    }
    let Some(path) = cli.config else {
        eprintln!("{name}: give --config FILE (or `check-config FILE`)");
        return ExitCode::from(2);
    };
    REINITIALISE.store(cli.reinitialise, std::sync::atomic::Ordering::Relaxed);
    runtime::init_tracing(cli.log_json, "info");
    let cfg = match load(&path) {
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
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let token = runtime::shutdown_on_signals();
        run(cfg, token).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config<C>(file: &Path, load: Loader<C>) -> ExitCode {
    match load(file) {
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
