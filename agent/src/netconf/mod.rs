//! NETCONF (RFC 6241) over SSH (RFC 6242) as a second source of interface state beside SNMP.
//!
//! - [`session`]: the polling session and the notification listener (on `rustnetconf`, which
//!   does the SSH, the hello, both framings with a bound on message size, and message-ids).
//! - [`interfaces`]: the `<get>` filter for interface state, its reply (ietf-interfaces and
//!   openconfig-interfaces) as IF-MIB status numbers, and what the plans make of it.

pub mod interfaces;
pub mod session;

pub use session::{Auth, HostKeys, NcError, Session, Target, listen};
