//! The life of one watched port's link alarm: quarantine (hold time) and flapping together.
//!
//! - A `link_down` starts a *pending* alarm. If the link comes back within the hold time
//!   (default 60 s) the alarm was *transient*: recorded, never an incident. If it is still down
//!   when the hold time has passed, it becomes *active*: an incident opens. Link up clears it.
//! - Every up/down transition also feeds the port's [`Flap`] penalty. When the port starts
//!   flapping, one `port_flapping` incident opens (and a pending or active link alarm is folded
//!   into it); while it flaps, single up/downs are only counted. When the flapping stops, a port
//!   that is still down starts a fresh pending alarm.
//!
//! Time is a parameter ([`PortAlarm::tick`] is driven by the engine), so tests never sleep.

use chrono::{DateTime, TimeDelta, Utc};

use super::flapping::{CHECK_EVERY, Flap, FlapChange};

/// What the engine should do after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The down is in quarantine; nothing to tell anyone yet.
    Pending,
    /// The port came back within the hold time: record it as transient, nothing else.
    Transient {
        /// How long it was down.
        down_for: TimeDelta,
    },
    /// Still down after the hold time: open (or join) the `link_down` incident.
    Activate,
    /// The link came back: resolve the `link_down` incident.
    Clear,
    /// The port started flapping: open the `port_flapping` incident (an active `link_down`
    /// incident is resolved into it).
    FlapStarted {
        /// Transitions so far.
        transitions: u32,
    },
    /// Another transition while flapping: update the running count.
    FlapCount {
        /// Transitions so far.
        transitions: u32,
    },
    /// The port is stable again: resolve the `port_flapping` incident.
    FlapEnded,
}

/// State of one port.
#[derive(Debug, Clone, Default)]
pub struct PortAlarm {
    flap: Flap,
    down_since: Option<DateTime<Utc>>,
    active: bool,
    next_flap_check: Option<DateTime<Utc>>,
}

impl PortAlarm {
    /// A port whose `link_down` alarm was active before a restart.
    pub fn restored_active(now: DateTime<Utc>) -> PortAlarm {
        PortAlarm {
            down_since: Some(now),
            active: true,
            ..PortAlarm::default()
        }
    }

    /// A port that was down and in quarantine since `since` before a restart.
    pub fn restored_pending(since: DateTime<Utc>) -> PortAlarm {
        PortAlarm {
            down_since: Some(since),
            ..PortAlarm::default()
        }
    }

    /// A port that was flapping before a restart, with its transition count so far.
    pub fn restored_flapping(now: DateTime<Utc>, transitions: u32) -> PortAlarm {
        PortAlarm {
            flap: Flap::restored_flapping(now, transitions),
            next_flap_check: Some(now + CHECK_EVERY),
            ..PortAlarm::default()
        }
    }

    /// Whether the `link_down` alarm is active (an incident is open for it).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Whether the port is down as far as the alarm knows (pending, active or flapping).
    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    /// Whether the port is flapping.
    pub fn is_flapping(&self) -> bool {
        self.flap.is_flapping()
    }

    fn transition(&mut self, now: DateTime<Utc>, out: &mut Vec<Outcome>) -> bool {
        match self.flap.on_transition(now) {
            FlapChange::Started => {
                self.next_flap_check = Some(now + CHECK_EVERY);
                self.active = false;
                out.push(Outcome::FlapStarted {
                    transitions: self.flap.transitions,
                });
                true
            }
            FlapChange::Continues => {
                out.push(Outcome::FlapCount {
                    transitions: self.flap.transitions,
                });
                true
            }
            FlapChange::None | FlapChange::Stopped => false,
        }
    }

    /// The link went down at `now`.
    pub fn on_down(&mut self, now: DateTime<Utc>) -> Vec<Outcome> {
        let mut out = Vec::new();
        if self.down_since.is_some() {
            // Already down (a repeated report): not a transition.
            return out;
        }
        self.down_since = Some(now);
        if !self.transition(now, &mut out) {
            out.push(Outcome::Pending);
        }
        out
    }

    /// The link came up at `now` (or the port was shut on purpose).
    pub fn on_up(&mut self, now: DateTime<Utc>) -> Vec<Outcome> {
        let mut out = Vec::new();
        let Some(since) = self.down_since.take() else {
            return out;
        };
        let was_active = std::mem::take(&mut self.active);
        if self.transition(now, &mut out) {
            return out;
        }
        out.push(if was_active {
            Outcome::Clear
        } else {
            Outcome::Transient {
                down_for: now - since,
            }
        });
        out
    }

    /// Timers: promote a pending alarm after `hold`, and check a flapping port every five
    /// minutes.
    pub fn tick(&mut self, now: DateTime<Utc>, hold: TimeDelta) -> Vec<Outcome> {
        let mut out = Vec::new();
        if self.flap.is_flapping() {
            if self.next_flap_check.is_some_and(|t| now >= t) {
                self.next_flap_check = Some(now + CHECK_EVERY);
                if self.flap.check(now) == FlapChange::Stopped {
                    self.next_flap_check = None;
                    out.push(Outcome::FlapEnded);
                    // Still down: quarantine starts over from now.
                    if self.down_since.is_some() {
                        self.down_since = Some(now);
                        out.push(Outcome::Pending);
                    }
                }
            }
            return out;
        }
        if !self.active
            && let Some(since) = self.down_since
            && now - since >= hold
        {
            self.active = true;
            out.push(Outcome::Activate);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    const HOLD: TimeDelta = TimeDelta::seconds(60);

    #[test]
    fn a_short_outage_is_transient() {
        let mut p = PortAlarm::default();
        assert_eq!(p.on_down(t(0)), [Outcome::Pending]);
        assert!(p.tick(t(30), HOLD).is_empty());
        assert_eq!(
            p.on_up(t(40)),
            [Outcome::Transient {
                down_for: TimeDelta::seconds(40)
            }]
        );
        assert!(p.tick(t(100), HOLD).is_empty());
    }

    #[test]
    fn a_long_outage_activates_after_the_hold_time_and_clears() {
        let mut p = PortAlarm::default();
        p.on_down(t(0));
        assert!(p.tick(t(59), HOLD).is_empty());
        assert_eq!(p.tick(t(60), HOLD), [Outcome::Activate]);
        assert!(p.tick(t(61), HOLD).is_empty(), "activates once");
        assert!(p.is_active());
        assert!(
            p.on_down(t(70)).is_empty(),
            "a repeated down is not a transition"
        );
        assert_eq!(p.on_up(t(300)), [Outcome::Clear]);
        assert!(!p.is_active());
    }

    #[test]
    fn a_zero_hold_time_activates_at_the_first_tick() {
        let mut p = PortAlarm::default();
        p.on_down(t(0));
        assert_eq!(p.tick(t(0), TimeDelta::zero()), [Outcome::Activate]);
    }

    #[test]
    fn ten_flaps_in_a_minute_are_one_flapping_incident() {
        let mut p = PortAlarm::default();
        let mut outcomes = Vec::new();
        for n in 0..10 {
            outcomes.extend(p.on_down(t(n * 6)));
            outcomes.extend(p.tick(t(n * 6 + 1), HOLD));
            outcomes.extend(p.on_up(t(n * 6 + 3)));
            outcomes.extend(p.tick(t(n * 6 + 4), HOLD));
        }
        let started = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::FlapStarted { .. }))
            .count();
        assert_eq!(started, 1, "{outcomes:?}");
        assert!(
            !outcomes.contains(&Outcome::Activate),
            "no link_down incident while it flaps"
        );
        let last = outcomes.iter().rev().find_map(|o| match o {
            Outcome::FlapCount { transitions } => Some(*transitions),
            _ => None,
        });
        assert_eq!(last, Some(20));
        // Quiet for a while: stable again at a five-minute check.
        let ended: Vec<_> = (1..=3)
            .flat_map(|k| p.tick(t(57) + CHECK_EVERY * k, HOLD))
            .collect();
        assert_eq!(ended, [Outcome::FlapEnded]);
        assert!(!p.is_flapping());
    }

    #[test]
    fn a_port_still_down_when_flapping_ends_starts_a_fresh_quarantine() {
        let mut p = PortAlarm::default();
        for n in 0..6 {
            p.on_down(t(n * 2));
            p.on_up(t(n * 2 + 1));
        }
        p.on_down(t(20));
        assert!(p.is_flapping());
        let end = t(20) + CHECK_EVERY * 2;
        assert_eq!(p.tick(end, HOLD), [Outcome::FlapEnded, Outcome::Pending]);
        assert_eq!(p.tick(end + HOLD, HOLD), [Outcome::Activate]);
    }

    proptest! {
        /// Any sequence of downs and ups: an active alarm only ever exists while the port is
        /// down and not flapping, and every Activate is later matched by at most one Clear.
        #[test]
        fn consistent_with_the_last_event(steps in proptest::collection::vec((any::<bool>(), 0i64..120), 1..60)) {
            let mut p = PortAlarm::default();
            let mut now = 0;
            let mut open = 0i32;
            for (down, gap) in steps {
                now += gap;
                let out = if down { p.on_down(t(now)) } else { p.on_up(t(now)) };
                let out2 = p.tick(t(now) + TimeDelta::seconds(gap), HOLD);
                for o in out.iter().chain(out2.iter()) {
                    match o {
                        Outcome::Activate => open += 1,
                        Outcome::Clear => open -= 1,
                        Outcome::FlapStarted { .. } if open == 1 => open = 0,
                        _ => {}
                    }
                    prop_assert!((0..=1).contains(&open), "{o:?} made {open} open alarms");
                }
                prop_assert_eq!(p.is_active(), open == 1);
                if p.is_active() {
                    prop_assert!(down && !p.is_flapping());
                }
            }
        }
    }
}
