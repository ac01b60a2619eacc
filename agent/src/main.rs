//! `cnaas-agent`: command line, logging, config, run (see `cnaas_shared::cli`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    cnaas_shared::cli::main(
        "cnaas-agent",
        "CNaaS site probe: polls switches over SNMP and publishes state changes over MQTT",
        cnaas_agent::config::AgentConfig::load,
        cnaas_agent::app::run,
    )
}
