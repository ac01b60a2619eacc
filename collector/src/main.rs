//! `cnaas-collector`: command line, logging, config, run (see `cnaas_shared::cli`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    cnaas_shared::cli::main(
        "cnaas-collector",
        "CNaaS collector: ingests agent events, correlates them into incidents, stores and serves them",
        cnaas_collector::config::CollectorConfig::load,
        cnaas_collector::app::run,
    )
}
