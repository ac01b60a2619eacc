//! `cnaas-agent`: the site probe. It polls the switches of one site over SNMP, turns state
//! changes into events, publishes them over MQTT, and exports interface and health metrics.
//!
//! Layout:
//! - [`config`]: the TOML file, checked with line and column diagnostics.
//! - [`snmp`]: SNMP client with timeout, retry and multi-column GETBULK walks.
//! - [`plans`]: one task per device running the link and label plans.
//! - [`state`]: last known state per device and the diff into changes.
//! - [`spool`]: the on-disk spool every event passes through.
//! - [`publish`]: store and forward over MQTT (QoS 1), retained status and last will.
//! - [`metrics`]: `if_mib`-compatible interface metrics and `cnaas_agent_*` health.
//! - [`app`]: wires them together and shuts them down in order.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod metrics;
pub mod netconf;
pub mod plans;
pub mod publish;
pub mod snmp;
pub mod source;
pub mod spool;
pub mod state;
pub mod traps;
