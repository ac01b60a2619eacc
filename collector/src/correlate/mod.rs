//! Correlation: from an event to a [`Decision`] about incidents.
//!
//! - [`Correlator`]: the engine (grouping, shadow, device absorbs its ports, re-open);
//! - [`port`]: one watched port's alarm, quarantine plus [`flapping`] (Zino);
//! - [`topology`]: which down device shadows another;
//! - [`resolve_role`]: the role of a port as the collector sees it.
//!
//! Owns: role resolution on the collector side and the rules. Must not: touch storage.

mod correlator;
pub mod flapping;
pub mod port;
mod roles;
pub mod topology;

pub use correlator::{
    Action, CommandError, Correlator, MAX_SKEW, Maintenance, NeighbourChange, NoMaintenance, Rules,
    event_time,
};
pub use roles::resolve_role;
