//! The dashboard's HTML, as pure functions of what the store returned (maud escapes every
//! value). A page has a live part, `<main id="live" data-src=...>`, which the browser fetches
//! again (`?partial=1`) when the server says something changed; forms sit outside it, so a
//! half-written comment survives an update.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, html};

use crate::api::{Principal, Role};
use crate::changes::{Change, ChangeKind, ChangeState};
use crate::store::{Incident, IncidentDetail, Notification};

/// The service centre's time zone: every time on the dashboard is shown in it.
pub const ZONE: Tz = chrono_tz::Europe::Oslo;

/// Who looks at the page.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// `None` without a tokens file (anonymous, read-only).
    pub principal: Option<Principal>,
    /// The session's form token (empty when anonymous).
    pub csrf: String,
}

impl Viewer {
    /// Whether the viewer may acknowledge, escalate, resolve and ask for local work.
    pub fn operates(&self) -> bool {
        self.principal.as_ref().is_some_and(|p| p.role.operates())
    }

    /// Whether the viewer may comment on this incident.
    pub fn comments_on(&self, incident: &Incident) -> bool {
        match self.principal.as_ref().map(|p| &p.role) {
            Some(Role::Ssc | Role::Secondline) => true,
            Some(Role::Customer(own)) => incident.customer.as_deref() == Some(own.as_str()),
            _ => false,
        }
    }
}

/// 1 critical ... 5 information (the Argus/NAV scale).
pub fn severity_name(s: u8) -> &'static str {
    match s {
        1 => "critical",
        2 => "major",
        3 => "minor",
        4 => "warning",
        _ => "information",
    }
}

/// How long ago, for people: `42 s`, `3 min`, `2 h 5 min`, `3 d 4 h`.
pub fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A time in the service centre's zone.
pub fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&ZONE)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

const NAV: [(&str, &str); 3] = [
    ("/ui/", "Incidents"),
    ("/ui/changes", "Changes"),
    ("/ui/topology", "Topology"),
];

/// Devices drawn at most; a larger campus is shown as tables only.
const DRAW_AT_MOST: usize = 400;

/// The topology page: a layered drawing (cores on top, then each hop further down; a line per
/// device pair, dashed while one end is down) and, per device, its state, parents towards the
/// core (the paths), pair and neighbours; then the links with their ports and sources, and
/// the latest LLDP neighbour changes. `t` is the JSON of `GET /api/v1/topology`.
pub fn topology(t: &serde_json::Value) -> Markup {
    let empty = Vec::new();
    let devices = t["devices"].as_array().unwrap_or(&empty);
    let links = t["links"].as_array().unwrap_or(&empty);
    let changes = t["changes"].as_array().unwrap_or(&empty);
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    // Rows by hop count; devices that reach no top go last.
    let mut rows: std::collections::BTreeMap<u64, Vec<&serde_json::Value>> =
        std::collections::BTreeMap::new();
    for d in devices {
        rows.entry(d["level"].as_u64().unwrap_or(u64::MAX))
            .or_default()
            .push(d);
    }
    let width = rows.values().map(Vec::len).max().unwrap_or(1).max(1) * 110 + 20;
    let height = rows.len() * 90 + 20;
    let mut at: std::collections::HashMap<String, (usize, usize)> =
        std::collections::HashMap::new();
    for (r, (_, row)) in rows.iter().enumerate() {
        let step = width / (row.len() + 1);
        for (i, d) in row.iter().enumerate() {
            at.insert(text(&d["name"]), (step * (i + 1), 40 + r * 90));
        }
    }
    let draw = !devices.is_empty() && devices.len() <= DRAW_AT_MOST;
    html! {
        h1 { "Topology" }
        @if devices.is_empty() {
            p { "No topology yet: no inventory links, no LLDP snapshot from an agent, no CNaaS-NMS." }
        }
        @if draw {
            svg #topology-drawing width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label="campus topology" {
                @for l in links {
                    @if let (Some(a), Some(b)) = (at.get(&text(&l["a"])), at.get(&text(&l["b"]))) {
                        line x1=(a.0) y1=(a.1) x2=(b.0) y2=(b.1) class=(format!("link link-{}", text(&l["state"]))) {
                            title { (text(&l["a"])) " " (text(&l["a_port"])) " - " (text(&l["b"])) " " (text(&l["b_port"])) }
                        }
                    }
                }
                @for d in devices {
                    @if let Some((x, y)) = at.get(&text(&d["name"])) {
                        g class=(format!("dev dev-{}", text(&d["state"]))) data-device=(text(&d["name"])) {
                            rect x=(x - 50) y=(y - 14) width="100" height="28" rx="6" {}
                            text x=(x) y=(y + 5) text-anchor="middle" { (text(&d["name"])) }
                        }
                    }
                }
            }
            p.legend {
                span.dev-up { "up" } " " span.dev-degraded { "degraded (redundancy lost)" } " "
                span.dev-down { "down" } " " span.dev-isolated { "isolated (cut off)" }
            }
        } @else if !devices.is_empty() {
            p { (devices.len()) " devices: too many to draw; the tables follow." }
        }
        h2 { "Devices" }
        table #topology-devices {
            thead { tr { th { "Device" } th { "Role" } th { "State" } th { "Towards the core" } th { "Pair" } th { "Neighbours" } } }
            tbody {
                @for d in devices {
                    tr data-device=(text(&d["name"])) class=(format!("state-{}", text(&d["state"]))) {
                        td { (text(&d["name"])) }
                        td { (text(&d["role"])) }
                        td.state { (text(&d["state"])) @if let Some(by) = d["shadowed_by"].as_str() { " (behind " (by) ")" } }
                        td { @if d["top"] == true { "core" } @else { (list(&d["parents"])) } }
                        td { (text(&d["pair"])) }
                        td { (list(&d["neighbours"])) }
                    }
                }
            }
        }
        h2 { "Links" }
        table #topology-links {
            thead { tr { th { "Device" } th { "Port" } th { "Device" } th { "Port" } th { "Known from" } th { "State" } } }
            tbody {
                @for l in links {
                    tr {
                        td { (text(&l["a"])) } td { (text(&l["a_port"])) }
                        td { (text(&l["b"])) } td { (text(&l["b_port"])) }
                        td { (list(&l["sources"])) } td { (text(&l["state"])) }
                    }
                }
            }
        }
        h2 { "Neighbour changes" }
        @if changes.is_empty() {
            p { "None recorded." }
        } @else {
            table #topology-changes {
                thead { tr { th { "When" } th { "Device" } th { "Port" } th { "Before" } th { "After" } } }
                tbody {
                    @for c in changes.iter().rev() {
                        tr {
                            td { (text(&c["at"])) } td { (text(&c["device"])) } td { (text(&c["port"])) }
                            td { (text(&c["before"])) } td { (text(&c["after"])) }
                        }
                    }
                }
            }
        }
    }
}

/// The whole page around `body`.
pub fn page(title: &str, viewer: &Viewer, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · CNaaS monitor" }
                link rel="stylesheet" href="/ui/assets/style.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header {
                    strong { "CNaaS monitor" }
                    nav {
                        @for (href, label) in NAV {
                            a href=(href) class=[(href == current).then_some("current")] { (label) }
                        }
                    }
                    span.who {
                        @match &viewer.principal {
                            Some(p) => {
                                (p.name) " (" (role_name(&p.role)) ") "
                                form method="post" action="/ui/logout" class="inline" {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    button type="submit" { "Sign out" }
                                }
                            }
                            None => { "read-only (no tokens file)" }
                        }
                    }
                    span #live-status title="live update" { "●" }
                }
                (body)
            }
        }
    }
}

fn role_name(r: &Role) -> String {
    match r {
        Role::Ssc => "ssc".into(),
        Role::Secondline => "secondline".into(),
        Role::Readonly => "readonly".into(),
        Role::Customer(c) => format!("customer {c}"),
    }
}

/// The overview's filter, as given in the query.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// `active` (open and acknowledged, the default), or one state.
    pub state: String,
    /// One customer.
    pub customer: Option<String>,
    /// This severity or more severe.
    pub severity: Option<u8>,
}

impl ListFilter {
    /// The filter as a query string (for the live part's address).
    pub fn query(&self) -> String {
        let mut q = format!("state={}", self.state);
        if let Some(c) = &self.customer {
            q.push_str("&customer=");
            q.push_str(&percent(c));
        }
        if let Some(s) = self.severity {
            q.push_str(&format!("&severity={s}"));
        }
        q
    }
}

/// Percent-encodes everything but unreserved characters.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The states the overview can show.
pub const LIST_STATES: [&str; 5] = ["active", "open", "acknowledged", "resolved", "closed"];

/// The overview: the filter form and the live list.
pub fn overview(
    viewer: &Viewer,
    filter: &ListFilter,
    customers: &[(String, String)],
    list: Markup,
) -> Markup {
    html! {
        form.filter method="get" action="/ui/" {
            label { "State "
                select name="state" {
                    @for s in LIST_STATES {
                        option value=(s) selected[filter.state == s] { (s) }
                    }
                }
            }
            @if customers.len() > 1 {
                label { "Customer "
                    select name="customer" {
                        option value="" { "all" }
                        @for (id, name) in customers {
                            option value=(id) selected[filter.customer.as_deref() == Some(id.as_str())] { (name) }
                        }
                    }
                }
            }
            label { "Severity "
                select name="severity" {
                    option value="" { "all" }
                    @for s in 1..=5u8 {
                        option value=(s) selected[filter.severity == Some(s)] { (s) " " (severity_name(s)) " or worse" }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        main #live data-src=(format!("/ui/?partial=1&{}", filter.query())) {
            (list)
        }
        @if viewer.principal.is_none() {
            p.note { "This collector has no tokens file: the dashboard is read-only." }
        }
    }
}

/// The live list of incidents (most severe first, newest first within a severity).
pub fn incident_list(
    viewer: &Viewer,
    incidents: &[Incident],
    names: &dyn Fn(&str) -> String,
    now: DateTime<Utc>,
) -> Markup {
    html! {
        p.count { (incidents.len()) " incident" @if incidents.len() != 1 { "s" } }
        table #incidents {
            thead { tr {
                th { "Sev" } th { "State" } th { "Customer" } th { "Site" } th { "Device" }
                th { "Port" } th { "What" } th { "Age" } th {}
            } }
            tbody {
                @for i in incidents {
                    tr id=(format!("incident-{}", i.id)) data-state=(i.state) class=(format!("sev{}", i.severity)) {
                        td.sev title=(severity_name(i.severity)) { (i.severity) }
                        td.state {
                            (i.state)
                            @if i.escalated { " " span.flag title="escalated to 2nd line" { "2nd line" } }
                            @if i.in_maintenance { " " span.flag title="opened inside a change window" { "maintenance" } }
                        }
                        td { (i.customer.as_deref().map(names).unwrap_or_default()) }
                        td { (i.site.as_deref().unwrap_or("")) }
                        td { (i.device) }
                        td { (i.if_name.as_deref().unwrap_or("")) }
                        td { a href=(format!("/ui/incidents/{}", i.id)) { (i.summary) } }
                        td.age title=(local(i.opened_at)) { (age(now, i.opened_at)) }
                        td {
                            @if viewer.operates() && i.state == "open" {
                                form method="post" action=(format!("/ui/incidents/{}/ack", i.id)) class="inline" {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    input type="hidden" name="back" value="list";
                                    button.ack type="submit" { "Acknowledge" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The actions a viewer may take on an incident, as forms.
pub fn incident_actions(viewer: &Viewer, i: &Incident) -> Markup {
    let live = matches!(i.state.as_str(), "open" | "acknowledged");
    let button = |action: &str, label: &str| {
        html! {
            form method="post" action=(format!("/ui/incidents/{}/{action}", i.id)) class="inline" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button type="submit" id=(format!("do-{action}")) { (label) }
            }
        }
    };
    html! {
        @if viewer.operates() {
            section.actions {
                @if i.state == "open" { (button("ack", "Acknowledge")) }
                @if live && !i.escalated { (button("escalate", "Escalate to 2nd line")) }
                @if live { (button("resolve", "Resolve")) }
                @if i.state == "resolved" { (button("close", "Close")) }
            }
        }
        @if viewer.comments_on(i) {
            section.actions {
                form method="post" action=(format!("/ui/incidents/{}/comment", i.id)) {
                    label { "Comment" textarea name="comment" rows="2" required {} }
                    @if viewer.operates() {
                        label.check {
                            input type="checkbox" name="public" value="1";
                            " Visible to the customer (otherwise SSC and 2nd line only)"
                        }
                    }
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    button type="submit" id="do-comment" { "Add comment" }
                }
                @if viewer.operates() && live {
                    form method="post" action=(format!("/ui/incidents/{}/local-work", i.id)) {
                        label { "Local work needed (what, where)" textarea name="comment" rows="2" {} }
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" id="do-local-work" { "Ask the customer's local support" }
                    }
                }
            }
        }
    }
}

/// The live part of an incident's page: facts, member alarms, history, events, notifications.
pub fn incident_detail(
    d: &IncidentDetail,
    notifications: &[Notification],
    customer_name: &str,
    now: DateTime<Utc>,
) -> Markup {
    let i = &d.incident;
    html! {
        h1 { "#" (i.id) " " (i.summary) }
        dl.facts {
            dt { "State" } dd #state { (i.state)
                @if i.escalated { " (escalated to 2nd line)" }
                @if i.in_maintenance { " (opened inside a change window)" } }
            dt { "Severity" } dd { (i.severity) " " (severity_name(i.severity)) }
            dt { "Kind" } dd { (i.kind) }
            dt { "Customer" } dd { (customer_name) }
            dt { "Site" } dd { (i.site.as_deref().unwrap_or("")) }
            dt { "Device" } dd { (i.device) }
            @if let Some(p) = &i.if_name {
                dt { "Port" } dd { (p)
                    @if let Some(a) = &i.if_alias { " (" (a) ")" }
                    @if let Some(r) = &i.role { " · " (r) } }
            }
            @if let Some(t) = i.transitions { dt { "Transitions" } dd { (t) } }
            dt { "Opened" } dd { (local(i.opened_at)) " (" (age(now, i.opened_at)) " ago)" }
            dt { "Updated" } dd { (local(i.updated_at)) }
            @if let Some(r) = i.resolved_at { dt { "Resolved" } dd { (local(r)) } }
        }
        h2 { "Alarms (" (d.alarms.len()) ")" }
        table #alarms {
            thead { tr { th { "Alarm" } th { "Relation" } th { "Active" } th { "Since" } th { "Cleared" } } }
            tbody { @for a in &d.alarms { tr {
                td { (a.alarm) } td { (a.relation) } td { @if a.active { "yes" } @else { "no" } }
                td { (local(a.since)) } td { (a.cleared_at.map(local).unwrap_or_default()) }
            } } }
        }
        h2 { "History" }
        table #history {
            thead { tr { th { "When" } th { "What" } th { "Who" } th { "Detail" } } }
            tbody { @for h in &d.history { tr {
                td { (local(h.at)) } td { (h.action) } td { (h.actor) } td { (h.detail.as_deref().unwrap_or("")) }
            } } }
        }
        h2 { "Notifications (" (notifications.len()) ")" }
        table #notifications {
            thead { tr { th { "Created" } th { "Transition" } th { "To" } th { "Channel" } th { "State" } th { "Attempts" } th { "Error" } } }
            tbody { @for n in notifications { tr {
                td { (local(n.created_at)) } td { (n.transition) } td { (n.audience) ": " (n.recipient) }
                td { (n.channel) } td { (n.state) } td { (n.attempts) } td { (n.last_error.as_deref().unwrap_or("")) }
            } } }
        }
        h2 { "Events (" (d.events_total) ")" }
        @if d.events_total > d.events.len() as u64 {
            p.note { "The newest " (d.events.len()) " are shown; all of them: "
                code { "GET /api/v1/events?incident=" (d.incident.id) } "." }
        }
        table #events {
            thead { tr { th { "Observed" } th { "Device" } th { "Port" } th { "Kind" } th { "Source" } } }
            tbody { @for e in &d.events { tr {
                td { (local(e.observed_at)) } td { (e.device) } td { (e.if_name.as_deref().unwrap_or("")) }
                td { (e.kind) } td { (e.source) }
            } } }
        }
    }
}

fn kind_name(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Planned => "planned",
        ChangeKind::Emergency => "emergency",
    }
}

/// The live list of changes: those under way first, then those to come, then the past.
pub fn change_list(changes: &[Change], now: DateTime<Utc>) -> Markup {
    let phase = |c: &Change| -> &'static str {
        match c.state {
            ChangeState::Cancelled => "cancelled",
            ChangeState::Scheduled if c.ends_at <= now => "done",
            ChangeState::Scheduled if c.starts_at <= now => "under way",
            ChangeState::Scheduled => "scheduled",
        }
    };
    let order = |c: &Change| match phase(c) {
        "under way" => 0,
        "scheduled" => 1,
        "done" => 2,
        _ => 3,
    };
    let mut list: Vec<&Change> = changes.iter().collect();
    list.sort_by_key(|c| (order(c), c.starts_at));
    html! {
        h1 { "Changes" }
        table #changes {
            thead { tr { th { "#" } th { "Kind" } th { "Phase" } th { "Window" } th { "What" } th { "Impact" } th { "Devices" } th { "Customers" } } }
            tbody { @for c in list {
                tr id=(format!("change-{}", c.id)) data-phase=(phase(c)) {
                    td { (c.id) @if c.revision > 1 { " (rev. " (c.revision) ")" } }
                    td { (kind_name(c.kind)) }
                    td { (phase(c)) @if let Some(r) = &c.reason { br; small { (r) } } }
                    td { (local(c.starts_at)) " – " (local(c.ends_at)) }
                    td { strong { (c.title) } @if !c.description.is_empty() { br; small { (c.description) } } }
                    td { (c.impact) }
                    td { (c.devices.join(", ")) }
                    td { (c.customers.join(", ")) }
                }
            } }
        }
    }
}

/// The sign-in form.
pub fn login(error: Option<&str>, csrf: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Sign in · CNaaS monitor" }
                link rel="stylesheet" href="/ui/assets/style.css";
            }
            body.login {
                main {
                    h1 { "CNaaS monitor" }
                    @if let Some(e) = error { p.error { (e) } }
                    form method="post" action="/ui/login" {
                        label { "API token" input type="password" name="token" autocomplete="current-password" required autofocus; }
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" id="sign-in" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// An error page.
pub fn error(viewer: &Viewer, status: u16, message: &str, back: &str) -> Markup {
    page(
        "Error",
        viewer,
        "",
        html! {
            main {
                h1 { "That did not work (" (status) ")" }
                p.error #error { (message) }
                p { a href=(back) { "Back" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    fn incident(id: i64, state: &str, customer: &str) -> Incident {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        Incident {
            id,
            kind: "link_down".into(),
            state: state.into(),
            severity: 2,
            device: "sw1".into(),
            if_index: Some(49),
            if_name: Some("ge-0/0/49".into()),
            if_alias: Some("<uplink>".into()),
            role: Some("uplink".into()),
            site: Some("main".into()),
            customer: Some(customer.into()),
            summary: "Uplink down <b>".into(),
            opened_at: t,
            updated_at: t,
            resolved_at: None,
            transitions: None,
            escalated: false,
            in_maintenance: false,
            merged_into: None,
            impact: None,
        }
    }

    fn viewer(role: Option<Role>) -> Viewer {
        Viewer {
            principal: role.map(|role| Principal {
                name: "desk".into(),
                role,
                contact: None,
            }),
            csrf: "tok".into(),
        }
    }

    #[test]
    fn ages_read_well() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let at = |s| t + chrono::Duration::seconds(s);
        assert_eq!(age(at(42), t), "42 s");
        assert_eq!(age(at(-5), t), "0 s");
        assert_eq!(age(at(185), t), "3 min");
        assert_eq!(age(at(2 * 3600 + 5 * 60), t), "2 h 5 min");
        assert_eq!(age(at(3 * 86_400 + 4 * 3600), t), "3 d 4 h");
        // 09:00 UTC is 10:00 in Oslo in November.
        assert_eq!(local(t), "2026-11-25 10:00:00");
    }

    #[test]
    fn the_list_escapes_and_offers_ack_to_operators_only() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 3, 0).unwrap();
        let list = [
            incident(7, "open", "uni-a"),
            incident(8, "acknowledged", "uni-a"),
        ];
        let names = |c: &str| format!("Uni {c}");
        let html = incident_list(&viewer(Some(Role::Ssc)), &list, &names, now).into_string();
        assert!(html.contains("Uplink down &lt;b&gt;"), "{html}");
        assert!(!html.contains("<b>"));
        assert!(html.contains(r#"id="incident-7" data-state="open""#));
        assert!(html.contains("/ui/incidents/7/ack"));
        assert!(
            !html.contains("/ui/incidents/8/ack"),
            "acknowledged already"
        );
        assert!(html.contains("Uni uni-a") && html.contains("3 min"));
        for role in [
            None,
            Some(Role::Readonly),
            Some(Role::Customer("uni-a".into())),
        ] {
            let html = incident_list(&viewer(role), &list, &names, now).into_string();
            assert!(!html.contains("/ack"), "{html}");
        }
    }

    #[test]
    fn actions_follow_role_and_state() {
        let ssc = viewer(Some(Role::Ssc));
        let open = incident(1, "open", "uni-a");
        let html = incident_actions(&ssc, &open).into_string();
        for a in ["ack", "escalate", "resolve", "comment", "local-work"] {
            assert!(
                html.contains(&format!("/ui/incidents/1/{a}")),
                "{a}: {html}"
            );
        }
        assert!(html.contains(r#"name="csrf" value="tok""#));
        let resolved = incident(1, "resolved", "uni-a");
        let html = incident_actions(&ssc, &resolved).into_string();
        assert!(html.contains("/close") && !html.contains("/ack") && !html.contains("/local-work"));
        let own = viewer(Some(Role::Customer("uni-a".into())));
        let html = incident_actions(&own, &open).into_string();
        assert!(
            html.contains("/comment") && !html.contains("/ack"),
            "{html}"
        );
        let other = viewer(Some(Role::Customer("uni-b".into())));
        assert_eq!(incident_actions(&other, &open).into_string(), "");
        assert_eq!(
            incident_actions(&viewer(Some(Role::Readonly)), &open).into_string(),
            ""
        );
    }

    #[test]
    fn filter_query_is_encoded() {
        let f = ListFilter {
            state: "active".into(),
            customer: Some("uni a&b".into()),
            severity: Some(2),
        };
        assert_eq!(f.query(), "state=active&customer=uni%20a%26b&severity=2");
    }

    #[test]
    fn changes_are_ordered_by_phase() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let h = |n: i64| now + chrono::Duration::hours(n);
        let change = |id, start, end, state| Change {
            id,
            title: format!("c{id}"),
            description: String::new(),
            impact: "short outage".into(),
            kind: ChangeKind::Planned,
            state,
            revision: 1,
            reason: None,
            starts_at: h(start),
            ends_at: h(end),
            devices: vec!["sw1".into()],
            customers: vec!["uni-a".into()],
            notice_at: h(-300),
            created_by: "desk".into(),
        };
        let list = [
            change(1, -10, -9, ChangeState::Scheduled),
            change(2, 5, 6, ChangeState::Scheduled),
            change(3, -1, 1, ChangeState::Scheduled),
            change(4, 2, 3, ChangeState::Cancelled),
        ];
        let html = change_list(&list, now).into_string();
        let pos = |id: &str| html.find(id).unwrap();
        assert!(pos("change-3") < pos("change-2"));
        assert!(pos("change-2") < pos("change-1"));
        assert!(pos("change-1") < pos("change-4"));
        assert!(html.contains(r#"id="change-3" data-phase="under way""#));
        assert!(html.contains(r#"id="change-4" data-phase="cancelled""#));
    }
}
