//! Topology shadow (NAV's boxShadow): a device whose path towards the core (its `uplink`
//! chain in the inventory) passes through a device that is down is *shadowed*: it is part of
//! that device's incident, not an incident of its own. With incomplete topology (a device or an
//! uplink missing from the inventory) the answer is "not shadowed", so the device falls back to
//! a plain `device_down` (NAV #889: never hide a fault behind a guess).

use std::collections::HashSet;

use crate::config::Inventory;

/// The down device that shadows `device`: the one closest to the core among the down devices
/// on its known uplink chain (so a dead core switch takes in everything below it). `None` when
/// no device above it is known to be down: nothing down, the chain breaks (a device missing
/// from the inventory) before a down device, or the inventory loops (refused by
/// `check-config`, guarded here anyway).
pub fn shadowed_by<'a>(
    device: &str,
    inventory: &'a Inventory,
    down: &HashSet<String>,
) -> Option<&'a str> {
    let mut shadow = None;
    let mut seen = HashSet::new();
    let mut at = inventory.devices.get(device)?.uplink.as_deref();
    while let Some(name) = at {
        if !seen.insert(name) {
            return None;
        }
        // The chain is known up to here: a down device below the gap still shadows.
        let Some((key, entry)) = inventory.devices.get_key_value(name) else {
            return shadow;
        };
        if down.contains(name) {
            shadow = Some(key.as_str());
        }
        at = entry.uplink.as_deref();
    }
    shadow
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InventoryDevice;

    fn inventory(links: &[(&str, Option<&str>)]) -> Inventory {
        let mut inv = Inventory::default();
        for (name, up) in links {
            inv.devices.insert(
                (*name).to_owned(),
                InventoryDevice {
                    uplink: up.map(str::to_owned),
                    ..Default::default()
                },
            );
        }
        inv
    }

    fn down(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn table() {
        let inv = inventory(&[
            ("core", None),
            ("dist", Some("core")),
            ("a1", Some("dist")),
            ("a2", Some("dist")),
            ("orphan", Some("missing")),
            ("below-orphan", Some("orphan")),
        ]);
        let cases: [(&str, &[&str], Option<&str>); 8] = [
            ("a1", &["dist", "a1"], Some("dist")),
            ("a1", &["a1"], None),
            ("a1", &["core", "dist", "a1"], Some("core")),
            ("dist", &["core", "dist"], Some("core")),
            ("core", &["core"], None),
            ("orphan", &["orphan"], None),
            ("below-orphan", &["orphan", "below-orphan"], Some("orphan")),
            ("not-in-inventory", &["core"], None),
        ];
        for (device, d, want) in cases {
            assert_eq!(
                shadowed_by(device, &inv, &down(d)),
                want,
                "{device} with {d:?} down"
            );
        }
    }

    #[test]
    fn an_incomplete_chain_is_not_guessed_through() {
        // x -> y, but y is not in the inventory: even if something above were down, the
        // path is unknown, so x stands on its own.
        let inv = inventory(&[("x", Some("y")), ("top", None)]);
        assert_eq!(shadowed_by("x", &inv, &down(&["y", "top"])), None);
    }

    #[test]
    fn loops_end() {
        let inv = inventory(&[("p", Some("q")), ("q", Some("p"))]);
        assert_eq!(shadowed_by("p", &inv, &down(&["q"])), None);
    }
}
