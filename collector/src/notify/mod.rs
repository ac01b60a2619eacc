//! Notifications: who is told what (routing, [`route`]), in which words ([`render`]), and
//! delivery that is never lost ([`outbox`], [`dispatch`], [`channels`]).
//!
//! Flow: the engine records incident transitions while it correlates; before the commit,
//! [`outbox::enqueue`] routes each one and writes one outbox row per recipient in the same
//! transaction. The [`dispatch`] task renders a row once, hands it to its channel, retries with
//! exponential backoff, and reports a recipient that still fails after the retry budget to the
//! engine, which opens a `notification_failed` incident for SSC on another channel.
//!
//! Owns: routing rules, templates, the channel clients. Must not: decide incidents.

pub mod alarm;
pub mod channels;
pub mod dispatch;
pub mod outbox;
pub mod render;
pub mod route;

pub use route::{Audience, Recipient, Routing, TransitionKind};

/// An incident transition recorded during a transaction, to be routed before the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The incident.
    pub incident: i64,
    /// What happened.
    pub kind: TransitionKind,
    /// Text that goes with it (the local work asked for, an escalation comment).
    pub detail: Option<String>,
}
