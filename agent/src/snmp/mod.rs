//! SNMP on top of `snmp2`: owned values, OID helpers, and a client with the timeout, retry
//! and multi-column GETBULK table walk that `snmp2` leaves to its users.
//!
//! Owns: one UDP session per device, at most one request in flight on it. Must not: know
//! about plans, state or events.

mod client;
mod credentials;
pub mod oid;
mod value;

pub use client::{ClientStats, SnmpClient, SnmpError, Target, Walk};
pub use credentials::{AuthProto, Credentials, PrivProto, V3};
pub use value::SnmpValue;
