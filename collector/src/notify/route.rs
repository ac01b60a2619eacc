//! Routing, exactly as the customer operating instruction prescribes (DESIGN.md section 3):
//!
//! | transition | recipients |
//! |---|---|
//! | opened, re-opened, resolved | the SSC queue; the customer's `incident` point; for severity 1-2 opened outside the customer's opening hours also every `technical` contact |
//! | escalated | the 2nd-line queue, with the escalation report |
//! | local work requested | the customer's `local_support` point |
//! | `notification_failed` opened | the SSC queue on every channel but the one that failed |
//!
//! `administrative` contacts are never notified by monitoring. While an incident is flagged
//! `in_maintenance`, the customer is not told (SSC still is). A point reached twice (the
//! operating instruction allows the same mailbox for several roles) is told once.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::correlate::Rules;
use crate::customers::{ContactPoint, Customer};
use crate::store::Incident;

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The provider's service centre (1st line).
    Ssc,
    /// Campus-network experts.
    Secondline,
    /// The customer's `incident` point.
    Incident,
    /// A `technical` contact of the customer.
    Technical,
    /// The customer's `local_support` point.
    LocalSupport,
    /// The customer's `change` point.
    Change,
}

impl Audience {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Ssc => "ssc",
            Audience::Secondline => "secondline",
            Audience::Incident => "incident",
            Audience::Technical => "technical",
            Audience::LocalSupport => "local_support",
            Audience::Change => "change",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<Audience> {
        [
            Audience::Ssc,
            Audience::Secondline,
            Audience::Incident,
            Audience::Technical,
            Audience::LocalSupport,
            Audience::Change,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// Whether the customer's own people read it (their language, not SSC's).
    pub fn is_customer(self) -> bool {
        matches!(
            self,
            Audience::Incident | Audience::Technical | Audience::LocalSupport | Audience::Change
        )
    }
}

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionKind {
    /// It opened.
    Opened,
    /// It came back within the re-open window.
    Reopened,
    /// It resolved (by itself or by a person).
    Resolved,
    /// A person handed it to 2nd line.
    Escalated,
    /// A person asked the customer for hands-on work.
    LocalWork,
    /// The maintenance window of an incident's device ended with the fault still there: the
    /// customer hears of it now.
    MaintenanceEnded,
    /// It was taken into another incident (nobody is told; whoever heard of it hears of the
    /// other one's resolution).
    Merged,
    /// Its impact grew (redundancy lost became an outage: the other switch of a pair went
    /// down too): told like an opening, at the new severity.
    Worsened,
}

impl TransitionKind {
    /// The history action it is numbered by (and the stem of the transition name).
    pub fn action(self) -> &'static str {
        match self {
            TransitionKind::Opened => "opened",
            TransitionKind::Reopened => "reopened",
            TransitionKind::Resolved => "resolved",
            TransitionKind::Escalated => "escalated",
            TransitionKind::LocalWork => "local_work",
            TransitionKind::MaintenanceEnded => "maintenance_ended",
            TransitionKind::Merged => "merged",
            TransitionKind::Worsened => "worsened",
        }
    }
}

/// One recipient of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// In which role.
    pub audience: Audience,
    /// Channel and address.
    pub point: ContactPoint,
    /// `nb` or `en`.
    pub language: String,
}

/// The incident kind of a delivery failure.
pub const NOTIFICATION_FAILED: &str = "notification_failed";
/// A `notification_failed` incident's device names the channel that failed: `channel:NAME`.
pub const FAILED_CHANNEL_PREFIX: &str = "channel:";

/// The routing table: customers, the internal queues, and the grouping timing.
#[derive(Debug, Clone)]
pub struct Routing {
    customers: HashMap<String, Customer>,
    ssc: Vec<ContactPoint>,
    secondline: Vec<ContactPoint>,
    language: String,
    rules: Rules,
}

impl Routing {
    /// A routing table. `language` is the one SSC and 2nd line read.
    pub fn new(
        customers: &[Customer],
        ssc: Vec<ContactPoint>,
        secondline: Vec<ContactPoint>,
        language: String,
        rules: Rules,
    ) -> Routing {
        Routing {
            customers: customers
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect(),
            ssc,
            secondline,
            language,
            rules,
        }
    }

    /// A customer by id.
    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.get(id)
    }

    /// The language of SSC's and 2nd line's messages.
    pub fn language(&self) -> &str {
        &self.language
    }

    /// Who is told about `what` happening to `incident`.
    pub fn recipients(&self, what: TransitionKind, incident: &Incident) -> Vec<Recipient> {
        let mut out: Vec<Recipient> = Vec::new();
        let internal = |audience, points: &[ContactPoint], out: &mut Vec<Recipient>| {
            for p in points {
                out.push(Recipient {
                    audience,
                    point: p.clone(),
                    language: self.language.clone(),
                });
            }
        };
        let customer = incident
            .customer
            .as_deref()
            .and_then(|c| self.customers.get(c));
        let external = |audience, p: &ContactPoint, c: &Customer, out: &mut Vec<Recipient>| {
            out.push(Recipient {
                audience,
                point: p.clone(),
                language: c.language.clone(),
            });
        };
        match what {
            TransitionKind::Opened | TransitionKind::Reopened | TransitionKind::Resolved
                if incident.kind == NOTIFICATION_FAILED =>
            {
                let failed = incident.device.strip_prefix(FAILED_CHANNEL_PREFIX);
                let others: Vec<ContactPoint> = self
                    .ssc
                    .iter()
                    .filter(|p| Some(p.channel.as_str()) != failed)
                    .cloned()
                    .collect();
                internal(Audience::Ssc, &others, &mut out);
            }
            TransitionKind::Opened
            | TransitionKind::Reopened
            | TransitionKind::Resolved
            | TransitionKind::Worsened => {
                internal(Audience::Ssc, &self.ssc, &mut out);
                if let Some(c) = customer.filter(|_| !incident.in_maintenance) {
                    external(Audience::Incident, &c.incident, c, &mut out);
                    // Judged by when it opened, so whoever was woken for it hears it resolved.
                    if incident.severity <= 2 && !c.is_open(incident.opened_at) {
                        for t in &c.technical {
                            external(Audience::Technical, t, c, &mut out);
                        }
                    }
                }
            }
            TransitionKind::MaintenanceEnded => {
                // SSC knew from the start; the customer hears of it as a new incident.
                if let Some(c) = customer.filter(|_| !incident.in_maintenance) {
                    external(Audience::Incident, &c.incident, c, &mut out);
                    if incident.severity <= 2 && !c.is_open(incident.opened_at) {
                        for t in &c.technical {
                            external(Audience::Technical, t, c, &mut out);
                        }
                    }
                }
            }
            TransitionKind::Escalated => internal(Audience::Secondline, &self.secondline, &mut out),
            TransitionKind::Merged => {}
            TransitionKind::LocalWork => {
                if let Some(c) = customer {
                    external(Audience::LocalSupport, &c.local_support, c, &mut out);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|r| seen.insert((r.point.channel.clone(), r.point.to.clone())));
        out
    }

    /// Who hears of a change being announced, rescheduled or cancelled: each affected
    /// customer's `change` point; for an emergency change also its `technical` contacts (asked
    /// for input on timing); SSC a copy. Each recipient with the customer it speaks for.
    pub fn change_recipients(
        &self,
        change: &crate::changes::Change,
    ) -> Vec<(Recipient, Option<String>)> {
        let mut out: Vec<(Recipient, Option<String>)> = self
            .ssc
            .iter()
            .map(|p| {
                (
                    Recipient {
                        audience: Audience::Ssc,
                        point: p.clone(),
                        language: self.language.clone(),
                    },
                    None,
                )
            })
            .collect();
        for c in change
            .customers
            .iter()
            .filter_map(|id| self.customers.get(id))
        {
            let mut add = |audience, p: &ContactPoint| {
                out.push((
                    Recipient {
                        audience,
                        point: p.clone(),
                        language: c.language.clone(),
                    },
                    Some(c.id.clone()),
                ));
            };
            add(Audience::Change, &c.change);
            if change.kind == crate::changes::ChangeKind::Emergency {
                for t in &c.technical {
                    add(Audience::Technical, t);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|(r, c)| seen.insert((c.clone(), r.point.channel.clone(), r.point.to.clone())));
        out
    }

    /// Who hears of a customer's change order: SSC.
    pub fn order_recipients(&self) -> Vec<Recipient> {
        self.ssc
            .iter()
            .map(|p| Recipient {
                audience: Audience::Ssc,
                point: p.clone(),
                language: self.language.clone(),
            })
            .collect()
    }

    /// When the opening of an incident may be told: not before its grouping window has run
    /// from the moment the fault was first seen, so recipients get the grouped incident rather
    /// than its parts. A link's hold time usually covers the window already.
    pub fn due_at(&self, what: TransitionKind, kind: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        if !matches!(what, TransitionKind::Opened | TransitionKind::Reopened) {
            return now;
        }
        let held = match kind {
            "link_down" => self.rules.link_hold,
            "device_down" => self.rules.device_hold,
            _ => TimeDelta::zero(),
        };
        now + (self.rules.group_window - held).max(TimeDelta::zero())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::customers::{CustomerEntry, check};

    fn point(channel: &str, to: &str) -> ContactPoint {
        ContactPoint {
            channel: channel.into(),
            to: to.into(),
            name: None,
        }
    }

    fn customer(id: &str, language: &str) -> Customer {
        let entry = CustomerEntry {
            id: id.into(),
            name: format!("Customer {id}"),
            timezone: "Europe/Oslo".into(),
            language: language.into(),
            opening_hours: vec!["mon-fri 08:00-16:00".into(), "12-24 08:00-12:00".into()],
            incident: Some(point("mail", &format!("servicedesk@{id}.no"))),
            change: Some(point("mail", &format!("change@{id}.no"))),
            local_support: Some(point("mail", &format!("helpdesk@{id}.no"))),
            technical: vec![
                point("sms", "+4791000001"),
                point("mail", &format!("ola.nordmann@{id}.no")),
            ],
            administrative: vec![point("mail", &format!("kontrakt@{id}.no"))],
        };
        check(&entry, &["mail".into(), "sms".into()]).0.unwrap()
    }

    fn routing() -> Routing {
        Routing::new(
            &[customer("a", "nb"), customer("b", "en")],
            vec![point("ssc-queue", "ssc"), point("ssc-mail", "ssc@sikt.no")],
            vec![point("campus-queue", "campus")],
            "nb".into(),
            Rules::default(),
        )
    }

    fn incident(customer: &str, severity: u8, opened_at: &str) -> Incident {
        let at = DateTime::parse_from_rfc3339(opened_at)
            .unwrap()
            .with_timezone(&Utc);
        Incident {
            id: 7,
            kind: "link_down".into(),
            state: "open".into(),
            severity,
            device: "d-b12".into(),
            if_index: Some(49),
            if_name: Some("Te1/1/1".into()),
            if_alias: Some("uplink core".into()),
            role: Some("uplink".into()),
            site: Some("b12".into()),
            customer: Some(customer.into()),
            summary: "Uplink Te1/1/1 on d-b12 is down".into(),
            opened_at: at,
            updated_at: at,
            resolved_at: None,
            transitions: None,
            escalated: false,
            in_maintenance: false,
            merged_into: None,
            impact: None,
        }
    }

    fn who(r: &[Recipient]) -> Vec<String> {
        r.iter()
            .map(|r| format!("{}:{}", r.audience.as_str(), r.point.to))
            .collect()
    }

    const SSC: [&str; 2] = ["ssc:ssc", "ssc:ssc@sikt.no"];

    #[test]
    fn opening_by_time_customer_and_severity() {
        let r = routing();
        // (when, open by the schedule)
        let times = [
            ("2026-11-24T09:00:00Z", "weekday daytime", true),
            ("2026-11-24T22:00:00Z", "weekday night", false),
            ("2026-11-28T10:00:00Z", "Saturday", false),
            ("2028-05-17T09:00:00Z", "17 May on a Wednesday", false),
            ("2027-03-26T09:00:00Z", "Good Friday", false),
            ("2026-12-24T09:30:00Z", "Christmas Eve morning", true),
            ("2026-12-24T13:00:00Z", "Christmas Eve afternoon", false),
            // DST starts 29 March 2026; Monday 30 March 08:30 CEST = 06:30 UTC is open,
            // 07:30 CEST = 05:30 UTC (08:30 in winter time) is not.
            ("2026-03-30T06:30:00Z", "after the DST change", true),
            (
                "2026-03-30T05:30:00Z",
                "before opening after the DST change",
                false,
            ),
            // DST ends 25 October 2026, 03:00 CEST -> 02:00 CET: a Sunday night.
            ("2026-10-25T01:30:00Z", "the DST change night", false),
        ];
        for (at, label, open) in times {
            for customer in ["a", "b"] {
                for severity in 1..=5 {
                    let got =
                        who(&r
                            .recipients(TransitionKind::Opened, &incident(customer, severity, at)));
                    let mut want: Vec<String> = SSC.iter().map(|s| (*s).to_owned()).collect();
                    want.push(format!("incident:servicedesk@{customer}.no"));
                    if severity <= 2 && !open {
                        want.push("technical:+4791000001".into());
                        want.push(format!("technical:ola.nordmann@{customer}.no"));
                    }
                    assert_eq!(
                        got, want,
                        "{label}, customer {customer}, severity {severity}"
                    );
                    // Never the other customer, never the administrative contacts.
                    let other = if customer == "a" { "b" } else { "a" };
                    assert!(got.iter().all(|w| !w.contains(&format!("@{other}.no"))));
                    assert!(got.iter().all(|w| !w.contains("kontrakt")));
                }
            }
        }
    }

    #[test]
    fn languages_follow_the_reader() {
        let r = routing();
        let got = r.recipients(
            TransitionKind::Opened,
            &incident("b", 1, "2026-11-24T22:00:00Z"),
        );
        let langs: Vec<(&str, &str)> = got
            .iter()
            .map(|r| (r.audience.as_str(), r.language.as_str()))
            .collect();
        assert_eq!(
            langs,
            [
                ("ssc", "nb"),
                ("ssc", "nb"),
                ("incident", "en"),
                ("technical", "en"),
                ("technical", "en")
            ]
        );
    }

    #[test]
    fn resolving_reaches_whoever_the_opening_reached() {
        let r = routing();
        let mut i = incident("a", 2, "2026-11-24T22:00:00Z");
        i.state = "resolved".into();
        // Resolved the next morning, inside opening hours: the technical contacts woken at
        // night still hear that it is over.
        i.resolved_at = Some(i.opened_at + TimeDelta::hours(11));
        assert_eq!(
            who(&r.recipients(TransitionKind::Resolved, &i)),
            who(&r.recipients(TransitionKind::Opened, &i))
        );
    }

    #[test]
    fn escalation_local_work_maintenance_and_failures() {
        let r = routing();
        let i = incident("a", 1, "2026-11-24T22:00:00Z");
        assert_eq!(
            who(&r.recipients(TransitionKind::Escalated, &i)),
            ["secondline:campus"]
        );
        assert_eq!(
            who(&r.recipients(TransitionKind::LocalWork, &i)),
            ["local_support:helpdesk@a.no"]
        );
        let mut m = i.clone();
        m.in_maintenance = true;
        assert_eq!(who(&r.recipients(TransitionKind::Opened, &m)), SSC);
        let mut f = i.clone();
        f.kind = NOTIFICATION_FAILED.into();
        f.device = "channel:ssc-queue".into();
        f.customer = None;
        assert_eq!(
            who(&r.recipients(TransitionKind::Opened, &f)),
            ["ssc:ssc@sikt.no"]
        );
        // An incident with no customer reaches SSC only; local work has nobody to ask.
        let mut n = i.clone();
        n.customer = None;
        assert_eq!(who(&r.recipients(TransitionKind::Opened, &n)), SSC);
        assert!(r.recipients(TransitionKind::LocalWork, &n).is_empty());
    }

    #[test]
    fn one_point_in_several_roles_is_told_once() {
        let mut c = customer("a", "nb");
        c.technical = vec![c.incident.clone()];
        let r = Routing::new(&[c], vec![], vec![], "nb".into(), Rules::default());
        let got = r.recipients(
            TransitionKind::Opened,
            &incident("a", 1, "2026-11-24T22:00:00Z"),
        );
        assert_eq!(who(&got), ["incident:servicedesk@a.no"]);
    }

    fn change(kind: crate::changes::ChangeKind) -> crate::changes::Change {
        let at = Utc::now();
        crate::changes::Change {
            id: 3,
            title: "Software upgrade".into(),
            description: String::new(),
            impact: String::new(),
            kind,
            state: crate::changes::ChangeState::Scheduled,
            revision: 1,
            reason: None,
            starts_at: at,
            ends_at: at,
            devices: vec!["d-b12".into()],
            customers: vec!["a".into()],
            notice_at: at,
            created_by: "ssc".into(),
        }
    }

    #[test]
    fn changes_reach_the_change_point_and_for_emergencies_the_technical_contacts() {
        let r = routing();
        let who = |v: Vec<(Recipient, Option<String>)>| -> Vec<String> {
            v.iter()
                .map(|(r, c)| {
                    format!(
                        "{}:{}:{}",
                        r.audience.as_str(),
                        r.point.to,
                        c.clone().unwrap_or_default()
                    )
                })
                .collect()
        };
        assert_eq!(
            who(r.change_recipients(&change(crate::changes::ChangeKind::Planned))),
            ["ssc:ssc:", "ssc:ssc@sikt.no:", "change:change@a.no:a"]
        );
        assert_eq!(
            who(r.change_recipients(&change(crate::changes::ChangeKind::Emergency))),
            [
                "ssc:ssc:",
                "ssc:ssc@sikt.no:",
                "change:change@a.no:a",
                "technical:+4791000001:a",
                "technical:ola.nordmann@a.no:a"
            ]
        );
        // Never customer B, never administrative contacts.
        let all = who(r.change_recipients(&change(crate::changes::ChangeKind::Emergency)));
        assert!(
            all.iter()
                .all(|w| !w.contains("b.no") && !w.contains("kontrakt"))
        );
    }

    #[test]
    fn openings_wait_for_the_grouping_window_from_the_first_sighting() {
        let r = routing();
        let now = Utc::now();
        // A device down is active at once: wait the whole window for its storm to join.
        assert_eq!(
            r.due_at(TransitionKind::Opened, "device_down", now),
            now + TimeDelta::seconds(10)
        );
        // A link was held 60 s already, longer than the window.
        assert_eq!(r.due_at(TransitionKind::Opened, "link_down", now), now);
        assert_eq!(r.due_at(TransitionKind::Resolved, "device_down", now), now);
    }
}
