//! `cnaas-collector`: ingests the agents' events, correlates them into incidents, stores them,
//! and serves them over an HTTP API.
//!
//! Layout (data flows top to bottom):
//! - [`ingest`]: MQTT subscription, validation, dead letters.
//! - [`engine`]: the single writer: correlate, store in one transaction, then acknowledge.
//! - [`correlate`]: port roles and the rules that turn events into incident decisions.
//! - [`store`]: the `Store` trait and its SQLite implementation with migrations.
//! - [`notify`]: routing, templates, the outbox dispatcher and the delivery channels.
//! - [`api`]: `/api/v1` JSON endpoints.
//! - [`web`]: the operator dashboard under `/ui/` (server-rendered, live update).
//! - [`config`], [`metrics`], [`app`]: configuration, `cnaas_collector_*` metrics, wiring.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod calendar;
pub mod changes;
pub mod cnaas_nms;
pub mod config;
pub mod correlate;
pub mod customers;
pub mod engine;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod store;
pub mod web;
