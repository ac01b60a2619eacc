//! Correlation: from an event to a [`Decision`] about incidents.
//!
//! This first rule set is deliberately small: a watched port going down, or a device becoming
//! unreachable, opens an incident; the matching recovery resolves it. Quarantine, flapping,
//! topology shadow and storm grouping build on the same inputs (issue #4).
//!
//! Owns: role resolution on the collector side and the rules. Must not: touch storage.

pub mod flapping;
pub mod port;
mod roles;
mod rules;
pub mod topology;

pub use roles::resolve_role;
pub use rules::decide;

use crate::store::Decision;
