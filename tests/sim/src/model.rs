//! The simulated campus, and the state a test or scenario changes (link, admin status, VLAN,
//! a switch dying, a cable moved). Two shapes:
//!
//! - [`Campus::cnaas`] (the default of `cnaas-sim`): a campus as CNaaS builds it (DESIGN.md
//!   section 7): two cores, distribution switches in pairs cabled to both cores, and access
//!   switches with one uplink to each switch of their pair, bundled into `Po1` (LACP). Every
//!   cable is known at both ends, so LLDP-MIB, `ifStackTable` and IEEE8023-LAG-MIB are served
//!   consistently with it, and a switch dying takes the link down at the far end of its cables.
//! - [`Campus::tree`]: one core, distribution switches, access switches below each (no cables
//!   modelled: no LLDP).

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

/// The far end of a cable, as LLDP tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The switch.
    pub switch: String,
    /// Its port's ifIndex.
    pub if_index: u32,
    /// Its port's ifName.
    pub port: String,
    /// Its port's ifAlias.
    pub alias: String,
}

/// A switch's LLDP chassis id: a locally administered MAC address from its name.
pub fn chassis_mac(switch: &str) -> [u8; 6] {
    let mut h: u32 = 0x811c_9dc5;
    for b in switch.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let b = h.to_be_bytes();
    [0x02, 0xcc, b[0], b[1], b[2], b[3]]
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
    /// The far end of its cable, if cabled.
    pub peer: Option<Peer>,
    /// For an aggregate (port-channel): its member ports' ifIndex.
    pub members: Vec<u32>,
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
    /// Place in the campus.
    pub role: Role,
    /// Parents towards the core (two for a switch with redundant uplinks).
    pub uplinks: Vec<String>,
    /// The other switch of its distribution pair.
    pub pair: Option<String>,
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
                    peer: None,
                    members: Vec::new(),
                }
            })
            .collect();
        Switch {
            name: name.to_owned(),
            role,
            uplinks: uplink.map(str::to_owned).into_iter().collect(),
            pair: None,
            alive: true,
            boot: now,
            ports,
        }
    }

    /// Adds an aggregate `name` (the next ifIndex) over `members`; returns its ifIndex.
    pub fn add_bundle(&mut self, name: &str, members: &[u32], now: Instant) -> u32 {
        let if_index = u32::try_from(self.ports.len() + 1).unwrap_or(u32::MAX);
        let speed = members
            .iter()
            .filter_map(|m| self.ports.get(usize::try_from(*m).ok()?.checked_sub(1)?))
            .map(|p| p.speed_mbps)
            .sum();
        let kind = members
            .first()
            .and_then(|m| self.ports.get(usize::try_from(*m).ok()?.checked_sub(1)?))
            .map_or(PortKind::Uplink, |p| p.kind);
        self.ports.push(Port {
            if_index,
            name: name.to_owned(),
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
            pvid: 1,
            rate: 0,
            base: (0, 0),
            since: now,
            peer: None,
            members: members.to_vec(),
        });
        self.refresh_bundles(now);
        if_index
    }

    /// An aggregate's link is up while one of its members is.
    fn refresh_bundles(&mut self, now: Instant) {
        let ticks = self.uptime(now);
        for a in 0..self.ports.len() {
            if self.ports[a].members.is_empty() {
                continue;
            }
            let up = self.ports[a].members.iter().any(|m| {
                usize::try_from(*m)
                    .ok()
                    .and_then(|m| m.checked_sub(1))
                    .and_then(|m| self.ports.get(m))
                    .is_some_and(|p| p.oper() == 1)
            });
            let p = &mut self.ports[a];
            if p.carrier != up {
                let before = p.oper();
                p.carrier = up;
                if p.oper() != before {
                    p.last_change = ticks;
                }
            }
        }
    }

    /// The aggregate a port is a member of.
    pub fn bundle_of(&self, if_index: u32) -> Option<&Port> {
        self.ports.iter().find(|p| p.members.contains(&if_index))
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
        let changed = (p.oper() != before).then(|| {
            p.last_change = ticks;
            p.oper()
        });
        self.refresh_bundles(now);
        changed
    }

    /// Sets ifAdminStatus (1 or 2); returns the new oper status if it changed.
    pub fn set_admin(&mut self, if_index: u32, admin: i64, now: Instant) -> Option<i64> {
        let ticks = self.uptime(now);
        let p = self.port_mut(if_index)?;
        let before = p.oper();
        p.settle(now);
        p.admin = admin;
        let changed = (p.oper() != before).then(|| {
            p.last_change = ticks;
            p.oper()
        });
        self.refresh_bundles(now);
        changed
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

    /// Whether a switch answers: it is alive and some path of alive switches leads from it
    /// along uplinks to a top (a switch without uplinks).
    pub fn reachable(&self, name: &str) -> bool {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![name];
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            let Some(s) = self.get(n).filter(|s| s.alive) else {
                continue;
            };
            if s.uplinks.is_empty() {
                return true;
            }
            stack.extend(s.uplinks.iter().map(String::as_str));
        }
        false
    }

    /// Lays a cable between two ports (each learns the other as its LLDP neighbour).
    pub fn cable(&mut self, a: &str, a_port: u32, b: &str, b_port: u32) {
        let info = |c: &Campus, s: &str, i: u32| {
            c.get(s)
                .and_then(|sw| sw.ports.get(usize::try_from(i).ok()?.checked_sub(1)?))
                .map(|p| Peer {
                    switch: s.to_owned(),
                    if_index: i,
                    port: p.name.clone(),
                    alias: p.alias.clone(),
                })
        };
        let (pa, pb) = (info(self, a, a_port), info(self, b, b_port));
        if let Some(p) = self.get_mut(a).and_then(|s| s.port_mut(a_port)) {
            p.peer = pb;
        }
        if let Some(p) = self.get_mut(b).and_then(|s| s.port_mut(b_port)) {
            p.peer = pa;
        }
    }

    /// A CNaaS campus of about `total` switches with `ports` ports each: cores `core-1` and
    /// `core-2`; pairs `dist-Na`/`dist-Nb` (Te1/1/1 to core-1, Te1/1/2 to core-2); per pair
    /// up to `per_pair` access switches `access-N-M`, Te1/1/1 to `dist-Na` and Te1/1/2 to
    /// `dist-Nb` (port M on each), both in `Po1`. The cores get as many ports as the pairs
    /// need.
    pub fn cnaas(total: usize, per_pair: usize, ports: u32, now: Instant) -> Campus {
        let mut c = Campus::default();
        let ports = ports.max(4);
        let per_pair = per_pair.clamp(1, usize::try_from(ports - 2).unwrap_or(1));
        let rest = total.saturating_sub(2);
        let pairs = rest.div_ceil(per_pair + 2).max(usize::from(rest > 0));
        let core_ports = ports.max(u32::try_from(pairs).unwrap_or(u32::MAX).saturating_mul(2));
        for core in ["core-1", "core-2"] {
            c.add(Switch::new(core, Role::Core, None, core_ports, now));
        }
        let mut made = 2;
        for d in 1..=pairs {
            if made >= total {
                break;
            }
            let (da, db) = (format!("dist-{d}a"), format!("dist-{d}b"));
            let core_port = u32::try_from(d).unwrap_or(u32::MAX);
            for (name, other) in [(&da, &db), (&db, &da)] {
                if made >= total {
                    break;
                }
                let mut s = Switch::new(name, Role::Distribution, None, ports, now);
                s.uplinks = vec!["core-1".into(), "core-2".into()];
                s.pair = Some(other.clone());
                c.add(s);
                made += 1;
                // A pair's two switches use the same port number on each core: dist-Na on
                // core port 2N-1, dist-Nb on 2N (one core port per distribution switch).
                let on_core = if name == &da {
                    core_port * 2 - 1
                } else {
                    core_port * 2
                };
                c.cable(name, ports - 1, "core-1", on_core);
                c.cable(name, ports, "core-2", on_core);
            }
            for a in 1..=per_pair {
                if made >= total {
                    break;
                }
                let name = format!("access-{d}-{a}");
                let mut s = Switch::new(&name, Role::Access, None, ports, now);
                s.uplinks = [&da, &db]
                    .into_iter()
                    .filter(|x| c.get(x).is_some())
                    .cloned()
                    .collect();
                s.add_bundle("Po1", &[ports - 1, ports], now);
                c.add(s);
                made += 1;
                let a = u32::try_from(a).unwrap_or(u32::MAX);
                c.cable(&name, ports - 1, &da, a);
                c.cable(&name, ports, &db, a);
            }
        }
        c
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
        assert_eq!(a.uplinks, vec!["dist-1"]);
        assert_eq!(c.get("dist-1").unwrap().uplinks, vec!["core"]);
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

    #[test]
    fn a_cnaas_campus_is_cabled_in_pairs() {
        let now = Instant::now();
        let c = Campus::cnaas(2000, 48, 52, now);
        assert_eq!(c.switches.len(), 2000);
        let a = c.get("access-1-1").unwrap();
        assert_eq!(a.uplinks, vec!["dist-1a", "dist-1b"]);
        assert_eq!(a.ports.len(), 53);
        assert_eq!(a.ports[52].name, "Po1");
        assert_eq!(a.ports[52].members, vec![51, 52]);
        assert_eq!(a.ports[50].peer.as_ref().unwrap().switch, "dist-1a");
        assert_eq!(a.ports[51].peer.as_ref().unwrap().switch, "dist-1b");
        let d = c.get("dist-1b").unwrap();
        assert_eq!(d.pair.as_deref(), Some("dist-1a"));
        assert_eq!(d.ports[0].peer.as_ref().unwrap().switch, "access-1-1");
        assert_eq!(d.ports[51].peer.as_ref().unwrap().switch, "core-2");
        // 2000 switches: 2 cores, 40 pairs of 48; the cores have a port per dist switch.
        assert_eq!(c.get("core-1").unwrap().ports.len(), 80);
        // One of a pair dead: everything still answers; both: the access switches do not.
        let mut c = c;
        c.get_mut("dist-1a").unwrap().alive = false;
        assert!(c.reachable("access-1-1"));
        c.get_mut("dist-1b").unwrap().alive = false;
        assert!(!c.reachable("access-1-1"));
        assert!(c.reachable("access-2-1"));
        c.get_mut("core-1").unwrap().alive = false;
        assert!(c.reachable("dist-2a"));
    }
}
