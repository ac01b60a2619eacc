//! Common ground of `cnaas-agent` and `cnaas-collector`.
//!
//! - [`event`]: the wire model (`"v": 1` events) with a strict decoder.
//! - [`topics`]: MQTT topic names, built and parsed in one place.
//! - [`role`]: port roles and the ifAlias patterns that assign them.
//! - [`config`]: TOML loading with diagnostics (file, line, column, hint), durations, secrets.
//! - [`mqtt`]: the `[mqtt]` section and the client options built from it.
//! - [`cli`]: the command line and `main` of both binaries.
//! - [`cnaas_nms`]: the CNaaS-NMS REST API client (inventory and device list).
//! - [`runtime`]: tracing set-up, the shutdown signal, and the small HTTP server for
//!   `/metrics` and `/healthz`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod cnaas_nms;
pub mod config;
pub mod event;
pub mod mqtt;
pub mod role;
pub mod runtime;
pub mod topics;

pub use event::{
    Bundle, BundleRef, DecodeError, Event, EventKind, Neighbour, Neighbours, Source, StateSync,
};
pub use role::PortRole;
