//! The simulated campus: switches in a core -> distribution -> access tree, their ports, and
//! the state a test or scenario changes (link, admin status, VLAN, a switch dying).

use std::collections::HashMap;
use std::time::Instant;

/// A switch's place in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The core switch.
    Core,
    /// A distribution switch.
    Distribution,
    /// An access switch.
    Access,
}

/// What a port connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A user outlet.
    Access,
    /// Towards the core.
    Uplink,
    /// Towards a switch below.
    Downlink,
}

/// One interface.
#[derive(Debug, Clone)]
pub struct Port {
    /// ifIndex (1-based).
    pub if_index: u32,
    /// ifName.
    pub name: String,
    /// ifAlias.
    pub alias: String,
    /// What it connects to.
    pub kind: PortKind,
    /// 1 up, 2 down.
    pub admin: i64,
    /// Whether the far end is there (the cable): oper is up when admin is up and this is true.
    pub carrier: bool,
    /// sysUpTime ticks at the last oper change.
    pub last_change: u32,
    /// Speed in Mbit/s.
    pub speed_mbps: u32,
    /// dot1qPvid.
    pub pvid: u32,
    /// Bytes per second each way while up (counters move with time).
    pub rate: u64,
    /// Octets counted up to `since` (in, out).
    base: (u64, u64),
    /// When `base` was taken.
    since: Instant,
}

impl Port {
    /// ifOperStatus: 1 up, 2 down.
    pub fn oper(&self) -> i64 {
        if self.admin == 1 && self.carrier {
            1
        } else {
            2
        }
    }

    /// The octet counters (in, out) at `now`.
    pub fn octets(&self, now: Instant) -> (u64, u64) {
        if self.oper() != 1 {
            return self.base;
        }
        let secs = now.saturating_duration_since(self.since).as_millis();
        let moved = u64::try_from(u128::from(self.rate) * secs / 1000).unwrap_or(u64::MAX);
        (
            self.base.0.wrapping_add(moved),
            self.base.1.wrapping_add(moved / 2),
        )
    }

    /// Freezes the counters at `now` (before the oper status changes).
    fn settle(&mut self, now: Instant) {
        self.base = self.octets(now);
        self.since = now;
    }
}

/// One simulated switch.
#[derive(Debug, Clone)]
pub struct Switch {
    /// Name (also its community when several share a UDP port).
    pub name: String,
    /// Place in the tree.
    pub role: Role,
    /// Parent towards the core.
    pub uplink: Option<String>,
    /// Whether it answers at all.
    pub alive: bool,
    /// When it booted.
    pub boot: Instant,
    /// Its interfaces, by ifIndex - 1.
    pub ports: Vec<Port>,
}

impl Switch {
    /// A switch with `n` ports: the last two are uplinks (an access or distribution switch) or
    /// downlinks (the core); the rest access ports, or downlinks on a distribution switch.
    pub fn new(name: &str, role: Role, uplink: Option<&str>, n: u32, now: Instant) -> Switch {
        let ports = (1..=n)
            .map(|i| {
                let last_two = i + 2 > n;
                let kind = match (role, last_two) {
                    (Role::Core, _) => PortKind::Downlink,
                    (_, true) => PortKind::Uplink,
                    (Role::Distribution, false) => PortKind::Downlink,
                    (Role::Access, false) => PortKind::Access,
                };
                let (name, speed, rate) = match kind {
                    PortKind::Access => (format!("Gi1/0/{i}"), 1_000, 40_000),
                    // The last two ports are Te1/1/1 and Te1/1/2 (uplinks, or the core's last
                    // downlinks); other downlinks are Te1/0/i.
                    _ if last_two => (
                        format!("Te1/1/{}", i.saturating_sub(n.saturating_sub(2))),
                        10_000,
                        4_000_000,
                    ),
                    _ => (format!("Te1/0/{i}"), 10_000, 4_000_000),
                };
                Port {
                    if_index: i,
                    name,
                    alias: match kind {
                        PortKind::Uplink => "uplink".into(),
                        PortKind::Downlink => "downlink".into(),
                        PortKind::Access => String::new(),
                    },
                    kind,
                    admin: 1,
                    carrier: true,
                    last_change: 0,
                    speed_mbps: speed,
                    pvid: if kind == PortKind::Access { 10 } else { 1 },
                    rate,
                    base: (u64::from(i) * 1_000_003, u64::from(i) * 999_983),
                    since: now,
                }
            })
            .collect();
        Switch {
            name: name.to_owned(),
            role,
            uplink: uplink.map(str::to_owned),
            alive: true,
            boot: now,
            ports,
        }
    }

    /// sysUpTime in hundredths of a second.
    pub fn uptime(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.boot).as_millis() / 10).unwrap_or(u32::MAX)
    }

    /// A port by ifIndex.
    pub fn port_mut(&mut self, if_index: u32) -> Option<&mut Port> {
        self.ports
            .get_mut(usize::try_from(if_index).ok()?.checked_sub(1)?)
    }

    /// Sets the carrier (the link) of a port; returns the new oper status if it changed.
    pub fn set_carrier(&mut self, if_index: u32, up: bool, now: Instant) -> Option<i64> {
        let ticks = self.uptime(now);
        let p = self.port_mut(if_index)?;
        let before = p.oper();
        p.settle(now);
        p.carrier = up;
        (p.oper() != before).then(|| {
            p.last_change = ticks;
            p.oper()
        })
    }

    /// Sets ifAdminStatus (1 or 2); returns the new oper status if it changed.
    pub fn set_admin(&mut self, if_index: u32, admin: i64, now: Instant) -> Option<i64> {
        let ticks = self.uptime(now);
        let p = self.port_mut(if_index)?;
        let before = p.oper();
        p.settle(now);
        p.admin = admin;
        (p.oper() != before).then(|| {
            p.last_change = ticks;
            p.oper()
        })
    }
}

/// The whole campus.
#[derive(Debug, Clone, Default)]
pub struct Campus {
    /// Switches in creation order.
    pub switches: Vec<Switch>,
    by_name: HashMap<String, usize>,
}

impl Campus {
    /// Adds a switch.
    pub fn add(&mut self, s: Switch) {
        self.by_name.insert(s.name.clone(), self.switches.len());
        self.switches.push(s);
    }

    /// A switch by name.
    pub fn get(&self, name: &str) -> Option<&Switch> {
        self.by_name.get(name).and_then(|i| self.switches.get(*i))
    }

    /// A switch by name, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Switch> {
        let i = *self.by_name.get(name)?;
        self.switches.get_mut(i)
    }

    /// Whether a switch answers: it and every switch on its uplink path are alive.
    pub fn reachable(&self, name: &str) -> bool {
        let mut at = Some(name);
        let mut hops = 0;
        while let Some(n) = at {
            let Some(s) = self.get(n) else {
                return false;
            };
            if !s.alive {
                return false;
            }
            hops += 1;
            if hops > self.switches.len() {
                return false;
            }
            at = s.uplink.as_deref();
        }
        true
    }

    /// A tree of `total` switches with `ports` ports each: one core (`core`), one distribution
    /// switch (`dist-N`) per `per_dist` access switches (`access-N-M`), each access switch's
    /// uplink its distribution switch, each distribution switch's the core.
    pub fn tree(total: usize, per_dist: usize, ports: u32, now: Instant) -> Campus {
        let mut c = Campus::default();
        c.add(Switch::new("core", Role::Core, None, ports, now));
        let per_dist = per_dist.max(1);
        let access = total.saturating_sub(1);
        let dists = access.div_ceil(per_dist + 1).max(usize::from(access > 0));
        let mut made = 1;
        for d in 1..=dists {
            if made >= total {
                break;
            }
            let dist = format!("dist-{d}");
            c.add(Switch::new(
                &dist,
                Role::Distribution,
                Some("core"),
                ports,
                now,
            ));
            made += 1;
            for a in 1..=per_dist {
                if made >= total {
                    break;
                }
                c.add(Switch::new(
                    &format!("access-{d}-{a}"),
                    Role::Access,
                    Some(&dist),
                    ports,
                    now,
                ));
                made += 1;
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_tree_of_the_asked_size_with_parents() {
        let now = Instant::now();
        let c = Campus::tree(2000, 49, 52, now);
        assert_eq!(c.switches.len(), 2000);
        assert_eq!(c.get("core").unwrap().role, Role::Core);
        let a = c.get("access-1-1").unwrap();
        assert_eq!(a.uplink.as_deref(), Some("dist-1"));
        assert_eq!(c.get("dist-1").unwrap().uplink.as_deref(), Some("core"));
        assert_eq!(a.ports.len(), 52);
        assert_eq!(a.ports[51].kind, PortKind::Uplink);
        assert_eq!(a.ports[51].name, "Te1/1/2");
        assert_eq!(a.ports[50].name, "Te1/1/1");
        assert_eq!(a.ports[0].name, "Gi1/0/1");
        // Every port of a switch has its own name.
        for s in [c.get("core").unwrap(), c.get("dist-1").unwrap(), a] {
            let names: std::collections::HashSet<_> = s.ports.iter().map(|p| &p.name).collect();
            assert_eq!(names.len(), s.ports.len(), "{}", s.name);
        }
        assert_eq!(c.get("dist-1").unwrap().ports[4].name, "Te1/0/5");
        assert_eq!(Campus::tree(1, 10, 4, now).switches.len(), 1);
        // A dead distribution switch takes its access switches off the network.
        let mut c = c;
        c.get_mut("dist-1").unwrap().alive = false;
        assert!(!c.reachable("access-1-1"));
        assert!(c.reachable("access-2-1"));
        assert!(c.reachable("core"));
    }

    #[test]
    fn counters_move_while_up_and_stop_while_down() {
        let t0 = Instant::now();
        let mut s = Switch::new("a", Role::Access, Some("d"), 4, t0);
        let p = &s.ports[0];
        let start = p.octets(t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.octets(later).0 - start.0, 400_000);
        assert_eq!(s.set_carrier(1, false, later), Some(2));
        assert_eq!(s.ports[0].last_change, 1000);
        let frozen = s.ports[0].octets(later + Duration::from_secs(5));
        assert_eq!(frozen, s.ports[0].octets(later));
        // Admin down then the link returning keeps it down until admin up.
        assert_eq!(s.set_admin(1, 2, later), None);
        assert_eq!(s.set_carrier(1, true, later), None);
        assert_eq!(s.set_admin(1, 1, later), Some(1));
    }
}
