//! NETCONF (RFC 6241) over SSH (RFC 6242): issue #8, being built.
//!
//! - [`framing`]: the two message framings of RFC 6242 (end-of-message for base:1.0, chunked
//!   for base:1.1) as a sans-I/O decoder with a size limit, so a broken or hostile server
//!   cannot make the agent allocate without bound.
//! - [`message`]: hello (and the framing it decides), `<rpc>` with a message-id, and the parts
//!   of `<rpc-reply>`/`<notification>` the agent needs.
//! - [`interfaces`]: the `<get>` filter for interface state and its reply (ietf-interfaces
//!   and openconfig-interfaces) as IF-MIB status numbers, ifIndex, last-change and counters.

pub mod framing;
pub mod interfaces;
pub mod message;
