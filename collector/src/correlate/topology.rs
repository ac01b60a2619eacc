//! The campus as a graph (DESIGN.md section 7): devices and the links between them, merged from
//! what the switches say over LLDP (the cabling), CNaaS-NMS (links and distribution pairs) and
//! the TOML inventory (the override: `uplink`, which may list several parents, and `pair`).
//!
//! Towards the core is towards the *tops*: the devices of role `core`; in a part of the graph
//! without one, the devices that declare no `uplink` (the top of a hand-written tree). A device
//! is **shadowed** when every path from it to a top that is up runs through a device that is
//! down (NAV's boxShadow, on a graph rather than a chain). With incomplete topology (a device
//! not connected to any top) the answer is "not shadowed", so it falls back to a plain
//! `device_down` (NAV #889: never hide a fault behind a guess).
//!
//! The **impact** of a set of down devices: the devices they *isolate* (shadowed: an outage)
//! and the devices that *lost redundancy* (a parent is down, another path is left: degraded).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use cnaas_shared::Neighbour;
use serde::Serialize;

use crate::config::{DeviceRole, Inventory};

/// Where a link is known from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkSource {
    /// The TOML inventory (`uplink`).
    Inventory,
    /// CNaaS-NMS (`/api/v1.0/linknets`, `mgmtdomains`).
    CnaasNms,
    /// An LLDP neighbour reported by a switch.
    Lldp,
}

/// One link between two devices (undirected; `a` sorts before `b`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// One end.
    pub a: String,
    /// Its port, where known.
    pub a_port: Option<String>,
    /// The other end.
    pub b: String,
    /// Its port, where known.
    pub b_port: Option<String>,
    /// Every source that knows the link.
    pub sources: BTreeSet<LinkSource>,
}

/// A link CNaaS-NMS knows (from `linknets`), by device names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalLink {
    /// One end.
    pub a: String,
    /// Its port.
    pub a_port: Option<String>,
    /// The other end.
    pub b: String,
    /// Its port.
    pub b_port: Option<String>,
}

/// An LLDP neighbour as the collector remembers it: a cable stays known while its link is
/// down (a neighbour is not announced over a dead link), until another neighbour is seen on
/// either of its ports (the cable moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedNeighbour {
    /// The neighbour.
    pub neighbour: Neighbour,
    /// When a snapshot last listed it.
    pub seen: DateTime<Utc>,
    /// Whether the latest snapshot of its device listed it.
    pub present: bool,
}

/// What the topology learned from the switches (the inventory brings the rest).
#[derive(Debug, Clone, Default)]
pub struct Learned {
    /// LLDP neighbours per device and local port.
    pub lldp: BTreeMap<String, BTreeMap<String, LearnedNeighbour>>,
}

/// The graph, with the distances from the tops computed once per build.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    names: Vec<String>,
    index: HashMap<String, usize>,
    adj: Vec<Vec<usize>>,
    top: Vec<bool>,
    /// Hops from the nearest top; `u32::MAX` when no top is reachable (incomplete).
    level: Vec<u32>,
    pair: Vec<Option<usize>>,
    role: Vec<Option<DeviceRole>>,
    /// (device, local port name) -> the device at the other end.
    port_peer: HashMap<(String, String), (String, Option<String>)>,
    links: Vec<Link>,
}

/// Which up devices can still reach an up top, for one set of down devices.
#[derive(Debug, Clone)]
pub struct Reach {
    down: HashSet<String>,
    reached: Vec<bool>,
}

/// What a set of down devices does to the rest of the campus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Impact {
    /// Devices cut off from the core (outage), sorted.
    pub isolated: Vec<String>,
    /// Devices still reachable but with a parent down (redundancy lost), sorted.
    pub degraded: Vec<String>,
}

impl Impact {
    /// Nothing isolated, something degraded: redundancy lost, no outage.
    pub fn redundancy_only(&self) -> bool {
        self.isolated.is_empty() && !self.degraded.is_empty()
    }
}

impl Topology {
    /// Builds the graph from the inventory and what was learned. Names an LLDP neighbour by
    /// its `sysName` when that (or its first label, `a1.campus.example` -> `a1`) is a known
    /// device; a neighbour that is no known device is left out of the graph.
    pub fn build(inventory: &Inventory, learned: &Learned) -> Topology {
        let mut t = Topology::default();
        let mut names: BTreeSet<&str> = inventory.devices.keys().map(String::as_str).collect();
        names.extend(learned.lldp.keys().map(String::as_str));
        for l in &inventory.links {
            names.insert(&l.a);
            names.insert(&l.b);
        }
        for (a, b) in &inventory.pairs {
            names.insert(a);
            names.insert(b);
        }
        for n in names {
            t.index.insert(n.to_owned(), t.names.len());
            t.names.push(n.to_owned());
        }
        let n = t.names.len();
        t.adj = vec![Vec::new(); n];
        t.pair = vec![None; n];
        t.role = t
            .names
            .iter()
            .map(|d| inventory.devices.get(d).and_then(|x| x.role))
            .collect();
        let mut links: BTreeMap<(String, String), Link> = BTreeMap::new();
        let mut add = |t: &mut Topology,
                       a: &str,
                       a_port: Option<&str>,
                       b: &str,
                       b_port: Option<&str>,
                       source: LinkSource| {
            if a == b {
                return;
            }
            let (Some(&ia), Some(&ib)) = (t.index.get(a), t.index.get(b)) else {
                return;
            };
            if !t.adj[ia].contains(&ib) {
                t.adj[ia].push(ib);
                t.adj[ib].push(ia);
            }
            if let Some(p) = a_port {
                t.port_peer.insert(
                    (a.to_owned(), p.to_owned()),
                    (b.to_owned(), b_port.map(str::to_owned)),
                );
            }
            if let Some(p) = b_port {
                t.port_peer.insert(
                    (b.to_owned(), p.to_owned()),
                    (a.to_owned(), a_port.map(str::to_owned)),
                );
            }
            let (x, xp, y, yp) = if a <= b {
                (a, a_port, b, b_port)
            } else {
                (b, b_port, a, a_port)
            };
            // One entry per device pair and port pair: a LACP bundle has two links.
            let key = (
                format!("{x}\u{0}{}", xp.unwrap_or("")),
                format!("{y}\u{0}{}", yp.unwrap_or("")),
            );
            let link = links.entry(key).or_insert_with(|| Link {
                a: x.to_owned(),
                a_port: xp.map(str::to_owned),
                b: y.to_owned(),
                b_port: yp.map(str::to_owned),
                sources: BTreeSet::new(),
            });
            link.sources.insert(source);
        };
        for (name, d) in &inventory.devices {
            for up in &d.uplinks {
                add(&mut t, name, None, up, None, LinkSource::Inventory);
            }
        }
        for l in &inventory.links {
            add(
                &mut t,
                &l.a,
                l.a_port.as_deref(),
                &l.b,
                l.b_port.as_deref(),
                LinkSource::CnaasNms,
            );
        }
        for (a, a_port, b, b_port) in t.lldp_links(learned) {
            add(
                &mut t,
                &a,
                Some(&a_port),
                &b,
                b_port.as_deref(),
                LinkSource::Lldp,
            );
        }
        // Links learned twice (an inventory `uplink` and the LLDP link it describes) are
        // one link with two sources: an inventory link without ports is folded into the
        // ported ones of the same device pair.
        let mut merged: Vec<Link> = Vec::new();
        let mut by_pair: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for l in links.into_values() {
            by_pair
                .entry((l.a.clone(), l.b.clone()))
                .or_default()
                .push(merged.len());
            merged.push(l);
        }
        let mut drop = HashSet::new();
        for idx in by_pair.values() {
            let (bare, ported): (Vec<usize>, Vec<usize>) = idx
                .iter()
                .partition(|&&i| merged[i].a_port.is_none() && merged[i].b_port.is_none());
            if ported.is_empty() {
                continue;
            }
            for b in bare {
                let sources = merged[b].sources.clone();
                for &p in &ported {
                    merged[p].sources.extend(sources.iter().copied());
                }
                drop.insert(b);
            }
        }
        t.links = merged
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, l)| l)
            .collect();
        for (name, d) in &inventory.devices {
            if let Some(p) = &d.pair {
                t.set_pair(name, p);
            }
        }
        for (a, b) in &inventory.pairs {
            let (ia, ib) = (t.index.get(a).copied(), t.index.get(b).copied());
            if let (Some(ia), Some(ib)) = (ia, ib)
                && t.pair[ia].is_none()
                && t.pair[ib].is_none()
            {
                t.set_pair(a, b);
            }
        }
        t.find_tops(inventory);
        t
    }

    /// The LLDP links, each port at most once: where two remembered neighbours claim one port
    /// (a cable moved), the one seen most recently wins, and a link stands only if it
    /// wins at both of its ends.
    fn lldp_links(&self, learned: &Learned) -> Vec<(String, String, String, Option<String>)> {
        struct Candidate {
            a: String,
            a_port: String,
            b: String,
            b_port: Option<String>,
            rank: DateTime<Utc>,
        }
        let mut candidates = Vec::new();
        for (device, ports) in &learned.lldp {
            for l in ports.values() {
                let nb = &l.neighbour;
                let Some(peer) = nb.sys_name.as_deref().and_then(|s| self.device_named(s)) else {
                    continue;
                };
                // The remote port id is the peer's ifName when its subtype says so.
                let peer_port = match nb.port_subtype.as_str() {
                    "interface_name" | "local" => Some(nb.port_id.clone()),
                    _ => nb.port_descr.clone(),
                };
                candidates.push(Candidate {
                    a: device.clone(),
                    a_port: nb.local_port.clone(),
                    b: peer.to_owned(),
                    b_port: peer_port,
                    rank: l.seen,
                });
            }
        }
        // The best claim on each port, and what it claims.
        // (device, port) -> the newest claim on it: when, and the (device, port) it names.
        type Claim = (DateTime<Utc>, (String, Option<String>));
        let mut best: HashMap<(String, String), Claim> = HashMap::new();
        let mut claim = |port: (String, String), rank, other: (String, Option<String>)| {
            let e = best.entry(port).or_insert((rank, other.clone()));
            if rank > e.0 {
                *e = (rank, other);
            }
        };
        for c in &candidates {
            claim(
                (c.a.clone(), c.a_port.clone()),
                c.rank,
                (c.b.clone(), c.b_port.clone()),
            );
            if let Some(bp) = &c.b_port {
                claim(
                    (c.b.clone(), bp.clone()),
                    c.rank,
                    (c.a.clone(), Some(c.a_port.clone())),
                );
            }
        }
        let wins = |port: (String, String), other: (&str, Option<&str>)| {
            best.get(&port).is_none_or(|(_, (d, p))| {
                d == other.0 && (p.is_none() || other.1.is_none() || p.as_deref() == other.1)
            })
        };
        candidates
            .into_iter()
            .filter(|c| {
                wins((c.a.clone(), c.a_port.clone()), (&c.b, c.b_port.as_deref()))
                    && c.b_port
                        .as_ref()
                        .is_none_or(|bp| wins((c.b.clone(), bp.clone()), (&c.a, Some(&c.a_port))))
            })
            .map(|c| (c.a, c.a_port, c.b, c.b_port))
            .collect()
    }

    /// Whether LLDP once saw a neighbour on this port whose cable has since been seen
    /// elsewhere (a newer neighbour on either end): the port lost its link because the cable
    /// moved, not because something broke.
    pub fn cable_moved(&self, learned: &Learned, device: &str, port: &str) -> bool {
        learned
            .lldp
            .get(device)
            .is_some_and(|ports| ports.contains_key(port))
            && self.peer_of_port(device, port).is_none()
    }

    fn set_pair(&mut self, a: &str, b: &str) {
        if let (Some(&ia), Some(&ib)) = (self.index.get(a), self.index.get(b))
            && ia != ib
        {
            self.pair[ia] = Some(ib);
            self.pair[ib] = Some(ia);
        }
    }

    /// Tops per connected part: its core devices, else its devices without a declared uplink.
    /// Then the hop count of every device from the nearest top.
    fn find_tops(&mut self, inventory: &Inventory) {
        let n = self.names.len();
        self.top = vec![false; n];
        let mut part = vec![usize::MAX; n];
        let mut parts = 0;
        for start in 0..n {
            if part[start] != usize::MAX {
                continue;
            }
            let mut members = vec![start];
            part[start] = parts;
            let mut i = 0;
            while i < members.len() {
                let at = members[i];
                i += 1;
                for &nb in &self.adj[at] {
                    if part[nb] == usize::MAX {
                        part[nb] = parts;
                        members.push(nb);
                    }
                }
            }
            let cores: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| self.role[m] == Some(DeviceRole::Core))
                .collect();
            if cores.is_empty() {
                for m in members {
                    let declares_uplink = inventory
                        .devices
                        .get(&self.names[m])
                        .is_some_and(|d| !d.uplinks.is_empty());
                    // Known only from what was learned (no inventory entry) and no core in
                    // sight: not a top, the part is incomplete.
                    let known = inventory.devices.contains_key(&self.names[m]);
                    self.top[m] = known && !declares_uplink;
                }
            } else {
                for c in cores {
                    self.top[c] = true;
                }
            }
            parts += 1;
        }
        self.level = vec![u32::MAX; n];
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| self.top[i]).collect();
        for &i in &queue {
            self.level[i] = 0;
        }
        while let Some(at) = queue.pop_front() {
            for &nb in &self.adj[at] {
                if self.level[nb] == u32::MAX {
                    self.level[nb] = self.level[at] + 1;
                    queue.push_back(nb);
                }
            }
        }
    }

    /// The device an LLDP `sysName` names: the name itself, or its first label.
    pub fn device_named(&self, sys_name: &str) -> Option<&str> {
        let s = sys_name.trim();
        if let Some(&i) = self.index.get(s) {
            return Some(&self.names[i]);
        }
        let short = s.split('.').next().unwrap_or(s);
        self.index.get(short).map(|&i| self.names[i].as_str())
    }

    /// Whether the graph knows the device.
    pub fn contains(&self, device: &str) -> bool {
        self.index.contains_key(device)
    }

    /// Every link, sorted by its ends.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The devices of the graph, sorted.
    pub fn devices(&self) -> &[String] {
        &self.names
    }

    /// The role of a device as the inventory gives it.
    pub fn role(&self, device: &str) -> Option<DeviceRole> {
        self.index.get(device).and_then(|&i| self.role[i])
    }

    /// Whether the device is a top (a core, or the top of a hand-written tree).
    pub fn is_top(&self, device: &str) -> bool {
        self.index.get(device).is_some_and(|&i| self.top[i])
    }

    /// Hops from the nearest top; None when no top is reachable (incomplete topology).
    pub fn level(&self, device: &str) -> Option<u32> {
        self.index
            .get(device)
            .map(|&i| self.level[i])
            .filter(|&l| l != u32::MAX)
    }

    /// The other switch of a distribution pair.
    pub fn partner(&self, device: &str) -> Option<&str> {
        let i = *self.index.get(device)?;
        self.pair[i].map(|p| self.names[p].as_str())
    }

    /// The device at the other end of a port, where a link with ports names it.
    pub fn peer_of_port(&self, device: &str, port: &str) -> Option<&str> {
        self.port_peer
            .get(&(device.to_owned(), port.to_owned()))
            .map(|(d, _)| d.as_str())
    }

    /// The far end of a port's cable (device and port), where both ends are known.
    pub fn far_end(&self, device: &str, port: &str) -> Option<(&str, &str)> {
        let (d, p) = self.port_peer.get(&(device.to_owned(), port.to_owned()))?;
        Some((d.as_str(), p.as_deref()?))
    }

    /// The neighbours one hop nearer the tops.
    pub fn parents(&self, device: &str) -> Vec<&str> {
        let Some(&i) = self.index.get(device) else {
            return Vec::new();
        };
        let mut v: Vec<&str> = self.adj[i]
            .iter()
            .filter(|&&nb| self.level[nb] < self.level[i])
            .map(|&nb| self.names[nb].as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// Every neighbour of a device, sorted.
    pub fn neighbours(&self, device: &str) -> Vec<&str> {
        let Some(&i) = self.index.get(device) else {
            return Vec::new();
        };
        let mut v: Vec<&str> = self.adj[i]
            .iter()
            .map(|&nb| self.names[nb].as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// The up devices that reach an up top without passing a down device.
    pub fn reach(&self, down: &HashSet<String>) -> Reach {
        let n = self.names.len();
        let is_down: Vec<bool> = self.names.iter().map(|d| down.contains(d)).collect();
        let mut reached = vec![false; n];
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| self.top[i] && !is_down[i]).collect();
        for &i in &queue {
            reached[i] = true;
        }
        while let Some(at) = queue.pop_front() {
            for &nb in &self.adj[at] {
                if !reached[nb] && !is_down[nb] {
                    reached[nb] = true;
                    queue.push_back(nb);
                }
            }
        }
        Reach {
            down: down.clone(),
            reached,
        }
    }

    /// Whether every path from `device` to a top runs through a down device (other than the
    /// device itself). Tops and devices the topology cannot place are never shadowed.
    pub fn is_shadowed(&self, device: &str, reach: &Reach) -> bool {
        let Some(&i) = self.index.get(device) else {
            return false;
        };
        if self.top[i] || self.level[i] == u32::MAX || reach.reached.get(i) != Some(&false) {
            return false;
        }
        !self.adj[i].iter().any(|&nb| reach.reached[nb])
    }

    /// The down device that shadows `device`: among the down devices on its paths towards
    /// the tops (one hop nearer each step), the one nearest the tops (then by name), so a
    /// dead core takes in everything below it. None when it is not shadowed.
    pub fn shadowed_by<'a>(&'a self, device: &str, reach: &Reach) -> Option<&'a str> {
        if !self.is_shadowed(device, reach) {
            return None;
        }
        let i = *self.index.get(device)?;
        let mut seen = vec![false; self.names.len()];
        seen[i] = true;
        let mut stack = vec![i];
        let mut best: Option<usize> = None;
        while let Some(at) = stack.pop() {
            for &nb in &self.adj[at] {
                if seen[nb] || self.level[nb] >= self.level[at] {
                    continue;
                }
                seen[nb] = true;
                if reach.down.contains(&self.names[nb]) {
                    let better = best.is_none_or(|b| {
                        (self.level[nb], &self.names[nb]) < (self.level[b], &self.names[b])
                    });
                    if better {
                        best = Some(nb);
                    }
                }
                stack.push(nb);
            }
        }
        best.map(|b| self.names[b].as_str())
    }

    /// What the down devices `roots` do to the rest: the devices they isolate (shadowed, with
    /// one of `roots` as the device that shadows them), and the up devices with a parent
    /// among `roots` that still reach a top (redundancy lost).
    pub fn impact(&self, roots: &[&str], reach: &Reach) -> Impact {
        let roots: HashSet<&str> = roots.iter().copied().collect();
        let mut impact = Impact::default();
        for name in &self.names {
            if roots.contains(name.as_str()) {
                continue;
            }
            if let Some(by) = self.shadowed_by(name, reach) {
                if roots.contains(by) {
                    impact.isolated.push(name.clone());
                }
                continue;
            }
            if reach.down.contains(name) {
                continue;
            }
            if self.parents(name).iter().any(|p| roots.contains(p)) {
                impact.degraded.push(name.clone());
            }
        }
        impact
    }
}

impl Reach {
    /// The down set this was computed for.
    pub fn down(&self) -> &HashSet<String> {
        &self.down
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::InventoryDevice;
    use proptest::prelude::*;

    fn inventory(links: &[(&str, &[&str])]) -> Inventory {
        let mut inv = Inventory::default();
        for (name, ups) in links {
            inv.devices.insert(
                (*name).to_owned(),
                InventoryDevice {
                    uplinks: ups.iter().map(|s| (*s).to_owned()).collect(),
                    ..Default::default()
                },
            );
        }
        inv
    }

    fn down(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn by<'a>(t: &'a Topology, device: &str, d: &[&str]) -> Option<&'a str> {
        t.shadowed_by(device, &t.reach(&down(d)))
    }

    #[test]
    fn a_tree_as_before() {
        let inv = inventory(&[
            ("core", &[]),
            ("dist", &["core"]),
            ("a1", &["dist"]),
            ("a2", &["dist"]),
            ("orphan", &["missing"]),
            ("below-orphan", &["orphan"]),
        ]);
        let t = Topology::build(&inv, &Learned::default());
        let cases: [(&str, &[&str], Option<&str>); 8] = [
            ("a1", &["dist", "a1"], Some("dist")),
            ("a1", &["a1"], None),
            ("a1", &["core", "dist", "a1"], Some("core")),
            ("dist", &["core", "dist"], Some("core")),
            ("core", &["core"], None),
            ("orphan", &["orphan"], None),
            // Its chain never reaches a top: incomplete, so never guessed through.
            ("below-orphan", &["orphan", "below-orphan"], None),
            ("not-in-inventory", &["core"], None),
        ];
        for (device, d, want) in cases {
            assert_eq!(by(&t, device, d), want, "{device} with {d:?} down");
        }
    }

    fn campus() -> Topology {
        let mut inv = Inventory::default();
        let mut add = |name: &str, role, ups: &[&str], pair: Option<&str>| {
            inv.devices.insert(
                name.into(),
                InventoryDevice {
                    role: Some(role),
                    uplinks: ups.iter().map(|s| (*s).to_owned()).collect(),
                    pair: pair.map(str::to_owned),
                    ..Default::default()
                },
            );
        };
        add("c1", DeviceRole::Core, &[], None);
        add("c2", DeviceRole::Core, &[], None);
        add("d1", DeviceRole::Distribution, &["c1", "c2"], Some("d2"));
        add("d2", DeviceRole::Distribution, &["c1", "c2"], Some("d1"));
        add("a1", DeviceRole::Access, &["d1", "d2"], None);
        add("a2", DeviceRole::Access, &["d1", "d2"], None);
        add("a3", DeviceRole::Access, &["a2"], None);
        Topology::build(&inv, &Learned::default())
    }

    #[test]
    fn one_switch_of_a_pair_down_is_redundancy_lost() {
        let t = campus();
        let r = t.reach(&down(&["d1"]));
        assert_eq!(t.shadowed_by("a1", &r), None);
        let i = t.impact(&["d1"], &r);
        assert_eq!(i.isolated, Vec::<String>::new());
        assert_eq!(i.degraded, vec!["a1", "a2"]);
        assert!(i.redundancy_only());
        assert_eq!(t.partner("d1"), Some("d2"));
        assert_eq!(t.parents("a3"), vec!["a2"]);
    }

    #[test]
    fn both_switches_of_a_pair_down_isolate_everything_below() {
        let t = campus();
        let r = t.reach(&down(&["d1", "d2"]));
        assert_eq!(t.shadowed_by("a1", &r), Some("d1"));
        assert_eq!(t.shadowed_by("a3", &r), Some("d1"));
        let i = t.impact(&["d1", "d2"], &r);
        assert_eq!(i.isolated, vec!["a1", "a2", "a3"]);
        assert!(i.degraded.is_empty());
    }

    #[test]
    fn a_core_down_is_carried_by_the_other() {
        let t = campus();
        let r = t.reach(&down(&["c1"]));
        for d in ["d1", "d2", "a1", "a3"] {
            assert_eq!(t.shadowed_by(d, &r), None, "{d}");
        }
        let i = t.impact(&["c1"], &r);
        assert_eq!(i.degraded, vec!["d1", "d2"]);
        let r = t.reach(&down(&["c1", "c2", "d1"]));
        assert_eq!(t.shadowed_by("d1", &r), Some("c1"));
        assert_eq!(t.shadowed_by("a2", &r), Some("c1"));
    }

    #[test]
    fn lldp_links_name_ports_and_peers() {
        let mut inv = inventory(&[("c1", &[]), ("a1", &[])]);
        inv.devices.get_mut("c1").unwrap().role = Some(DeviceRole::Core);
        inv.devices.get_mut("a1").unwrap().role = Some(DeviceRole::Access);
        let mut learned = Learned::default();
        let nb = Neighbour {
            if_index: Some(49),
            local_port: "Te1/1/1".into(),
            chassis_id: "02:00:00:00:00:01".into(),
            chassis_subtype: "mac".into(),
            port_id: "Ethernet3".into(),
            port_subtype: "interface_name".into(),
            port_descr: None,
            sys_name: Some("c1.campus.example".into()),
        };
        learned.lldp.insert(
            "a1".into(),
            [(
                nb.local_port.clone(),
                LearnedNeighbour {
                    neighbour: nb,
                    seen: Utc::now(),
                    present: true,
                },
            )]
            .into(),
        );
        let t = Topology::build(&inv, &learned);
        assert_eq!(t.peer_of_port("a1", "Te1/1/1"), Some("c1"));
        assert_eq!(t.peer_of_port("c1", "Ethernet3"), Some("a1"));
        assert_eq!(t.links().len(), 1);
        assert_eq!(t.links()[0].sources, [LinkSource::Lldp].into());
        assert!(t.is_shadowed("a1", &t.reach(&down(&["c1"]))));
    }

    /// Brute force: a device is shadowed iff it is not a top, some path joins it to a top at
    /// all, and no path joins it to an up top through up devices only.
    fn reference(
        n: usize,
        edges: &[(usize, usize)],
        top: &[bool],
        is_down: &[bool],
        x: usize,
    ) -> bool {
        let adj = |a: usize| {
            edges
                .iter()
                .filter_map(move |&(p, q)| match (p == a, q == a) {
                    (true, _) => Some(q),
                    (_, true) => Some(p),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let search = |through_down: bool| {
            let mut seen = vec![false; n];
            let mut stack = vec![x];
            seen[x] = true;
            while let Some(at) = stack.pop() {
                if at != x && top[at] && (through_down || !is_down[at]) {
                    return true;
                }
                if at == x && top[at] {
                    return true;
                }
                for nb in adj(at) {
                    if !seen[nb] && (through_down || !is_down[nb]) {
                        seen[nb] = true;
                        stack.push(nb);
                    }
                }
            }
            false
        };
        !top[x] && search(true) && !search(false)
    }

    proptest! {
        #[test]
        fn shadowed_iff_no_path_to_a_core_avoids_down_devices(
            n in 2usize..12,
            raw_edges in prop::collection::vec((0usize..12, 0usize..12), 0..30),
            cores in prop::collection::vec(any::<bool>(), 12),
            downs in prop::collection::vec(any::<bool>(), 12),
        ) {
            let edges: Vec<(usize, usize)> = raw_edges
                .into_iter()
                .map(|(a, b)| (a % n, b % n))
                .filter(|(a, b)| a != b)
                .collect();
            let name = |i: usize| format!("n{i:02}");
            let mut inv = Inventory::default();
            for (i, core) in cores.iter().enumerate().take(n) {
                let ups: Vec<String> = edges
                    .iter()
                    .filter(|(a, _)| *a == i)
                    .map(|(_, b)| name(*b))
                    .collect();
                inv.devices.insert(name(i), InventoryDevice {
                    role: Some(if *core { DeviceRole::Core } else { DeviceRole::Access }),
                    uplinks: ups,
                    ..Default::default()
                });
            }
            let t = Topology::build(&inv, &Learned::default());
            // With at least one core in a part, the cores are its tops.
            let top: Vec<bool> = (0..n).map(|i| t.is_top(&name(i))).collect();
            let is_down: Vec<bool> = (0..n).map(|i| downs[i]).collect();
            let d: HashSet<String> = (0..n).filter(|&i| is_down[i]).map(name).collect();
            let reach = t.reach(&d);
            for x in 0..n {
                let want = reference(n, &edges, &top, &is_down, x);
                prop_assert_eq!(t.is_shadowed(&name(x), &reach), want, "n{:02}", x);
                let by = t.shadowed_by(&name(x), &reach);
                prop_assert_eq!(by.is_some(), want);
                if let Some(b) = by {
                    prop_assert!(d.contains(b), "shadowed by {} which is up", b);
                }
            }
        }
    }
}
