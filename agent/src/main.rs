//! `cnaas-agent`: command line, logging, config, run (see `cnaas_shared::cli`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

// The pollers allocate and free many small buffers (varbinds, OIDs) and a socket's two 64 KiB
// buffers per poll; glibc's malloc spent a third of the agent's CPU on that at 2,000 devices
// (perf, agent-scale), mimalloc a fraction of it. Built with `no_thp`: with transparent huge
// pages mimalloc's eagerly committed arenas were backed by 2 MiB pages, a third of the agent's
// RSS at 2,000 devices (97 -> 70 MiB without them, the CPU the same).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cnaas_shared::cli::main(
        "cnaas-agent",
        "CNaaS site probe: polls switches over SNMP and publishes state changes over MQTT",
        cnaas_agent::config::AgentConfig::load,
        cnaas_agent::app::run,
    )
}
