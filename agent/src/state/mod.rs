//! The last known state of one device and the diff that turns a new poll into changes: one
//! change per real transition, never one per poll.
//!
//! Owns: port link state, sysUpTime, reachability. Must not: do I/O or build wire events
//! (the plans do that, adding labels and roles).

use std::collections::BTreeMap;

use cnaas_shared::EventKind;

/// IF-MIB ifAdminStatus `down`.
pub const ADMIN_DOWN: i64 = 2;
/// IF-MIB ifAdminStatus / ifOperStatus `up`.
pub const STATUS_UP: i64 = 1;

/// One port as the link plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortLink {
    /// ifAdminStatus (1 up, 2 down, 3 testing).
    pub admin: i64,
    /// ifOperStatus (1 up, 2 down, 3 testing, 4 unknown, 5 dormant, 6 notPresent,
    /// 7 lowerLayerDown).
    pub oper: i64,
    /// ifLastChange (sysUpTime ticks at the last oper change), if the device gave it.
    pub last_change: Option<u32>,
}

/// One link poll's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSnapshot {
    /// sysUpTime in ticks, if the device gave it.
    pub uptime: Option<u32>,
    /// ifNumber, if the device gave it: a change means interfaces came or went.
    pub if_number: Option<i64>,
    /// Ports by ifIndex.
    pub ports: BTreeMap<u32, PortLink>,
}

/// A change found by the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A port changed.
    Port {
        /// ifIndex.
        if_index: u32,
        /// What changed.
        kind: EventKind,
        /// True when the state is reported at first sight, not as a transition.
        initial: bool,
        /// True when the port went down and up again between two polls (seen only
        /// through ifLastChange).
        between_polls: bool,
    },
    /// The device stopped or started answering.
    Reachability {
        /// `DeviceUnreachable` or `DeviceReachable`.
        kind: EventKind,
        /// Consecutive failed polls when it was declared unreachable.
        failures: u32,
    },
    /// The access VLAN (PVID) of a port changed.
    Vlan {
        /// ifIndex.
        if_index: u32,
        /// PVID before.
        old: u32,
        /// PVID now.
        new: u32,
    },
    /// sysUpTime went backwards.
    Rebooted {
        /// sysUpTime before.
        old_uptime: u32,
        /// sysUpTime now.
        new_uptime: u32,
    },
    /// The state of every port, for the collector to clear what it contradicts: after the
    /// agent starts, after it reconnects to the broker, and when the device answers again.
    Sync(cnaas_shared::StateSync),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    Down,
    Disabled,
    Unknown,
}

fn effective(p: &PortLink, prev: Option<Link>) -> Link {
    if p.admin == ADMIN_DOWN {
        return Link::Disabled;
    }
    match p.oper {
        1 => Link::Up,
        // down, notPresent, lowerLayerDown
        2 | 6 | 7 => Link::Down,
        // testing, unknown, dormant: no opinion; keep what we had
        _ => prev
            .filter(|l| *l != Link::Disabled)
            .unwrap_or(Link::Unknown),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Unknown,
    Up,
    Down,
}

/// Everything the agent remembers about one device between polls.
#[derive(Debug, Clone)]
pub struct DeviceState {
    ports: BTreeMap<u32, (PortLink, Link)>,
    vlans: Option<BTreeMap<u32, u32>>,
    uptime: Option<u32>,
    failures: u32,
    reach: Reach,
    /// The next successful link poll also reports every port's state (a fresh start knows
    /// nothing of what the collector holds).
    sync_due: bool,
}

impl Default for DeviceState {
    fn default() -> Self {
        DeviceState {
            ports: BTreeMap::new(),
            vlans: None,
            uptime: None,
            failures: 0,
            reach: Reach::Unknown,
            sync_due: true,
        }
    }
}

/// sysUpTime is a 32-bit tick counter that wraps after about 497 days. A drop from the last
/// 1/64 of its range to the first is a wrap, not a reboot.
fn is_reboot(old: u32, new: u32) -> bool {
    const EDGE: u32 = u32::MAX / 64;
    new < old && !(old > u32::MAX - EDGE && new < EDGE)
}

impl DeviceState {
    /// Whether the device is currently considered reachable (false until the first answer).
    pub fn is_reachable(&self) -> bool {
        self.reach == Reach::Up
    }

    /// Whether ifIndex is known from an earlier poll.
    pub fn knows_port(&self, if_index: u32) -> bool {
        self.ports.contains_key(&if_index)
    }

    /// Asks for a `state_sync` with the next successful link poll.
    pub fn request_sync(&mut self) {
        self.sync_due = true;
    }

    /// The device answered (a poll or a reachability probe): reachable again if it was down.
    pub fn on_answer(&mut self) -> Option<Change> {
        let change = (self.reach == Reach::Down).then_some(Change::Reachability {
            kind: EventKind::DeviceReachable,
            failures: self.failures,
        });
        if change.is_some() {
            // Ports may have come back while it did not answer: the next poll tells all.
            self.sync_due = true;
        }
        self.reach = Reach::Up;
        self.failures = 0;
        change
    }

    /// Applies a VLAN poll (PVID per ifIndex). The first one only sets the baseline; a port
    /// that appears or vanishes is not a VLAN change.
    pub fn on_vlans(&mut self, pvids: BTreeMap<u32, u32>) -> Vec<Change> {
        let mut out = Vec::new();
        if let Some(old) = &self.vlans {
            for (&if_index, &new) in &pvids {
                if let Some(&before) = old.get(&if_index)
                    && before != new
                {
                    out.push(Change::Vlan {
                        if_index,
                        old: before,
                        new,
                    });
                }
            }
        }
        self.vlans = Some(pvids);
        out
    }

    /// Applies a successful link poll and returns the changes, device-level ones first.
    pub fn on_poll_ok(&mut self, snap: &LinkSnapshot) -> Vec<Change> {
        let mut out: Vec<Change> = self.on_answer().into_iter().collect();
        let mut rebooted = false;
        if let (Some(old), Some(new)) = (self.uptime, snap.uptime)
            && is_reboot(old, new)
        {
            rebooted = true;
            out.push(Change::Rebooted {
                old_uptime: old,
                new_uptime: new,
            });
        }
        if snap.uptime.is_some() {
            self.uptime = snap.uptime;
        }
        let mut next = BTreeMap::new();
        for (&if_index, cur) in &snap.ports {
            let cur_link = self.diff_port(if_index, cur, rebooted, &mut out);
            next.insert(if_index, (*cur, cur_link));
        }
        self.ports = next;
        if std::mem::take(&mut self.sync_due) {
            out.push(Change::Sync(self.snapshot()));
        }
        out
    }

    /// Every known port as up, down or disabled (ports of no opinion are left out).
    fn snapshot(&self) -> cnaas_shared::StateSync {
        let mut s = cnaas_shared::StateSync::default();
        for (&i, (_, link)) in &self.ports {
            match link {
                Link::Up => s.up.push(i),
                Link::Down => s.down.push(i),
                Link::Disabled => s.disabled.push(i),
                Link::Unknown => {}
            }
        }
        s
    }

    /// Applies a fresh reading of one port (a trap confirmation) and returns its changes.
    pub fn on_port_update(&mut self, if_index: u32, cur: &PortLink) -> Vec<Change> {
        let mut out = Vec::new();
        let cur_link = self.diff_port(if_index, cur, false, &mut out);
        self.ports.insert(if_index, (*cur, cur_link));
        out
    }

    /// The changes of one port against its last known state; returns its new link opinion.
    fn diff_port(
        &self,
        if_index: u32,
        cur: &PortLink,
        rebooted: bool,
        out: &mut Vec<Change>,
    ) -> Link {
        let prev = self.ports.get(&if_index);
        let cur_link = effective(cur, prev.map(|(_, l)| *l));
        let port = |kind, initial, between_polls| Change::Port {
            if_index,
            kind,
            initial,
            between_polls,
        };
        let Some((old, old_link)) = prev else {
            if cur_link == Link::Down {
                out.push(port(EventKind::LinkDown, true, false));
            }
            return cur_link;
        };
        if old.admin != ADMIN_DOWN && cur.admin == ADMIN_DOWN {
            out.push(port(EventKind::AdminDown, false, false));
        } else if old.admin == ADMIN_DOWN && cur.admin == STATUS_UP {
            out.push(port(EventKind::AdminUp, false, false));
        }
        match (*old_link, cur_link) {
            (Link::Up | Link::Unknown | Link::Disabled, Link::Down) => {
                out.push(port(EventKind::LinkDown, false, false));
            }
            (Link::Down, Link::Up) => out.push(port(EventKind::LinkUp, false, false)),
            (Link::Up, Link::Up)
                if !rebooted
                    && old.last_change.is_some()
                    && cur.last_change.is_some()
                    && old.last_change != cur.last_change =>
            {
                out.push(port(EventKind::LinkDown, false, true));
                out.push(port(EventKind::LinkUp, false, true));
            }
            _ => {}
        }
        cur_link
    }

    /// Records a failed poll; after `unreachable_after` failures in a row the device is
    /// declared unreachable (once).
    pub fn on_poll_failed(&mut self, unreachable_after: u32) -> Vec<Change> {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= unreachable_after.max(1) && self.reach != Reach::Down {
            self.reach = Reach::Down;
            return vec![Change::Reachability {
                kind: EventKind::DeviceUnreachable,
                failures: self.failures,
            }];
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snap(uptime: u32, ports: &[(u32, i64, i64, u32)]) -> LinkSnapshot {
        LinkSnapshot {
            uptime: Some(uptime),
            if_number: None,
            ports: ports
                .iter()
                .map(|&(i, admin, oper, lc)| {
                    (
                        i,
                        PortLink {
                            admin,
                            oper,
                            last_change: Some(lc),
                        },
                    )
                })
                .collect(),
        }
    }

    fn kinds(changes: &[Change]) -> Vec<(u32, EventKind)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Port { if_index, kind, .. } => Some((*if_index, *kind)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_poll_reports_only_ports_that_are_down_and_enabled() {
        let mut s = DeviceState::default();
        let c = s.on_poll_ok(&snap(
            100,
            &[(1, 1, 1, 0), (2, 1, 2, 0), (3, 2, 2, 0), (4, 1, 7, 0)],
        ));
        assert_eq!(
            kinds(&c),
            vec![(2, EventKind::LinkDown), (4, EventKind::LinkDown)]
        );
        assert!(matches!(c[0], Change::Port { initial: true, .. }));
        assert!(s.is_reachable());
    }

    fn syncs(changes: &[Change]) -> Vec<cnaas_shared::StateSync> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Sync(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_full_state_is_reported_after_a_start_a_reconnect_and_a_return() {
        let mut s = DeviceState::default();
        let ports = [(1, 1, 1, 0), (2, 1, 2, 0), (3, 2, 2, 0), (4, 1, 4, 0)];
        let first = syncs(&s.on_poll_ok(&snap(100, &ports)));
        assert_eq!(
            first,
            [cnaas_shared::StateSync {
                up: vec![1],
                down: vec![2],
                disabled: vec![3],
            }],
            "a port of no opinion (unknown) is left out"
        );
        assert!(syncs(&s.on_poll_ok(&snap(200, &ports))).is_empty());
        s.request_sync();
        assert_eq!(syncs(&s.on_poll_ok(&snap(300, &ports))).len(), 1);
        // Unreachable, then back: the first poll after the return tells all.
        s.on_poll_failed(1);
        let back = s.on_poll_ok(&snap(400, &[(1, 1, 1, 0), (2, 1, 1, 350)]));
        assert!(matches!(back[0], Change::Reachability { .. }));
        assert_eq!(
            syncs(&back),
            [cnaas_shared::StateSync {
                up: vec![1, 2],
                down: vec![],
                disabled: vec![],
            }]
        );
    }

    #[test]
    fn one_change_per_transition_not_per_poll() {
        let mut s = DeviceState::default();
        s.on_poll_ok(&snap(100, &[(1, 1, 1, 0)]));
        assert_eq!(
            kinds(&s.on_poll_ok(&snap(200, &[(1, 1, 2, 150)]))),
            vec![(1, EventKind::LinkDown)]
        );
        assert!(s.on_poll_ok(&snap(300, &[(1, 1, 2, 150)])).is_empty());
        assert_eq!(
            kinds(&s.on_poll_ok(&snap(400, &[(1, 1, 1, 350)]))),
            vec![(1, EventKind::LinkUp)]
        );
        assert!(s.on_poll_ok(&snap(500, &[(1, 1, 1, 350)])).is_empty());
    }

    #[test]
    fn table_of_transitions() {
        // (admin, oper) before -> after, expected kinds
        type Row = ((i64, i64), (i64, i64), &'static [EventKind]);
        let table: &[Row] = &[
            ((1, 1), (1, 2), &[EventKind::LinkDown]),
            ((1, 2), (1, 1), &[EventKind::LinkUp]),
            ((1, 1), (2, 2), &[EventKind::AdminDown]),
            ((2, 2), (1, 1), &[EventKind::AdminUp]),
            ((2, 2), (1, 2), &[EventKind::AdminUp, EventKind::LinkDown]),
            ((1, 2), (2, 2), &[EventKind::AdminDown]),
            ((1, 1), (1, 5), &[]),
            ((1, 2), (1, 4), &[]),
            ((1, 1), (1, 6), &[EventKind::LinkDown]),
            ((1, 1), (1, 1), &[]),
        ];
        for &(before, after, want) in table {
            let mut s = DeviceState::default();
            s.on_poll_ok(&snap(100, &[(9, before.0, before.1, 10)]));
            let got: Vec<EventKind> =
                kinds(&s.on_poll_ok(&snap(200, &[(9, after.0, after.1, 10)])))
                    .into_iter()
                    .map(|(_, k)| k)
                    .collect();
            assert_eq!(got, want, "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn unknown_oper_keeps_the_last_opinion() {
        let mut s = DeviceState::default();
        s.on_poll_ok(&snap(100, &[(1, 1, 2, 0)]));
        assert!(s.on_poll_ok(&snap(200, &[(1, 1, 4, 0)])).is_empty());
        assert_eq!(
            kinds(&s.on_poll_ok(&snap(300, &[(1, 1, 1, 0)]))),
            vec![(1, EventKind::LinkUp)]
        );
    }

    #[test]
    fn a_bounce_between_polls_is_seen_through_last_change() {
        let mut s = DeviceState::default();
        s.on_poll_ok(&snap(100, &[(1, 1, 1, 50)]));
        let c = s.on_poll_ok(&snap(200, &[(1, 1, 1, 170)]));
        assert_eq!(
            kinds(&c),
            vec![(1, EventKind::LinkDown), (1, EventKind::LinkUp)]
        );
        assert!(c.iter().all(|c| matches!(
            c,
            Change::Port {
                between_polls: true,
                ..
            }
        )));
    }

    #[test]
    fn reachability_after_n_failures_once() {
        let mut s = DeviceState::default();
        s.on_poll_ok(&snap(100, &[]));
        assert!(s.on_poll_failed(3).is_empty());
        assert!(s.on_poll_failed(3).is_empty());
        let c = s.on_poll_failed(3);
        assert_eq!(
            c,
            vec![Change::Reachability {
                kind: EventKind::DeviceUnreachable,
                failures: 3
            }]
        );
        assert!(s.on_poll_failed(3).is_empty());
        let c = s.on_poll_ok(&snap(200, &[]));
        assert!(matches!(
            c[0],
            Change::Reachability {
                kind: EventKind::DeviceReachable,
                failures: 4
            }
        ));
        assert!(s.on_poll_ok(&snap(300, &[])).is_empty());
    }

    #[test]
    fn vlan_changes_after_the_baseline() {
        let mut s = DeviceState::default();
        assert!(s.on_vlans([(1, 10), (2, 10)].into()).is_empty());
        assert!(s.on_vlans([(1, 10), (2, 10)].into()).is_empty());
        let c = s.on_vlans([(1, 10), (2, 20), (3, 30)].into());
        assert_eq!(
            c,
            vec![Change::Vlan {
                if_index: 2,
                old: 10,
                new: 20
            }]
        );
    }

    #[test]
    fn any_answer_makes_the_device_reachable_again() {
        let mut s = DeviceState::default();
        s.on_poll_failed(1);
        assert!(matches!(
            s.on_answer(),
            Some(Change::Reachability {
                kind: EventKind::DeviceReachable,
                ..
            })
        ));
        assert_eq!(s.on_answer(), None);
    }

    #[test]
    fn a_device_dead_from_the_start_is_reported() {
        let mut s = DeviceState::default();
        assert!(s.on_poll_failed(2).is_empty());
        assert_eq!(s.on_poll_failed(2).len(), 1);
    }

    #[test]
    fn reboot_versus_wrap() {
        let mut s = DeviceState::default();
        s.on_poll_ok(&snap(500_000, &[(1, 1, 1, 10)]));
        let c = s.on_poll_ok(&snap(3_000, &[(1, 1, 1, 20)]));
        assert_eq!(
            c,
            vec![Change::Rebooted {
                old_uptime: 500_000,
                new_uptime: 3_000
            }]
        );
        let mut s = DeviceState::default();
        s.on_poll_ok(&snap(u32::MAX - 50, &[]));
        assert!(s.on_poll_ok(&snap(100, &[])).is_empty());
    }

    #[test]
    fn a_single_port_update_diffs_only_that_port() {
        let mut s = DeviceState::default();
        s.on_poll_ok(&snap(100, &[(1, 1, 1, 10), (2, 1, 1, 10)]));
        let down = PortLink {
            admin: 1,
            oper: 2,
            last_change: Some(150),
        };
        assert_eq!(
            kinds(&s.on_port_update(2, &down)),
            vec![(2, EventKind::LinkDown)]
        );
        // The next poll agrees: nothing new.
        assert!(
            s.on_poll_ok(&snap(200, &[(1, 1, 1, 10), (2, 1, 2, 150)]))
                .is_empty()
        );
        // A confirmation that finds nothing changed says nothing.
        assert!(s.on_port_update(2, &down).is_empty());
    }

    #[test]
    fn ports_appearing_later_are_reported_like_first_sight() {
        let mut s = DeviceState::default();
        s.on_poll_ok(&snap(100, &[(1, 1, 1, 0)]));
        let c = s.on_poll_ok(&snap(200, &[(1, 1, 1, 0), (2, 1, 2, 0)]));
        assert_eq!(kinds(&c), vec![(2, EventKind::LinkDown)]);
        assert!(s.knows_port(2));
        let c = s.on_poll_ok(&snap(300, &[(1, 1, 1, 0)]));
        assert!(c.is_empty());
        assert!(!s.knows_port(2));
    }
}
