#![allow(clippy::unwrap_used)]
use std::collections::BTreeMap;

use super::*;
use crate::config::InventoryDevice;
use cnaas_shared::Source;

/// An in-memory store transaction: what the engine did, to assert on.
#[derive(Default)]
struct Fake {
    /// (incident, event id) of every event linked to an incident.
    linked: Vec<(i64, String)>,
    pending: std::collections::BTreeSet<String>,
    next: i64,
    incidents: BTreeMap<i64, FakeIncident>,
}

#[derive(Debug, Clone)]
struct FakeIncident {
    opened_at: DateTime<Utc>,
    in_maintenance: bool,
    key: String,
    state: &'static str,
    escalated: bool,
    history: Vec<(String, String)>,
    members: BTreeMap<String, (Relation, bool)>,
    transitions: Option<u32>,
    severity: u8,
    summary: String,
    impact: Option<crate::store::IncidentImpact>,
}

impl IncidentTx for Fake {
    fn device_owner(&mut self, _device: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    fn pin_owner(&mut self, _d: &str, _a: &str, _at: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(())
    }
    fn insert_event(
        &mut self,
        _e: &Event,
        _r: Option<PortRole>,
        _at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn open(&mut self, new: &NewIncident, at: DateTime<Utc>) -> Result<i64, StoreError> {
        self.next += 1;
        let mut members = BTreeMap::new();
        members.insert(new.key.clone(), (Relation::Root, true));
        self.incidents.insert(
            self.next,
            FakeIncident {
                opened_at: at,
                in_maintenance: false,
                key: new.key.clone(),
                state: "open",
                escalated: false,
                history: Vec::new(),
                members,
                transitions: None,
                severity: new.severity,
                summary: new.summary.clone(),
                impact: None,
            },
        );
        Ok(self.next)
    }
    fn add_member(
        &mut self,
        incident: i64,
        alarm: &str,
        relation: Relation,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let i = self.incidents.get_mut(&incident).unwrap();
        let rel = i.members.get(alarm).map_or(relation, |m| m.0);
        i.members.insert(alarm.to_owned(), (rel, true));
        Ok(())
    }
    fn clear_member(
        &mut self,
        incident: i64,
        alarm: &str,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(m) = self
            .incidents
            .get_mut(&incident)
            .unwrap()
            .members
            .get_mut(alarm)
        {
            m.1 = false;
        }
        Ok(())
    }
    fn note(
        &mut self,
        i: i64,
        _at: DateTime<Utc>,
        a: &str,
        e: Option<&str>,
        d: &str,
    ) -> Result<(), StoreError> {
        if let Some(e) = e {
            self.linked.push((i, e.to_owned()));
        }
        // Impact judgements only; the other automatic lines are not what the tests follow.
        if let Some(inc) = self
            .incidents
            .get_mut(&i)
            .filter(|_| a == "worsened" || a == "impact")
        {
            inc.history.push((a.to_owned(), d.to_owned()));
        }
        Ok(())
    }
    fn resolve(&mut self, incident: i64, _at: DateTime<Utc>) -> Result<(), StoreError> {
        self.incidents.get_mut(&incident).unwrap().state = "resolved";
        Ok(())
    }
    fn reopen(&mut self, incident: i64, _at: DateTime<Utc>) -> Result<(), StoreError> {
        self.incidents.get_mut(&incident).unwrap().state = "open";
        Ok(())
    }
    fn extend_first(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let i = self.incidents.get_mut(&incident).unwrap();
        i.opened_at = i.opened_at.min(at);
        Ok(())
    }
    fn merge(&mut self, incident: i64, into: i64, _at: DateTime<Utc>) -> Result<(), StoreError> {
        let i = self.incidents.get_mut(&incident).unwrap();
        i.state = "merged";
        i.history
            .push(("merged".into(), format!("merged into #{into}")));
        Ok(())
    }
    fn set_impact(
        &mut self,
        incident: i64,
        severity: u8,
        summary: &str,
        impact: &crate::store::IncidentImpact,
    ) -> Result<(), StoreError> {
        let i = self.incidents.get_mut(&incident).unwrap();
        i.severity = severity;
        i.summary = summary.to_owned();
        i.impact = Some(impact.clone());
        Ok(())
    }
    fn set_transitions(&mut self, incident: i64, transitions: u32) -> Result<(), StoreError> {
        self.incidents.get_mut(&incident).unwrap().transitions = Some(transitions);
        Ok(())
    }
    fn active_members(&mut self, incident: i64) -> Result<Vec<String>, StoreError> {
        Ok(self
            .incidents
            .get(&incident)
            .map(|i| {
                i.members
                    .iter()
                    .filter(|(_, (_, a))| *a)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default())
    }
    fn state(&mut self, incident: i64) -> Result<Option<(String, bool)>, StoreError> {
        Ok(self
            .incidents
            .get(&incident)
            .map(|i| (i.state.to_owned(), i.escalated)))
    }
    fn set_state(
        &mut self,
        incident: i64,
        state: &str,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.incidents.get_mut(&incident).unwrap().state = match state {
            "acknowledged" => "acknowledged",
            "closed" => "closed",
            _ => "open",
        };
        Ok(())
    }
    fn set_pending(&mut self, alarm: &str, _since: DateTime<Utc>) -> Result<(), StoreError> {
        self.pending.insert(alarm.to_owned());
        Ok(())
    }
    fn clear_pending(&mut self, alarm: &str) -> Result<(), StoreError> {
        self.pending.remove(alarm);
        Ok(())
    }
    fn set_in_maintenance(&mut self, incident: i64, on: bool) -> Result<(), StoreError> {
        self.incidents.get_mut(&incident).unwrap().in_maintenance = on;
        Ok(())
    }
    fn set_escalated(&mut self, incident: i64, _at: DateTime<Utc>) -> Result<(), StoreError> {
        self.incidents.get_mut(&incident).unwrap().escalated = true;
        Ok(())
    }
    fn outbox(&mut self) -> Option<&mut dyn crate::store::OutboxTx> {
        // The correlator never writes notifications itself; the engine does, after it.
        None
    }
    fn note_by(
        &mut self,
        incident: i64,
        _at: DateTime<Utc>,
        action: &str,
        actor: &str,
        _d: &str,
    ) -> Result<(), StoreError> {
        self.incidents
            .get_mut(&incident)
            .unwrap()
            .history
            .push((action.to_owned(), actor.to_owned()));
        Ok(())
    }
}

impl Fake {
    fn open(&self) -> Vec<&FakeIncident> {
        self.incidents
            .values()
            .filter(|i| i.state == "open")
            .collect()
    }
}

/// The tests give each event's time as `now`: the event is observed then too.
trait On {
    fn on(
        &mut self,
        e: &Event,
        role: Option<PortRole>,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError>;
}

impl On for Correlator {
    fn on(
        &mut self,
        e: &Event,
        role: Option<PortRole>,
        now: DateTime<Utc>,
        tx: &mut dyn IncidentTx,
    ) -> Result<(), StoreError> {
        let mut e = e.clone();
        e.observed_at = now;
        self.on_event(&e, role, now, tx)
    }
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

/// core <- dist <- a1..a5, all in site b12; x9 elsewhere.
fn inventory() -> Arc<Inventory> {
    let mut inv = Inventory::default();
    let mut add = |name: &str, up: Option<&str>, site: &str| {
        inv.devices.insert(
            name.into(),
            InventoryDevice {
                uplinks: up.map(Into::into).into_iter().collect(),
                site: Some(site.into()),
                customer: Some("uni".into()),
                ..Default::default()
            },
        );
    };
    add("core", None, "b1");
    add("dist", Some("core"), "b12");
    for n in 1..=5 {
        add(&format!("a{n}"), Some("dist"), "b12");
    }
    add("x9", None, "b99");
    Arc::new(inv)
}

fn rules(link_hold: i64) -> Rules {
    Rules {
        link_hold: TimeDelta::seconds(link_hold),
        ..Rules::default()
    }
}

fn device(kind: EventKind, name: &str) -> Event {
    Event::new("site", name, kind, Source::Poll)
}

fn port(kind: EventKind, name: &str, i: u32) -> Event {
    let mut e = Event::new("site", name, kind, Source::Poll);
    e.if_index = Some(i);
    e.if_name = Some(format!("Te1/1/{i}"));
    e
}

const UP: Option<PortRole> = Some(PortRole::Uplink);

#[test]
fn a_dead_distribution_switch_is_one_incident_with_its_access_switches_shadowed() {
    for order in [true, false] {
        let mut c = Correlator::new(rules(60), inventory());
        let mut tx = Fake::default();
        // The access switches may be declared down before or after their distribution switch.
        let mut names: Vec<String> = (1..=5).map(|n| format!("a{n}")).collect();
        if order {
            names.insert(0, "dist".into());
        } else {
            names.push("dist".into());
        }
        for (k, n) in names.iter().enumerate() {
            c.on(
                &device(EventKind::DeviceUnreachable, n),
                None,
                t(i64::try_from(k).unwrap()),
                &mut tx,
            )
            .unwrap();
        }
        let open = tx.open();
        assert_eq!(open.len(), 1, "dist first: {order}: {open:#?}");
        let inc = open[0];
        assert_eq!(inc.key, "dist||device_down");
        let shadowed = inc
            .members
            .values()
            .filter(|(r, a)| *r == Relation::Shadowed && *a)
            .count();
        assert_eq!(shadowed, 5, "{inc:#?}");
        // Everything comes back: resolved.
        for (k, n) in names.iter().enumerate() {
            c.on(
                &device(EventKind::DeviceReachable, n),
                None,
                t(100 + i64::try_from(k).unwrap()),
                &mut tx,
            )
            .unwrap();
        }
        assert!(tx.open().is_empty());
        assert_eq!(c.open_incidents(), 0);
    }
}

#[test]
fn quarantine_and_flapping_for_a_watched_port() {
    let mut c = Correlator::new(rules(60), inventory());
    let mut tx = Fake::default();
    // Down for 30 s: transient.
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(0), &mut tx)
        .unwrap();
    c.tick(t(20), &mut tx).unwrap();
    c.on(&port(EventKind::LinkUp, "x9", 49), UP, t(30), &mut tx)
        .unwrap();
    c.tick(t(100), &mut tx).unwrap();
    assert!(tx.incidents.is_empty());
    // Down for good: an incident after the hold time.
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(1000), &mut tx)
        .unwrap();
    c.tick(t(1059), &mut tx).unwrap();
    assert!(tx.incidents.is_empty());
    c.tick(t(1060), &mut tx).unwrap();
    assert_eq!(tx.open().len(), 1);
    c.on(&port(EventKind::LinkUp, "x9", 49), UP, t(1100), &mut tx)
        .unwrap();
    assert!(tx.open().is_empty());
    // Ten flaps in a minute: one port_flapping incident with the running count.
    let mut c = Correlator::new(rules(60), inventory());
    let mut tx = Fake::default();
    for n in 0..10 {
        c.on(
            &port(EventKind::LinkDown, "x9", 49),
            UP,
            t(2000 + n * 6),
            &mut tx,
        )
        .unwrap();
        c.on(
            &port(EventKind::LinkUp, "x9", 49),
            UP,
            t(2003 + n * 6),
            &mut tx,
        )
        .unwrap();
        c.tick(t(2004 + n * 6), &mut tx).unwrap();
    }
    let open = tx.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].key, "x9|49|port_flapping");
    assert_eq!(open[0].transitions, Some(20));
    assert_eq!(
        tx.incidents.len(),
        1,
        "no link_down incident while it flaps"
    );
}

#[test]
fn an_access_ports_are_not_watched_and_the_device_takes_in_its_ports() {
    let mut c = Correlator::new(rules(0), inventory());
    let mut tx = Fake::default();
    c.on(
        &port(EventKind::LinkDown, "x9", 3),
        Some(PortRole::Access),
        t(0),
        &mut tx,
    )
    .unwrap();
    assert!(tx.incidents.is_empty());
    // The uplink goes first (zero hold: at once), then the whole device.
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(0), &mut tx)
        .unwrap();
    assert_eq!(tx.open().len(), 1);
    c.on(
        &device(EventKind::DeviceUnreachable, "x9"),
        None,
        t(30),
        &mut tx,
    )
    .unwrap();
    let open = tx.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].key, "x9||device_down");
    assert_eq!(
        open[0].members.get("x9|49|link_down"),
        Some(&(Relation::Member, true))
    );
}

#[test]
fn a_storm_on_one_site_is_one_incident_and_reopening_reuses_it() {
    let mut c = Correlator::new(rules(0), inventory());
    let mut tx = Fake::default();
    for (k, n) in ["a1", "a2", "a3"].iter().enumerate() {
        for i in 1..=10 {
            c.on(
                &port(EventKind::LinkDown, n, i),
                Some(PortRole::Downlink),
                t(i64::try_from(k).unwrap()),
                &mut tx,
            )
            .unwrap();
        }
    }
    let open = tx.open();
    assert_eq!(open.len(), 1, "one site, one window: {open:#?}");
    assert_eq!(open[0].members.len(), 30);
    // Later, outside the window: a new incident.
    c.on(
        &port(EventKind::LinkDown, "a4", 1),
        Some(PortRole::Downlink),
        t(60),
        &mut tx,
    )
    .unwrap();
    assert_eq!(tx.open().len(), 2);
    // Everything of the first clears: resolved; it breaks again a minute later: re-opened.
    for n in ["a1", "a2", "a3"] {
        for i in 1..=10 {
            c.on(
                &port(EventKind::LinkUp, n, i),
                Some(PortRole::Downlink),
                t(70),
                &mut tx,
            )
            .unwrap();
        }
    }
    assert_eq!(tx.open().len(), 1);
    c.on(
        &port(EventKind::LinkDown, "a4", 1),
        Some(PortRole::Downlink),
        t(71),
        &mut tx,
    )
    .unwrap();
    c.on(
        &port(EventKind::LinkUp, "a4", 1),
        Some(PortRole::Downlink),
        t(72),
        &mut tx,
    )
    .unwrap();
    c.on(
        &port(EventKind::LinkDown, "a1", 1),
        Some(PortRole::Downlink),
        t(130),
        &mut tx,
    )
    .unwrap();
    assert_eq!(tx.incidents.len(), 2, "re-opened, not a third incident");
}

#[test]
fn restart_continues_open_incidents() {
    let mut c = Correlator::new(rules(0), inventory());
    let mut tx = Fake::default();
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(0), &mut tx)
        .unwrap();
    let (&id, inc) = tx.incidents.iter().next().unwrap();
    let members: Vec<OpenMember> = inc
        .members
        .iter()
        .map(|(k, (_, active))| OpenMember {
            incident: id,
            alarm: k.clone(),
            active: *active,
            device: "x9".into(),
            site: Some("b99".into()),
            opened_at: t(0),
            transitions: None,
            in_maintenance: inc.in_maintenance,
            root: inc.key.clone(),
        })
        .collect();
    // A new engine after a restart learns the open incident from the store ...
    let mut c2 = Correlator::new(rules(0), inventory());
    c2.restore(&members, t(50));
    assert_eq!(c2.open_incidents(), 1);
    // ... so the recovery resolves it.
    c2.on(&port(EventKind::LinkUp, "x9", 49), UP, t(60), &mut tx)
        .unwrap();
    assert!(tx.open().is_empty());
}

#[test]
fn the_life_cycle_of_an_incident() {
    let mut c = Correlator::new(rules(0), inventory());
    let mut tx = Fake::default();
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(0), &mut tx)
        .unwrap();
    let id = *tx.incidents.keys().next().unwrap();
    let cmd = |c: &mut Correlator, tx: &mut Fake, a: Action, text: Option<&str>| {
        c.command(id, a, "desk", text, t(10), tx)
    };
    // Close needs a resolved incident; a comment needs text.
    assert!(matches!(
        cmd(&mut c, &mut tx, Action::Close, None),
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(
        cmd(&mut c, &mut tx, Action::Comment, Some("  ")),
        Err(CommandError::Invalid(_))
    ));
    cmd(&mut c, &mut tx, Action::Ack, None).unwrap();
    assert!(matches!(
        cmd(&mut c, &mut tx, Action::Ack, None),
        Err(CommandError::Conflict(_))
    ));
    cmd(
        &mut c,
        &mut tx,
        Action::Escalate,
        Some("needs hands on site"),
    )
    .unwrap();
    assert!(matches!(
        cmd(&mut c, &mut tx, Action::Escalate, None),
        Err(CommandError::Conflict(_))
    ));
    cmd(
        &mut c,
        &mut tx,
        Action::Comment,
        Some("called the helpdesk"),
    )
    .unwrap();
    // The link is still down: resolving needs saying so explicitly.
    assert!(matches!(
        cmd(&mut c, &mut tx, Action::Resolve, None),
        Err(CommandError::Conflict(m)) if m.contains("x9|49|link_down")
    ));
    cmd(&mut c, &mut tx, Action::ForceResolve, None).unwrap();
    assert_eq!(c.open_incidents(), 0);
    assert!(matches!(
        cmd(&mut c, &mut tx, Action::Resolve, None),
        Err(CommandError::Conflict(_))
    ));
    cmd(&mut c, &mut tx, Action::Close, None).unwrap();
    let inc = &tx.incidents[&id];
    assert_eq!(inc.state, "closed");
    assert!(inc.escalated);
    let actions: Vec<&str> = inc.history.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["acknowledged", "escalated", "comment", "resolved", "closed"]
    );
    assert!(matches!(
        c.command(999, Action::Ack, "desk", None, t(11), &mut tx),
        Err(CommandError::NotFound(999))
    ));
    // The port is still down: after its hold time (zero here) a new incident opens, and
    // the port coming up resolves that one; the closed incident stays closed.
    c.tick(t(12), &mut tx).unwrap();
    let open: Vec<i64> = tx
        .incidents
        .iter()
        .filter(|(_, i)| i.state == "open")
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(open.len(), 1);
    assert_ne!(open[0], id);
    assert_eq!(tx.incidents[&open[0]].key, "x9|49|link_down");
    c.on(&port(EventKind::LinkUp, "x9", 49), UP, t(20), &mut tx)
        .unwrap();
    assert_eq!(tx.incidents[&id].state, "closed");
    assert_eq!(tx.incidents[&open[0]].state, "resolved");
}

#[test]
fn agent_offline_reboots_and_vlan_changes() {
    let mut c = Correlator::new(rules(0), inventory());
    let mut tx = Fake::default();
    // A probe that goes away is a blind spot, once; it comes back: resolved.
    c.agent_status("site-b12", "offline", t(0), &mut tx)
        .unwrap();
    c.agent_status("site-b12", "offline", t(1), &mut tx)
        .unwrap();
    assert_eq!(tx.open().len(), 1);
    assert_eq!(tx.open()[0].key, "site-b12||agent_offline");
    c.agent_status("site-b12", "online", t(2), &mut tx).unwrap();
    assert!(tx.open().is_empty());
    // A reboot is recorded, resolved at once.
    c.on(
        &device(EventKind::DeviceRebooted, "x9"),
        None,
        t(3),
        &mut tx,
    )
    .unwrap();
    assert_eq!(tx.incidents.len(), 2);
    assert!(tx.open().is_empty());
    // A VLAN change on an access port is only recorded; on an uplink it is an incident.
    let mut v = port(EventKind::VlanChanged, "x9", 5);
    v.attrs.insert("old".into(), serde_json::json!(10));
    v.attrs.insert("new".into(), serde_json::json!(20));
    c.on(&v, Some(PortRole::Access), t(4), &mut tx).unwrap();
    assert_eq!(tx.incidents.len(), 2);
    let mut v = port(EventKind::VlanChanged, "x9", 49);
    v.attrs.insert("old".into(), serde_json::json!(1));
    v.attrs.insert("new".into(), serde_json::json!(99));
    c.on(&v, UP, t(5), &mut tx).unwrap();
    let open = tx.open();
    assert_eq!(open.len(), 1);
    assert!(open[0].key.starts_with("x9|49|vlan_changed"));
}

#[test]
fn maintenance_flags_and_device_roles_set_severity() {
    struct Window;
    impl Maintenance for Window {
        fn in_window(&self, device: &str, now: DateTime<Utc>) -> bool {
            device == "x9" && now < t(100)
        }
    }
    let mut c = Correlator::new(rules(0), inventory()).with_maintenance(Box::new(Window));
    let mut tx = Fake::default();
    c.on(
        &device(EventKind::DeviceUnreachable, "x9"),
        None,
        t(0),
        &mut tx,
    )
    .unwrap();
    assert!(tx.incidents.values().all(|i| i.in_maintenance));
    c.on(
        &device(EventKind::DeviceReachable, "x9"),
        None,
        t(1),
        &mut tx,
    )
    .unwrap();
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(500), &mut tx)
        .unwrap();
    assert_eq!(tx.open().len(), 1);
    assert!(!tx.open()[0].in_maintenance, "after the window");
}

#[test]
fn a_quarantined_alarm_survives_a_restart() {
    let mut c = Correlator::new(rules(60), inventory());
    let mut tx = Fake::default();
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(0), &mut tx)
        .unwrap();
    assert!(tx.pending.contains("x9|49|link_down"));
    // Restart at t=30: the new engine learns the pending alarm and activates it on time.
    let mut c2 = Correlator::new(rules(60), inventory());
    c2.restore_pending(&[("x9|49|link_down".to_owned(), t(0))]);
    c2.tick(t(59), &mut tx).unwrap();
    assert!(tx.incidents.is_empty());
    c2.tick(t(60), &mut tx).unwrap();
    assert_eq!(tx.open().len(), 1);
    assert!(tx.pending.is_empty());
}

proptest::proptest! {
    /// Any sequence of downs, ups and clock ticks for one watched port: at most one incident is
    /// open, a `link_down` incident is open only while the last event was a down (and not while
    /// it flaps), and when the last event was an up with the port not flapping, nothing is open.
    #[test]
    fn the_incident_state_follows_the_last_event(steps in proptest::collection::vec((proptest::bool::ANY, 0i64..90), 1..60)) {
        let mut c = Correlator::new(rules(60), inventory());
        let mut tx = Fake::default();
        let mut now = 0;
        let mut flapping_seen = false;
        for (down, gap) in steps {
            now += gap;
            let kind = if down { EventKind::LinkDown } else { EventKind::LinkUp };
            c.on(&port(kind, "x9", 49), UP, t(now), &mut tx).unwrap();
            c.tick(t(now + 1), &mut tx).unwrap();
            let open = tx.open();
            proptest::prop_assert!(open.len() <= 1, "{open:#?}");
            flapping_seen |= open.iter().any(|i| i.key.ends_with("port_flapping"));
            if let Some(i) = open.first()
                && i.key.ends_with("link_down")
            {
                proptest::prop_assert!(down, "a link_down incident open after an up");
            }
            if !down && !flapping_seen {
                proptest::prop_assert!(open.is_empty(), "{open:#?}");
            }
        }
    }
}

#[test]
fn a_fault_outlasting_overlapping_windows_leaves_maintenance_when_the_last_one_ends() {
    // Two changes on x9: [0, 100) and [50, 200). The first ending must not end the second.
    struct Windows(Vec<(i64, i64)>);
    impl Maintenance for Windows {
        fn in_window(&self, device: &str, now: DateTime<Utc>) -> bool {
            device == "x9" && self.0.iter().any(|(a, b)| t(*a) <= now && now < t(*b))
        }
    }
    let mut c = Correlator::new(rules(0), inventory())
        .with_maintenance(Box::new(Windows(vec![(0, 100), (50, 200)])));
    let mut tx = Fake::default();
    c.on(
        &device(EventKind::DeviceUnreachable, "x9"),
        None,
        t(10),
        &mut tx,
    )
    .unwrap();
    let flagged = |tx: &Fake| tx.open().first().is_some_and(|i| i.in_maintenance);
    assert!(flagged(&tx));
    c.tick(t(120), &mut tx).unwrap();
    assert!(flagged(&tx), "the second window is still active");
    c.tick(t(200), &mut tx).unwrap();
    assert!(
        !flagged(&tx),
        "both windows are over and the device is still down"
    );
    assert_eq!(
        tx.open().len(),
        1,
        "still one incident, now an ordinary one"
    );
    // A fault that clears inside its window never leaves it.
    let mut c =
        Correlator::new(rules(0), inventory()).with_maintenance(Box::new(Windows(vec![(0, 100)])));
    let mut tx = Fake::default();
    c.on(
        &device(EventKind::DeviceUnreachable, "x9"),
        None,
        t(10),
        &mut tx,
    )
    .unwrap();
    c.on(
        &device(EventKind::DeviceReachable, "x9"),
        None,
        t(20),
        &mut tx,
    )
    .unwrap();
    c.tick(t(150), &mut tx).unwrap();
    assert!(tx.open().is_empty());
    assert!(tx.incidents.values().all(|i| i.in_maintenance));
}

/// The window covers x9 while `now` is in [100, 200).
struct Window100;
impl Maintenance for Window100 {
    fn in_window(&self, device: &str, now: DateTime<Utc>) -> bool {
        device == "x9" && now >= t(100) && now < t(200)
    }
}

#[test]
fn a_reopen_goes_through_the_maintenance_check_both_ways() {
    let mut c = Correlator::new(rules(0), inventory()).with_maintenance(Box::new(Window100));
    let mut tx = Fake::default();
    // Opened and resolved before the window, re-opened inside it: flagged.
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(50), &mut tx)
        .unwrap();
    let id = *tx.incidents.keys().next().unwrap();
    assert!(!tx.incidents[&id].in_maintenance);
    c.on(&port(EventKind::LinkUp, "x9", 49), UP, t(90), &mut tx)
        .unwrap();
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(120), &mut tx)
        .unwrap();
    assert_eq!(tx.incidents.len(), 1, "re-opened, not a new one");
    assert_eq!(tx.incidents[&id].state, "open");
    assert!(tx.incidents[&id].in_maintenance, "re-opened in the window");
    // Resolved in the window, re-opened after it: no longer flagged.
    c.on(&port(EventKind::LinkUp, "x9", 49), UP, t(150), &mut tx)
        .unwrap();
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(250), &mut tx)
        .unwrap();
    assert_eq!(tx.incidents[&id].state, "open");
    assert!(
        !tx.incidents[&id].in_maintenance,
        "re-opened after the window"
    );
}

#[test]
fn a_link_incident_taken_in_by_its_device_is_merged_not_resolved() {
    let mut c = Correlator::new(rules(0), inventory());
    let mut tx = Fake::default();
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(0), &mut tx)
        .unwrap();
    let link = *tx.incidents.keys().next().unwrap();
    // Long after the grouping window the whole device dies.
    c.on(
        &device(EventKind::DeviceUnreachable, "x9"),
        None,
        t(60),
        &mut tx,
    )
    .unwrap();
    let dev = *tx.incidents.keys().last().unwrap();
    assert_ne!(dev, link);
    assert_eq!(tx.incidents[&link].state, "merged");
    assert_eq!(tx.incidents[&dev].state, "open");
    assert!(tx.incidents[&dev].members["x9|49|link_down"].1);
    // Only when everything is back does anything resolve.
    c.on(
        &device(EventKind::DeviceReachable, "x9"),
        None,
        t(90),
        &mut tx,
    )
    .unwrap();
    assert_eq!(tx.incidents[&dev].state, "open", "the link is still down");
    c.on(&port(EventKind::LinkUp, "x9", 49), UP, t(95), &mut tx)
        .unwrap();
    assert_eq!(tx.incidents[&dev].state, "resolved");
    assert_eq!(tx.incidents[&link].state, "merged");
}

#[test]
fn an_outage_replayed_late_is_judged_by_when_it_happened() {
    // Hold 10 s: down at 0, up at 30, both arrive at 100 (the probe could not reach the
    // broker). The outage lasted longer than the hold: an incident, opened and resolved.
    let mut c = Correlator::new(rules(10), inventory());
    let mut tx = Fake::default();
    let mut down = port(EventKind::LinkDown, "x9", 49);
    down.observed_at = t(0);
    let mut up = port(EventKind::LinkUp, "x9", 49);
    up.observed_at = t(30);
    c.on_event(&down, UP, t(100), &mut tx).unwrap();
    c.on_event(&up, UP, t(100), &mut tx).unwrap();
    assert_eq!(tx.incidents.len(), 1);
    let (id, inc) = tx.incidents.iter().next().unwrap();
    assert_eq!(inc.state, "resolved");
    assert_eq!(inc.opened_at, t(0), "first time is when the link went down");
    assert!(tx.linked.contains(&(*id, down.id.to_string())));
    // A 5 s outage replayed late stays transient.
    let mut c = Correlator::new(rules(10), inventory());
    let mut tx = Fake::default();
    down.observed_at = t(0);
    up.observed_at = t(5);
    c.on_event(&down, UP, t(100), &mut tx).unwrap();
    c.on_event(&up, UP, t(100), &mut tx).unwrap();
    assert!(tx.incidents.is_empty());
    // An older observation arriving after a newer one is stale and ignored.
    let mut late_down = port(EventKind::LinkDown, "x9", 49);
    late_down.observed_at = t(3);
    c.on_event(&late_down, UP, t(101), &mut tx).unwrap();
    c.tick(t(500), &mut tx).unwrap();
    assert!(tx.incidents.is_empty());
    assert_eq!(c.stale_events(), 1);
    // An event from the future is judged at the collector's time.
    assert_eq!(event_time(t(1000), t(100)), (t(100), true));
    assert_eq!(event_time(t(103), t(100)), (t(100), false));
    assert_eq!(event_time(t(40), t(100)), (t(40), false));
}

#[test]
fn the_event_that_began_a_held_fault_is_linked_to_its_incident() {
    let mut c = Correlator::new(rules(60), inventory());
    let mut tx = Fake::default();
    let down = port(EventKind::LinkDown, "x9", 49);
    c.on(&down, UP, t(0), &mut tx).unwrap();
    c.tick(t(60), &mut tx).unwrap();
    let (id, inc) = tx.incidents.iter().next().unwrap();
    assert_eq!(inc.opened_at, t(0));
    assert_eq!(tx.linked, [(*id, down.id.to_string())]);
}

#[test]
fn a_state_sync_clears_what_it_contradicts() {
    let mut c = Correlator::new(rules(0), inventory());
    let mut tx = Fake::default();
    c.on(&port(EventKind::LinkDown, "x9", 49), UP, t(0), &mut tx)
        .unwrap();
    c.on(&port(EventKind::LinkDown, "x9", 50), UP, t(0), &mut tx)
        .unwrap();
    assert_eq!(tx.open().len(), 1, "one storm group");
    // The agent restarts; port 49 came back while it was away, 50 is still down.
    let mut sync = device(EventKind::StateSync, "x9");
    cnaas_shared::StateSync {
        up: vec![1, 49],
        down: vec![50],
        disabled: vec![],
    }
    .write(&mut sync.attrs);
    c.on(&sync, None, t(100), &mut tx).unwrap();
    let open = tx.open();
    assert_eq!(open.len(), 1);
    assert!(!open[0].members["x9|49|link_down"].1);
    assert!(open[0].members["x9|50|link_down"].1);
    sync.id = uuid::Uuid::now_v7();
    cnaas_shared::StateSync {
        up: vec![1, 49, 50],
        down: vec![],
        disabled: vec![],
    }
    .write(&mut sync.attrs);
    c.on(&sync, None, t(200), &mut tx).unwrap();
    assert!(tx.open().is_empty());
}

#[test]
fn many_probes_offline_at_once_are_one_incident() {
    let mut c = Correlator::new(rules(0), inventory());
    let mut tx = Fake::default();
    for n in 0..100 {
        c.agent_status(&format!("probe{n}"), "offline", t(n / 20), &mut tx)
            .unwrap();
    }
    assert_eq!(tx.open().len(), 1);
    assert_eq!(tx.open()[0].members.len(), 100);
    for n in 0..100 {
        c.agent_status(&format!("probe{n}"), "online", t(30), &mut tx)
            .unwrap();
    }
    assert!(tx.open().is_empty());
    // One probe much later: its own incident.
    c.agent_status("probe7", "offline", t(1000), &mut tx)
        .unwrap();
    assert_eq!(tx.open().len(), 1);
    assert_eq!(tx.open()[0].members.len(), 1);
}

/// A CNaaS campus: cores c1, c2; the pair d1/d2 (each to both cores); access switches
/// e1..e4 with one uplink to each switch of the pair (Te1/1/1 to d1, Te1/1/2 to d2, LLDP),
/// customers by access switch.
fn campus() -> Correlator {
    let mut inv = Inventory::default();
    let mut add = |name: &str, role, ups: &[&str], pair: Option<&str>| {
        inv.devices.insert(
            name.into(),
            InventoryDevice {
                role: Some(role),
                uplinks: ups.iter().map(|s| (*s).to_owned()).collect(),
                pair: pair.map(str::to_owned),
                site: Some(format!("site-{name}")),
                customer: Some("uni".into()),
                ..Default::default()
            },
        );
    };
    add("c1", DeviceRole::Core, &[], None);
    add("c2", DeviceRole::Core, &[], None);
    add("d1", DeviceRole::Distribution, &["c1", "c2"], Some("d2"));
    add("d2", DeviceRole::Distribution, &["c1", "c2"], None);
    for n in 1..=4 {
        add(&format!("e{n}"), DeviceRole::Access, &[], None);
    }
    let mut c = Correlator::new(rules(0), Arc::new(inv));
    for n in 1..=4 {
        c.learn_neighbours(&lldp(&format!("e{n}"), &[(1, "d1"), (2, "d2")]), t(-100));
    }
    c
}

fn lldp(device: &str, links: &[(u32, &str)]) -> Event {
    let mut e = Event::new("site", device, EventKind::Neighbours, Source::Poll);
    let snap = cnaas_shared::Neighbours {
        neighbours: links
            .iter()
            .map(|(i, peer)| cnaas_shared::Neighbour {
                if_index: Some(*i),
                local_port: format!("Te1/1/{i}"),
                chassis_id: format!("chassis-{peer}"),
                chassis_subtype: "local".into(),
                // Each access switch on its own port of the distribution switch.
                port_id: format!("Ethernet{}", device.trim_start_matches('e')),
                port_subtype: "interface_name".into(),
                port_descr: None,
                sys_name: Some((*peer).to_owned()),
            })
            .collect(),
        bundles: Vec::new(),
    };
    snap.write(&mut e.attrs);
    e
}

fn open_ids(tx: &Fake) -> Vec<i64> {
    tx.incidents
        .iter()
        .filter(|(_, i)| i.state == "open")
        .map(|(id, _)| *id)
        .collect()
}

#[test]
fn one_switch_of_a_pair_down_is_one_redundancy_incident() {
    let mut c = campus();
    let mut tx = Fake::default();
    // d1 dies: every access switch loses its uplink towards it, and d1 stops answering.
    for n in 1..=4 {
        c.on(
            &port(EventKind::LinkDown, &format!("e{n}"), 1),
            UP,
            t(0),
            &mut tx,
        )
        .unwrap();
    }
    c.on(
        &device(EventKind::DeviceUnreachable, "d1"),
        None,
        t(3),
        &mut tx,
    )
    .unwrap();
    let open = open_ids(&tx);
    assert_eq!(open.len(), 1, "{:#?}", tx.incidents);
    let inc = &tx.incidents[&open[0]];
    assert_eq!(inc.key, "d1||device_down");
    assert_eq!(inc.severity, 3, "redundancy lost is not an outage");
    let impact = inc.impact.clone().unwrap();
    assert_eq!(impact.kind, "redundancy_lost");
    assert_eq!(impact.degraded, vec!["e1", "e2", "e3", "e4"]);
    assert!(impact.isolated.is_empty());
    assert!(
        inc.summary.contains("redundancy lost for 4"),
        "{}",
        inc.summary
    );
    // The access switches' uplink alarms are in it, and no device_down of theirs.
    for n in 1..=4 {
        assert_eq!(
            inc.members.get(&format!("e{n}|1|link_down")).map(|m| m.1),
            Some(true)
        );
    }
    // Its partner too: the same incident, now an outage with everything below cut off.
    for n in 1..=4 {
        c.on(
            &port(EventKind::LinkDown, &format!("e{n}"), 2),
            UP,
            t(20),
            &mut tx,
        )
        .unwrap();
    }
    c.on(
        &device(EventKind::DeviceUnreachable, "d2"),
        None,
        t(21),
        &mut tx,
    )
    .unwrap();
    for n in 1..=4 {
        c.on(
            &device(EventKind::DeviceUnreachable, &format!("e{n}")),
            None,
            t(22),
            &mut tx,
        )
        .unwrap();
    }
    let open = open_ids(&tx);
    assert_eq!(open.len(), 1, "{:#?}", tx.incidents);
    let inc = &tx.incidents[&open[0]];
    assert_eq!(inc.severity, 2, "an outage at distribution level");
    let impact = inc.impact.clone().unwrap();
    assert_eq!(impact.kind, "outage");
    assert_eq!(impact.down, vec!["d1", "d2"]);
    assert_eq!(impact.isolated, vec!["e1", "e2", "e3", "e4"]);
    assert!(
        inc.history.iter().any(|(a, _)| a == "worsened"),
        "{:?}",
        inc.history
    );
    for n in 1..=4 {
        assert_eq!(
            inc.members.get(&format!("e{n}||device_down")),
            Some(&(Relation::Shadowed, true))
        );
    }
    // d2 back: access switches answer, their d2 links come up; redundancy lost again.
    c.on(
        &device(EventKind::DeviceReachable, "d2"),
        None,
        t(60),
        &mut tx,
    )
    .unwrap();
    for n in 1..=4 {
        c.on(
            &device(EventKind::DeviceReachable, &format!("e{n}")),
            None,
            t(61),
            &mut tx,
        )
        .unwrap();
        c.on(
            &port(EventKind::LinkUp, &format!("e{n}"), 2),
            UP,
            t(61),
            &mut tx,
        )
        .unwrap();
    }
    let inc = &tx.incidents[&open[0]];
    assert_eq!(inc.state, "open");
    assert_eq!(inc.severity, 3);
    assert_eq!(inc.impact.as_ref().unwrap().kind, "redundancy_lost");
    // d1 back: everything resolves.
    c.on(
        &device(EventKind::DeviceReachable, "d1"),
        None,
        t(90),
        &mut tx,
    )
    .unwrap();
    for n in 1..=4 {
        c.on(
            &port(EventKind::LinkUp, &format!("e{n}"), 1),
            UP,
            t(91),
            &mut tx,
        )
        .unwrap();
    }
    assert!(open_ids(&tx).is_empty(), "{:#?}", tx.incidents);
}

#[test]
fn a_core_down_is_redundancy_lost_without_shadowing() {
    let mut c = campus();
    let mut tx = Fake::default();
    c.on(
        &device(EventKind::DeviceUnreachable, "c1"),
        None,
        t(0),
        &mut tx,
    )
    .unwrap();
    let open = open_ids(&tx);
    assert_eq!(open.len(), 1);
    let inc = &tx.incidents[&open[0]];
    assert_eq!(inc.severity, 3);
    assert_eq!(inc.impact.as_ref().unwrap().degraded, vec!["d1", "d2"]);
    // The other core as well: one outage incident, severity of a core.
    c.on(
        &device(EventKind::DeviceUnreachable, "c2"),
        None,
        t(30),
        &mut tx,
    )
    .unwrap();
    let open = open_ids(&tx);
    assert_eq!(open.len(), 1, "{:#?}", tx.incidents);
    let inc = &tx.incidents[&open[0]];
    assert_eq!(inc.severity, 1);
    assert_eq!(
        inc.impact.as_ref().unwrap().isolated,
        vec!["d1", "d2", "e1", "e2", "e3", "e4"]
    );
}

#[test]
fn a_bundle_member_down_is_redundancy_lost_on_the_bundle() {
    let mut c = campus();
    let mut tx = Fake::default();
    let mut e = port(EventKind::LinkDown, "e1", 2);
    e.attrs.insert(
        "bundle".into(),
        serde_json::json!({"if_index": 100, "name": "Po1", "members": 2}),
    );
    c.on(&e, UP, t(0), &mut tx).unwrap();
    let open = open_ids(&tx);
    assert_eq!(open.len(), 1);
    let inc = &tx.incidents[&open[0]];
    assert_eq!(inc.severity, 3);
    assert!(inc.summary.contains("bundle Po1"), "{}", inc.summary);
    assert!(inc.summary.contains("redundancy lost"), "{}", inc.summary);
}

#[test]
fn a_moved_cable_changes_the_topology_and_is_recorded_without_an_incident() {
    let mut c = campus();
    let mut tx = Fake::default();
    // e1's second uplink now goes to e2 instead of d2.
    c.on(&lldp("e1", &[(1, "d1"), (2, "e2")]), None, t(0), &mut tx)
        .unwrap();
    assert!(tx.incidents.is_empty());
    let changes = c.neighbour_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].port, "Te1/1/2");
    assert_eq!(changes[0].before.as_deref(), Some("d2 Ethernet1"));
    assert_eq!(changes[0].after.as_deref(), Some("e2 Ethernet1"));
    assert_eq!(topo(&mut c).peer_of_port("e1", "Te1/1/2"), Some("e2"));
    // The link of Te1/1/2 going down hides the neighbour; the cable stays known.
    c.on(&lldp("e1", &[(1, "d1")]), None, t(1), &mut tx)
        .unwrap();
    assert_eq!(c.neighbour_changes().len(), 1);
    assert_eq!(topo(&mut c).peer_of_port("e1", "Te1/1/2"), Some("e2"));
    // An older snapshot arriving late changes nothing.
    let mut old = lldp("e1", &[(1, "d1"), (2, "d2")]);
    old.observed_at = t(-50);
    c.on_event(&old, None, t(2), &mut tx).unwrap();
    assert_eq!(topo(&mut c).peer_of_port("e1", "Te1/1/2"), Some("e2"));
    // d2 still remembers e1 on its port (seen before the move): the newer claim wins, so
    // d2's port lost its cable to a move, and its link going down is no incident.
    let mut d2 = Event::new("site", "d2", EventKind::Neighbours, Source::Poll);
    cnaas_shared::Neighbours {
        neighbours: vec![cnaas_shared::Neighbour {
            if_index: Some(5),
            local_port: "Ethernet1".into(),
            chassis_id: "chassis-e1".into(),
            chassis_subtype: "local".into(),
            port_id: "Te1/1/2".into(),
            port_subtype: "interface_name".into(),
            port_descr: None,
            sys_name: Some("e1".into()),
        }],
        bundles: Vec::new(),
    }
    .write(&mut d2.attrs);
    d2.observed_at = t(-10);
    c.on_event(&d2, None, t(3), &mut tx).unwrap();
    assert_eq!(topo(&mut c).peer_of_port("d2", "Ethernet1"), None);
    let mut down = port(EventKind::LinkDown, "d2", 5);
    down.if_name = Some("Ethernet1".into());
    c.on(&down, Some(PortRole::Downlink), t(4), &mut tx)
        .unwrap();
    c.tick(t(10), &mut tx).unwrap();
    assert!(tx.incidents.is_empty(), "{:#?}", tx.incidents);
}

#[test]
fn a_neighbour_hidden_by_a_link_down_and_back_is_no_change() {
    let mut c = campus();
    let mut tx = Fake::default();
    c.on(&lldp("e1", &[(2, "d2")]), None, t(0), &mut tx)
        .unwrap();
    assert_eq!(topo(&mut c).peer_of_port("e1", "Te1/1/1"), Some("d1"));
    c.on(&lldp("e1", &[(1, "d1"), (2, "d2")]), None, t(5), &mut tx)
        .unwrap();
    assert!(
        c.neighbour_changes().is_empty(),
        "{:?}",
        c.neighbour_changes()
    );
}

#[test]
fn access_switches_lost_before_the_second_of_the_pair_join_the_pair_incident() {
    let mut c = campus();
    let mut tx = Fake::default();
    c.on(
        &device(EventKind::DeviceUnreachable, "d1"),
        None,
        t(0),
        &mut tx,
    )
    .unwrap();
    // The access switches stop answering a moment before d2 is declared down: for that
    // moment they are not behind anything and open an incident of their own.
    for n in 1..=4 {
        c.on(
            &device(EventKind::DeviceUnreachable, &format!("e{n}")),
            None,
            t(30),
            &mut tx,
        )
        .unwrap();
    }
    c.on(
        &device(EventKind::DeviceUnreachable, "d2"),
        None,
        t(31),
        &mut tx,
    )
    .unwrap();
    let open = open_ids(&tx);
    assert_eq!(open.len(), 1, "{:#?}", tx.incidents);
    let inc = &tx.incidents[&open[0]];
    assert_eq!(inc.key, "d1||device_down");
    assert_eq!(
        inc.impact.as_ref().unwrap().isolated,
        vec!["e1", "e2", "e3", "e4"]
    );
    for n in 1..=4 {
        assert_eq!(
            inc.members.get(&format!("e{n}||device_down")),
            Some(&(Relation::Shadowed, true))
        );
    }
}

#[test]
fn both_ends_of_one_cable_are_one_incident() {
    let mut c = campus();
    let mut tx = Fake::default();
    let mut far = port(EventKind::LinkDown, "d2", 5);
    far.if_name = Some("Ethernet1".into());
    c.on(&far, Some(PortRole::Downlink), t(0), &mut tx).unwrap();
    c.on(&port(EventKind::LinkDown, "e1", 2), UP, t(30), &mut tx)
        .unwrap();
    let open = open_ids(&tx);
    assert_eq!(open.len(), 1, "{:#?}", tx.incidents);
    assert!(
        tx.incidents[&open[0]]
            .members
            .contains_key("e1|2|link_down")
    );
}

fn topo(c: &mut Correlator) -> Arc<super::super::topology::Topology> {
    c.settle_topology();
    c.topology()
}

#[test]
fn recovery_names_only_the_causes() {
    let mut c = campus();
    let mut tx = Fake::default();
    c.on(
        &device(EventKind::DeviceUnreachable, "d1"),
        None,
        t(0),
        &mut tx,
    )
    .unwrap();
    c.on(
        &device(EventKind::DeviceUnreachable, "d2"),
        None,
        t(10),
        &mut tx,
    )
    .unwrap();
    for n in 1..=4 {
        c.on(
            &device(EventKind::DeviceUnreachable, &format!("e{n}")),
            None,
            t(11),
            &mut tx,
        )
        .unwrap();
    }
    // d2 answers before the access switches do: they are no longer behind anything, but
    // they are not the incident's cause.
    c.on(
        &device(EventKind::DeviceReachable, "d2"),
        None,
        t(60),
        &mut tx,
    )
    .unwrap();
    let open = open_ids(&tx);
    let inc = &tx.incidents[&open[0]];
    assert!(
        inc.summary.starts_with("Device d1 does not answer"),
        "{}",
        inc.summary
    );
    // The access switches answer again: redundancy lost, severity 3.
    for n in 1..=4 {
        c.on(
            &device(EventKind::DeviceReachable, &format!("e{n}")),
            None,
            t(61),
            &mut tx,
        )
        .unwrap();
    }
    let inc = &tx.incidents[&open[0]];
    assert_eq!(inc.severity, 3, "{}", inc.summary);
    assert!(
        inc.summary.contains("redundancy lost for 4"),
        "{}",
        inc.summary
    );
}
