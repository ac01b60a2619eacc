//! The words of a notification, in Norwegian (`nb`) or English (`en`): a subject naming
//! customer, site, device, port and severity; a plain-text body with the escalation information
//! of Sikt's checklist; and a JSON document with a stable schema (`cnaas.notification.v1`) for
//! machine channels such as the SSC queue.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::config::InventoryDevice;
use crate::customers::Customer;
use crate::store::{IncidentDetail, Notification};

/// The schema name in every JSON document; bump it only with an incompatible change.
pub const SCHEMA: &str = "cnaas.notification.v1";

/// A rendered notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// One line.
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// The JSON document (holds subject and body too).
    pub payload: Value,
}

/// What a message is built from.
pub struct Context<'a> {
    /// The queued notification.
    pub notification: &'a Notification,
    /// The incident as it stands when the message is rendered (the grouped incident).
    pub incident: &'a IncidentDetail,
    /// Its customer.
    pub customer: Option<&'a Customer>,
    /// Its device in the inventory.
    pub device: Option<&'a InventoryDevice>,
    /// Base URL of the collector, for the link.
    pub base_url: &'a str,
}

#[derive(Clone, Copy)]
enum Lang {
    Nb,
    En,
}

impl Lang {
    fn of(code: &str) -> Lang {
        if code == "en" { Lang::En } else { Lang::Nb }
    }
    fn pick<'s>(self, nb: &'s str, en: &'s str) -> &'s str {
        match self {
            Lang::Nb => nb,
            Lang::En => en,
        }
    }
}

fn transition_label(lang: Lang, transition: &str) -> &'static str {
    let stem = transition.rsplit_once('-').map_or(transition, |(s, _)| s);
    match (stem, lang) {
        ("opened", Lang::Nb) => "Ny hendelse",
        ("opened", Lang::En) => "New incident",
        ("reopened", Lang::Nb) => "Hendelse gjenåpnet",
        ("reopened", Lang::En) => "Incident re-opened",
        ("resolved", Lang::Nb) => "Hendelse løst",
        ("resolved", Lang::En) => "Incident resolved",
        ("escalated", Lang::Nb) => "Eskalert til 2. linje",
        ("escalated", Lang::En) => "Escalated to 2nd line",
        ("local_work", Lang::Nb) => "Forespørsel om lokalt arbeid",
        ("local_work", Lang::En) => "Local work requested",
        ("maintenance_ended", Lang::Nb) => "Fortsatt feil etter vedlikehold",
        ("maintenance_ended", Lang::En) => "Still down after maintenance",
        ("worsened", Lang::Nb) => "Hendelse forverret: nå utfall",
        ("worsened", Lang::En) => "Incident worsened: now an outage",
        (_, Lang::Nb) => "Hendelse oppdatert",
        (_, Lang::En) => "Incident updated",
    }
}

fn state_label(lang: Lang, state: &str) -> String {
    match (state, lang) {
        ("open", Lang::Nb) => "åpen".into(),
        ("acknowledged", Lang::Nb) => "kvittert".into(),
        ("resolved", Lang::Nb) => "løst".into(),
        ("closed", Lang::Nb) => "lukket".into(),
        ("merged", Lang::Nb) => "slått sammen".into(),
        (s, _) => s.to_owned(),
    }
}

fn port_text(i: &crate::store::Incident) -> Option<String> {
    let name = i
        .if_name
        .clone()
        .or_else(|| i.if_index.map(|x| format!("ifIndex {x}")))?;
    Some(match i.if_alias.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => format!("{name} ({a})"),
        None => name,
    })
}

/// The incident in the reader's words.
fn description(lang: Lang, i: &crate::store::Incident) -> String {
    let port = port_text(i).unwrap_or_default();
    let d = &i.device;
    match (i.kind.as_str(), lang) {
        ("link_down", Lang::Nb) => {
            let what = match i.role.as_deref() {
                Some("uplink") => "Opplink",
                Some("downlink") => "Nedlink",
                _ => "Infrastrukturport",
            };
            format!("{what} {port} på {d} er nede")
        }
        ("device_down", Lang::Nb) => format!("Enheten {d} svarer ikke"),
        ("port_flapping", Lang::Nb) => format!(
            "Porten {port} på {d} går opp og ned ({} overganger)",
            i.transitions.unwrap_or_default()
        ),
        ("vlan_changed", Lang::Nb) => format!("VLAN på porten {port} på {d} er endret"),
        ("device_rebooted", Lang::Nb) => format!("Enheten {d} har startet på nytt"),
        ("agent_offline", Lang::Nb) => format!("Overvåkingsproben {d} er frakoblet"),
        ("notification_failed", Lang::Nb) => format!("Varsling feilet: {}", i.summary),
        ("port_flapping", Lang::En) => format!(
            "{} ({} transitions)",
            i.summary,
            i.transitions.unwrap_or_default()
        ),
        _ => i.summary.clone(),
    }
}

/// What monitoring established, from the member alarms (`device|subindex|type`).
fn established(lang: Lang, d: &IncidentDetail) -> Vec<String> {
    let i = &d.incident;
    let mut out = vec![description(lang, i)];
    let others = |kind: &str, relation: &str| -> Vec<String> {
        d.alarms
            .iter()
            .filter(|a| a.relation == relation && a.alarm.ends_with(kind))
            .map(|a| a.alarm.split('|').next().unwrap_or_default().to_owned())
            .collect()
    };
    let list = |names: &[String]| {
        let mut s = names
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > 10 {
            s.push_str(", ...");
        }
        s
    };
    let behind = others("|device_down", "shadowed");
    if !behind.is_empty() {
        out.push(match lang {
            Lang::Nb => format!(
                "{} enheter bak svarer ikke: {}",
                behind.len(),
                list(&behind)
            ),
            Lang::En => format!(
                "{} devices behind it do not answer: {}",
                behind.len(),
                list(&behind)
            ),
        });
    }
    let beside = others("|device_down", "member");
    if !beside.is_empty() {
        out.push(match lang {
            Lang::Nb => format!(
                "{} andre enheter på stedet svarer ikke: {}",
                beside.len(),
                list(&beside)
            ),
            Lang::En => format!(
                "{} other devices at the site do not answer: {}",
                beside.len(),
                list(&beside)
            ),
        });
    }
    let ports = d
        .alarms
        .iter()
        .filter(|a| a.relation != "root" && a.alarm.ends_with("|link_down"))
        .count();
    if ports > 0 {
        out.push(match lang {
            Lang::Nb => format!("{ports} overvåkede porter er nede"),
            Lang::En => format!("{ports} watched ports are down"),
        });
    }
    let cleared = d.alarms.iter().filter(|a| !a.active).count();
    if cleared > 0 && i.state != "resolved" {
        out.push(match lang {
            Lang::Nb => format!("{cleared} av {} alarmer er klarert", d.alarms.len()),
            Lang::En => format!("{cleared} of {} alarms have cleared", d.alarms.len()),
        });
    }
    if i.in_maintenance {
        out.push(
            lang.pick(
                "Enheten er i et planlagt vedlikeholdsvindu",
                "The device is inside a maintenance window",
            )
            .to_owned(),
        );
    }
    out
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// Renders a notification.
pub fn render(cx: &Context<'_>) -> Message {
    let n = cx.notification;
    let i = &cx.incident.incident;
    let lang = Lang::of(&n.language);
    let tz: Tz = cx
        .customer
        .and_then(|c| c.timezone.parse().ok())
        .unwrap_or(chrono_tz::Europe::Oslo);
    let organisation = cx
        .customer
        .map(|c| c.name.clone())
        .or_else(|| i.customer.clone())
        .unwrap_or_else(|| lang.pick("(ingen kunde)", "(no customer)").to_owned());
    let first = cx
        .incident
        .events
        .iter()
        .map(|e| e.observed_at)
        .chain([i.opened_at])
        .min()
        .unwrap_or(i.opened_at);
    let last = cx
        .incident
        .events
        .iter()
        .map(|e| e.observed_at)
        .chain(i.resolved_at)
        .max()
        .unwrap_or(i.updated_at);
    let vlan = cx
        .incident
        .events
        .iter()
        .rev()
        .find_map(|e| e.attrs.get("new").or_else(|| e.attrs.get("vlan")).cloned())
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    let location: Vec<String> = [
        i.site.clone(),
        cx.device.and_then(|d| d.location.clone()),
        i.if_alias
            .clone()
            .filter(|a| !a.is_empty())
            .map(|a| format!("port: {a}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let port = port_text(i);
    let label = transition_label(lang, &n.transition);
    let desc = description(lang, i);
    let url = format!(
        "{}/api/v1/incidents/{}",
        cx.base_url.trim_end_matches('/'),
        i.id
    );
    let subject = {
        let mut parts = vec![organisation.clone()];
        parts.extend(i.site.clone());
        parts.push(match &i.if_name {
            Some(p) => format!("{} {p}", i.device),
            None => i.device.clone(),
        });
        format!(
            "[CNaaS S{}] {label}: {} - {desc}",
            i.severity,
            parts.join(" / ")
        )
    };
    let established = established(lang, cx.incident);
    let none = lang.pick("ikke kjent", "not known");
    let mut body = String::new();
    kv(
        &mut body,
        lang.pick("Hendelse", "Incident"),
        &format!(
            "#{} - {label} ({} {}/5, {} {})",
            i.id,
            lang.pick("alvorlighetsgrad", "severity"),
            i.severity,
            lang.pick("status", "state"),
            state_label(lang, &i.state)
        ),
    );
    kv(
        &mut body,
        lang.pick("Organisasjon", "Organisation"),
        &organisation,
    );
    kv(&mut body, lang.pick("Beskrivelse", "Description"), &desc);
    kv(
        &mut body,
        lang.pick("Første tidspunkt", "First seen"),
        &local(first, tz),
    );
    kv(
        &mut body,
        lang.pick("Siste tidspunkt", "Last seen"),
        &local(last, tz),
    );
    kv(&mut body, lang.pick("Enhet", "Device"), &i.device);
    kv(&mut body, "Port", port.as_deref().unwrap_or("-"));
    kv(&mut body, "VLAN", vlan.as_deref().unwrap_or(none));
    kv(
        &mut body,
        lang.pick("Plassering", "Location"),
        &if location.is_empty() {
            none.to_owned()
        } else {
            location.join(", ")
        },
    );
    kv(&mut body, lang.pick("MAC-adresser", "MAC addresses"), none);
    body.push_str(lang.pick(
        "Hva overvåkingen har fastslått:\n",
        "What monitoring established:\n",
    ));
    for e in &established {
        body.push_str("  - ");
        body.push_str(e);
        body.push('\n');
    }
    if let Some(detail) = n.detail.as_deref().filter(|d| !d.trim().is_empty()) {
        let what = if n.transition.starts_with("local_work") {
            lang.pick("Arbeid som trengs", "Work needed")
        } else {
            lang.pick("Kommentar", "Comment")
        };
        body.push_str(&format!("{what}: {detail}\n"));
    }
    body.push_str(&format!(
        "\n{}: {url}\n{}: {}\n",
        lang.pick("Detaljer", "Details"),
        lang.pick("Varsel-ID", "Notification id"),
        n.key
    ));
    let alarms: Vec<Value> = cx
        .incident
        .alarms
        .iter()
        .map(|a| json!({ "alarm": a.alarm, "relation": a.relation, "active": a.active }))
        .collect();
    let mut payload = envelope(n, &subject, &body, &url);
    payload.insert("detail".into(), json!(n.detail));
    payload.insert(
        "incident".into(),
        json!({
                "id": i.id,
                "kind": i.kind,
                "state": i.state,
                "severity": i.severity,
                "customer": i.customer,
                "customer_name": cx.customer.map(|c| c.name.clone()),
                "site": i.site,
                "device": i.device,
                "if_index": i.if_index,
                "if_name": i.if_name,
                "if_alias": i.if_alias,
                "role": i.role,
                "summary": i.summary,
                "opened_at": i.opened_at,
                "resolved_at": i.resolved_at,
                "transitions": i.transitions,
                "escalated": i.escalated,
                "in_maintenance": i.in_maintenance,
                "alarms": alarms,
        }),
    );
    payload.insert(
        "escalation".into(),
        json!({
                "organisation": organisation,
                "first_seen": first,
                "last_seen": last,
                "description": desc,
                "device": i.device,
                "port": port,
                "vlan": vlan,
                "location": location,
                "mac_addresses": [],
                "established": established,
        }),
    );
    Message {
        subject,
        body,
        payload: Value::Object(payload),
    }
}

/// The fields every JSON document of the schema starts with; each kind adds its own.
fn envelope(
    n: &Notification,
    subject: &str,
    body: &str,
    url: &str,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in [
        ("schema", json!(SCHEMA)),
        ("key", json!(n.key)),
        ("transition", json!(n.transition)),
        ("audience", json!(n.audience)),
        ("channel", json!(n.channel)),
        ("to", json!(n.recipient)),
        ("language", json!(n.language)),
        ("subject", json!(subject)),
        ("text", json!(body)),
        ("url", json!(url)),
    ] {
        m.insert(k.into(), v);
    }
    m
}

/// Appends `key: value` and a newline.
fn kv(body: &mut String, k: &str, v: &str) {
    body.push_str(k);
    body.push_str(": ");
    body.push_str(v);
    body.push('\n');
}

/// What a change notice is built from.
pub struct ChangeContext<'a> {
    /// The queued notification.
    pub notification: &'a Notification,
    /// The change as it stands.
    pub change: &'a crate::changes::Change,
    /// The customer the notice speaks to (None: SSC's copy).
    pub customer: Option<&'a Customer>,
    /// Who to ask about it (`[notify] contact`).
    pub contact: Option<&'a str>,
    /// Base URL of the collector.
    pub base_url: &'a str,
}

/// Renders a change notice: what, when (in the reader's time zone), expected impact, the
/// devices, and whom to ask; an emergency change asks the technical contacts for input on
/// timing.
pub fn render_change(cx: &ChangeContext<'_>) -> Message {
    use crate::changes::{ChangeKind, ChangeState};
    let n = cx.notification;
    let c = cx.change;
    let lang = Lang::of(&n.language);
    let tz: Tz = cx
        .customer
        .and_then(|c| c.timezone.parse().ok())
        .unwrap_or(chrono_tz::Europe::Oslo);
    let stem = n
        .transition
        .rsplit_once('-')
        .map_or(n.transition.as_str(), |(s, _)| s);
    let kind = match (c.kind, lang) {
        (ChangeKind::Planned, Lang::Nb) => "Planlagt endring",
        (ChangeKind::Planned, Lang::En) => "Planned change",
        (ChangeKind::Emergency, Lang::Nb) => "Nødendring",
        (ChangeKind::Emergency, Lang::En) => "Emergency change",
    };
    let what = match (stem, lang) {
        ("rescheduled", Lang::Nb) => "nytt tidspunkt",
        ("rescheduled", Lang::En) => "rescheduled",
        ("cancelled", Lang::Nb) => "avlyst",
        ("cancelled", Lang::En) => "cancelled",
        (_, Lang::Nb) => "varsel",
        (_, Lang::En) => "notice",
    };
    let window = format!("{} - {}", local(c.starts_at, tz), local(c.ends_at, tz));
    let organisation = cx.customer.map(|k| k.name.clone());
    let subject = format!(
        "[CNaaS] {kind} ({what}): {}{} - {}",
        c.title,
        organisation
            .as_deref()
            .map(|o| format!(" - {o}"))
            .unwrap_or_default(),
        local(c.starts_at, tz)
    );
    let impact = if c.impact.trim().is_empty() {
        lang.pick(
            "Nettet på de berørte enhetene kan være utilgjengelig i vinduet.",
            "The network on the affected devices may be unavailable during the window.",
        )
        .to_owned()
    } else {
        c.impact.clone()
    };
    let mut body = String::new();
    kv(
        &mut body,
        lang.pick("Endring", "Change"),
        &format!("#{} - {kind} ({what})", c.id),
    );
    if let Some(o) = &organisation {
        kv(&mut body, lang.pick("Organisasjon", "Organisation"), o);
    }
    kv(&mut body, lang.pick("Hva", "What"), &c.title);
    if !c.description.trim().is_empty() {
        kv(
            &mut body,
            lang.pick("Beskrivelse", "Description"),
            &c.description,
        );
    }
    kv(&mut body, lang.pick("Når", "When"), &window);
    kv(
        &mut body,
        lang.pick("Forventet påvirkning", "Expected impact"),
        &impact,
    );
    kv(
        &mut body,
        lang.pick("Berørte enheter", "Affected devices"),
        &c.devices.join(", "),
    );
    if c.state == ChangeState::Cancelled {
        kv(
            &mut body,
            lang.pick("Status", "State"),
            lang.pick(
                "Avlyst: ingenting skjer i vinduet",
                "Cancelled: nothing happens in the window",
            ),
        );
    }
    if let Some(reason) = n.detail.as_deref().filter(|r| !r.trim().is_empty()) {
        kv(&mut body, lang.pick("Begrunnelse", "Reason"), reason);
    }
    if c.kind == ChangeKind::Emergency
        && n.audience == "technical"
        && c.state != ChangeState::Cancelled
    {
        body.push_str(lang.pick(
            "\nDette er en nødendring. Har dere innspill til tidspunktet, svar oss så snart som mulig.\n",
            "\nThis is an emergency change. If you have input on the timing, please answer as soon as possible.\n",
        ));
    }
    if let Some(contact) = cx.contact {
        kv(&mut body, lang.pick("Spørsmål", "Questions"), contact);
    }
    let url = format!("{}/api/v1/changes", cx.base_url.trim_end_matches('/'));
    body.push_str(&format!(
        "\n{}: {url}\n{}: {}\n",
        lang.pick("Endringer", "Changes"),
        lang.pick("Varsel-ID", "Notification id"),
        n.key
    ));
    let mut payload = envelope(n, &subject, &body, &url);
    payload.insert("detail".into(), json!(n.detail));
    payload.insert("customer".into(), json!(n.customer));
    payload.insert("change".into(), json!(c));
    Message {
        subject,
        body,
        payload: Value::Object(payload),
    }
}

/// Renders a customer's change order for SSC.
pub fn render_order(
    n: &Notification,
    order: &crate::changes::ChangeOrder,
    customer: Option<&Customer>,
    base_url: &str,
) -> Message {
    let lang = Lang::of(&n.language);
    let tz = chrono_tz::Europe::Oslo;
    let organisation = customer.map_or_else(|| order.customer.clone(), |c| c.name.clone());
    let subject = format!(
        "[CNaaS] {}: {organisation} - {}",
        lang.pick("Endringsbestilling", "Change order"),
        order.title
    );
    let mut body = String::new();
    kv(
        &mut body,
        lang.pick("Bestilling", "Order"),
        &format!("#{}", order.id),
    );
    kv(
        &mut body,
        lang.pick("Organisasjon", "Organisation"),
        &organisation,
    );
    kv(
        &mut body,
        lang.pick("Bestilt av", "Ordered by"),
        &format!("{} ({})", order.contact, order.requested_by),
    );
    kv(&mut body, lang.pick("Hva", "What"), &order.title);
    if !order.description.trim().is_empty() {
        kv(
            &mut body,
            lang.pick("Beskrivelse", "Description"),
            &order.description,
        );
    }
    if let (Some(from), Some(to)) = (order.wanted_from, order.wanted_to) {
        kv(
            &mut body,
            lang.pick("Ønsket tidspunkt", "Wanted window"),
            &format!("{} - {}", local(from, tz), local(to, tz)),
        );
    }
    let url = format!("{}/api/v1/change-orders", base_url.trim_end_matches('/'));
    body.push_str(&format!(
        "\n{}: {url}\n{}: {}\n",
        lang.pick("Bestillinger", "Orders"),
        lang.pick("Varsel-ID", "Notification id"),
        n.key
    ));
    let mut payload = envelope(n, &subject, &body, &url);
    payload.insert("change_order".into(), json!(order));
    Message {
        subject,
        body,
        payload: Value::Object(payload),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{About, Incident, IncidentAlarm};

    fn detail() -> IncidentDetail {
        let at = DateTime::parse_from_rfc3339("2026-11-24T09:03:12Z")
            .unwrap()
            .with_timezone(&Utc);
        let alarm = |k: &str, rel: &str| IncidentAlarm {
            alarm: k.into(),
            relation: rel.into(),
            active: true,
            since: at,
            cleared_at: None,
        };
        IncidentDetail {
            events_total: 0,
            incident: Incident {
                id: 42,
                kind: "link_down".into(),
                state: "open".into(),
                severity: 2,
                device: "d-b12".into(),
                if_index: Some(49),
                if_name: Some("Te1/1/1".into()),
                if_alias: Some("uplink core-1".into()),
                role: Some("uplink".into()),
                site: Some("b12".into()),
                customer: Some("uni-a".into()),
                summary: "Uplink Te1/1/1 (uplink core-1) on d-b12 is down".into(),
                opened_at: at,
                updated_at: at,
                resolved_at: None,
                transitions: None,
                escalated: false,
                in_maintenance: false,
                merged_into: None,
                impact: None,
            },
            alarms: vec![
                alarm("d-b12|49|link_down", "root"),
                alarm("a-b12-01||device_down", "shadowed"),
                alarm("a-b12-02||device_down", "shadowed"),
                alarm("a-b12-01|1|link_down", "shadowed"),
            ],
            history: vec![],
            events: vec![],
        }
    }

    fn notification(language: &str, transition: &str) -> Notification {
        let at = Utc::now();
        Notification {
            id: 1,
            key: format!("inc-42/{transition}/incident/mail/servicedesk@uni-a.no"),
            about: About::Incident,
            about_id: 42,
            customer: None,
            transition: transition.into(),
            audience: "incident".into(),
            channel: "mail".into(),
            recipient: "servicedesk@uni-a.no".into(),
            language: language.into(),
            detail: Some("Re-patch outlet 12-034 to switch port 3".into()),
            state: "pending".into(),
            attempts: 0,
            created_at: at,
            due_at: at,
            delivered_at: None,
            last_error: None,
            subject: None,
            body: None,
            payload: None,
            delayed: false,
        }
    }

    fn device() -> InventoryDevice {
        InventoryDevice {
            location: Some("Bygg 12, rom 101, rack 2".into()),
            ..InventoryDevice::default()
        }
    }

    #[test]
    fn norwegian_message_carries_the_escalation_fields() {
        let d = detail();
        let n = notification("nb", "opened-1");
        let dev = device();
        let m = render(&Context {
            notification: &n,
            incident: &d,
            customer: None,
            device: Some(&dev),
            base_url: "http://collector:16980/",
        });
        assert_eq!(
            m.subject,
            "[CNaaS S2] Ny hendelse: uni-a / b12 / d-b12 Te1/1/1 - Opplink Te1/1/1 (uplink core-1) på d-b12 er nede"
        );
        for want in [
            "Organisasjon: uni-a\n",
            "Første tidspunkt: 2026-11-24 10:03:12 CET\n",
            "Port: Te1/1/1 (uplink core-1)\n",
            "Plassering: b12, Bygg 12, rom 101, rack 2, port: uplink core-1\n",
            "  - 2 enheter bak svarer ikke: a-b12-01, a-b12-02\n",
            "  - 1 overvåkede porter er nede\n",
            "Kommentar: Re-patch outlet",
            "Detaljer: http://collector:16980/api/v1/incidents/42\n",
            "Varsel-ID: inc-42/opened-1/incident/mail/servicedesk@uni-a.no\n",
        ] {
            assert!(m.body.contains(want), "missing {want:?} in\n{}", m.body);
        }
    }

    #[test]
    fn english_local_work_and_a_stable_json_schema() {
        let d = detail();
        let n = notification("en", "local_work-1");
        let m = render(&Context {
            notification: &n,
            incident: &d,
            customer: None,
            device: None,
            base_url: "http://c",
        });
        assert!(
            m.subject.starts_with(
                "[CNaaS S2] Local work requested: uni-a / b12 / d-b12 Te1/1/1 - Uplink"
            )
        );
        assert!(
            m.body.contains("Work needed: Re-patch outlet 12-034"),
            "{}",
            m.body
        );
        assert!(
            m.body.contains("Location: b12, port: uplink core-1\n"),
            "{}",
            m.body
        );
        let p = &m.payload;
        assert_eq!(p["schema"], SCHEMA);
        assert_eq!(p["key"], n.key);
        assert_eq!(p["incident"]["id"], 42);
        assert_eq!(p["incident"]["alarms"].as_array().unwrap().len(), 4);
        assert_eq!(p["escalation"]["organisation"], "uni-a");
        assert_eq!(p["escalation"]["port"], "Te1/1/1 (uplink core-1)");
        assert_eq!(
            p["escalation"]["established"][1],
            "2 devices behind it do not answer: a-b12-01, a-b12-02"
        );
        assert_eq!(p["subject"], m.subject);
        assert_eq!(p["text"], m.body);
    }
}
