//! Flap detection with Zino's algorithm and constants (DESIGN.md section 3).
//!
//! Per port a penalty `p`: the first transition sets `p = 2`; each later transition first
//! decays it, `p = p^(0.5^(dt / 300 s))`, then doubles it, `p = min(2p, 256)`. The port is
//! flapping while `p > 35`; it is stable again only when the decayed penalty has fallen below
//! 35, which the engine checks every 5 minutes. While a port flaps, its individual up/down
//! changes are not incidents: one `port_flapping` incident carries a running transition count.
//!
//! Time is a parameter: nothing here reads a clock.

use chrono::{DateTime, Utc};

/// Penalty above which a port is flapping.
pub const FLAP_THRESHOLD: f64 = 35.0;
/// The penalty never exceeds this.
pub const FLAP_CEILING: f64 = 256.0;
/// Penalty of the first transition.
pub const FLAP_START: f64 = 2.0;
/// Half-life of the decay exponent, in seconds.
pub const DECAY_SECONDS: f64 = 300.0;
/// How often flapping ports are checked for having calmed down.
pub const CHECK_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(300);

/// What a transition or a check did to the port's flapping state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlapChange {
    /// Nothing changed: not flapping before or after.
    None,
    /// The port started flapping with this transition.
    Started,
    /// The port was flapping and still is.
    Continues,
    /// The port is stable again.
    Stopped,
}

/// The flapping state of one port.
#[derive(Debug, Clone, PartialEq)]
pub struct Flap {
    penalty: f64,
    last: Option<DateTime<Utc>>,
    flapping: bool,
    /// Transitions seen while (and since just before) the port was flapping.
    pub transitions: u32,
}

impl Default for Flap {
    fn default() -> Self {
        Flap {
            penalty: 0.0,
            last: None,
            flapping: false,
            transitions: 0,
        }
    }
}

/// `p^(0.5^(dt/300))`: the penalty after `dt` seconds without a transition.
fn decayed(p: f64, dt_seconds: f64) -> f64 {
    if p <= 1.0 {
        return p;
    }
    p.powf(0.5f64.powf(dt_seconds.max(0.0) / DECAY_SECONDS))
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

impl Flap {
    /// The penalty as of `now` (decayed since the last transition).
    pub fn penalty_at(&self, now: DateTime<Utc>) -> f64 {
        match self.last {
            Some(last) => decayed(self.penalty, seconds(last, now)),
            None => 0.0,
        }
    }

    /// A port known to be flapping (after a restart): the penalty at the ceiling, so it calms
    /// down by the algorithm's own rule.
    pub fn restored_flapping(now: DateTime<Utc>, transitions: u32) -> Flap {
        Flap {
            penalty: FLAP_CEILING,
            last: Some(now),
            flapping: true,
            transitions,
        }
    }

    /// Whether the port is flapping.
    pub fn is_flapping(&self) -> bool {
        self.flapping
    }

    /// Records an up/down transition at `now`.
    pub fn on_transition(&mut self, now: DateTime<Utc>) -> FlapChange {
        self.penalty = match self.last {
            None => FLAP_START,
            Some(last) => (2.0 * decayed(self.penalty, seconds(last, now))).min(FLAP_CEILING),
        };
        self.last = Some(now);
        self.transitions = self.transitions.saturating_add(1);
        match (self.flapping, self.penalty > FLAP_THRESHOLD) {
            (false, true) => {
                self.flapping = true;
                FlapChange::Started
            }
            (true, _) => FlapChange::Continues,
            (false, false) => FlapChange::None,
        }
    }

    /// The periodic check: a flapping port whose decayed penalty is below the threshold is
    /// stable again (its transition count restarts).
    pub fn check(&mut self, now: DateTime<Utc>) -> FlapChange {
        if !self.flapping {
            return FlapChange::None;
        }
        if self.penalty_at(now) < FLAP_THRESHOLD {
            self.flapping = false;
            self.transitions = 0;
            return FlapChange::Stopped;
        }
        FlapChange::Continues
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    #[test]
    fn the_penalty_follows_zino() {
        let mut f = Flap::default();
        assert_eq!(f.on_transition(t(0)), FlapChange::None);
        assert_eq!(f.penalty_at(t(0)), 2.0);
        // Immediately again: no decay, doubled.
        f.on_transition(t(0));
        assert_eq!(f.penalty_at(t(0)), 4.0);
        // 300 s later the exponent halves: 4^0.5 = 2, then doubled to 4.
        f.on_transition(t(300));
        assert!((f.penalty_at(t(300)) - 4.0).abs() < 1e-9);
        // Decay alone, 600 s: 4^(0.25) = sqrt(2).
        assert!((f.penalty_at(t(900)) - 2f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn ten_flaps_in_a_minute_start_flapping_once() {
        let mut f = Flap::default();
        let changes: Vec<FlapChange> = (0..20).map(|n| f.on_transition(t(n * 3))).collect();
        let started = changes
            .iter()
            .filter(|c| **c == FlapChange::Started)
            .count();
        assert_eq!(started, 1, "{changes:?}");
        // 2, 4, 8, 16, 32 (all <= 35), then ~64: the sixth transition starts it.
        assert_eq!(
            changes.iter().position(|c| *c == FlapChange::Started),
            Some(5)
        );
        assert!(f.is_flapping());
        assert_eq!(f.transitions, 20);
        assert!(f.penalty_at(t(60)) <= FLAP_CEILING);
    }

    #[test]
    fn slow_changes_never_flap() {
        let mut f = Flap::default();
        // One transition every 10 minutes: the penalty stays tiny.
        for n in 0..50 {
            assert_eq!(f.on_transition(t(n * 600)), FlapChange::None);
        }
        assert!(f.penalty_at(t(30_000)) < 5.0);
    }

    #[test]
    fn stable_again_only_when_the_decayed_penalty_is_below_the_threshold() {
        let mut f = Flap::default();
        for n in 0..12 {
            f.on_transition(t(n));
        }
        assert!(f.is_flapping());
        // A minute later it still flaps.
        assert_eq!(
            f.check(t(11) + chrono::TimeDelta::seconds(60)),
            FlapChange::Continues
        );
        // 256^(0.5^k) < 35 needs 0.5^k < ln 35 / ln 256 = 0.641, i.e. k > 0.64: ~193 s. The
        // five-minute check calls it stable.
        assert_eq!(f.check(t(11) + CHECK_EVERY), FlapChange::Stopped);
        assert!(!f.is_flapping());
        assert_eq!(f.transitions, 0);
        assert_eq!(f.check(t(11) + CHECK_EVERY * 2), FlapChange::None);
    }

    proptest! {
        /// The penalty stays within (0, 256], flapping always means it went above 35, and a
        /// check never declares stable a port whose penalty is still above 35.
        #[test]
        fn invariants(gaps in proptest::collection::vec(0i64..900, 1..80)) {
            let mut f = Flap::default();
            let mut now = 0;
            for g in gaps {
                now += g;
                let change = f.on_transition(t(now));
                let p = f.penalty_at(t(now));
                prop_assert!(p > 0.0 && p <= FLAP_CEILING);
                if change == FlapChange::Started {
                    prop_assert!(p > FLAP_THRESHOLD);
                }
                let later = t(now) + CHECK_EVERY;
                let before = f.penalty_at(later);
                if f.check(later) == FlapChange::Stopped {
                    prop_assert!(before < FLAP_THRESHOLD);
                }
            }
        }
    }
}
