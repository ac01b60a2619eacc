//! Planned and emergency changes (DESIGN.md section 3, the customer operating instruction).
//!
//! A `planned` change is accepted only if its start date is at least the notice date plus 8
//! Norwegian working days, both dates taken in Europe/Oslo; otherwise the earliest allowed start
//! date is given back. An `emergency` change is accepted at once. While a change window is
//! active, incidents on its devices are flagged `in_maintenance` (the correlator's
//! [`Maintenance`] hook).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Oslo;
use serde::{Deserialize, Serialize};

use crate::calendar::add_working_days;
use crate::config::Inventory;
use crate::correlate::Maintenance;
use crate::store::Store;

/// Working days between the notice and a planned change's start.
pub const NOTICE_WORKING_DAYS: u32 = 8;

/// Planned or emergency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Announced at least 8 working days ahead.
    Planned,
    /// Announced as early as possible.
    Emergency,
}

/// A change as requested through the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// What.
    pub title: String,
    /// Details.
    #[serde(default)]
    pub description: String,
    /// Expected impact for users ("the network at B12 is down for up to 15 minutes").
    #[serde(default)]
    pub impact: String,
    /// Planned or emergency.
    pub kind: ChangeKind,
    /// Window start.
    pub starts_at: DateTime<Utc>,
    /// Window end.
    pub ends_at: DateTime<Utc>,
    /// Affected devices.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Affected sites (all their devices).
    #[serde(default)]
    pub sites: Vec<String>,
}

/// Scheduled or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeState {
    /// Will happen (or is happening) in its window.
    Scheduled,
    /// Called off; its window no longer suppresses anything.
    Cancelled,
}

impl Change {
    /// The part of the change that concerns customer `own`: its devices, and itself as the
    /// only customer (a change shared with others does not show them to it).
    pub fn for_customer(mut self, own: &str, inventory: &Inventory) -> Change {
        self.devices.retain(|d| {
            inventory
                .devices
                .get(d)
                .is_some_and(|dev| dev.customer.as_deref() == Some(own))
        });
        self.customers.retain(|x| x == own);
        self
    }

    /// Where the change stands at `now`: `scheduled`, `active` (inside its window), `done`
    /// (the window is over) or `cancelled`. Only scheduled/cancelled is stored; the rest
    /// follows from the clock.
    pub fn phase(&self, now: DateTime<Utc>) -> &'static str {
        match self.state {
            ChangeState::Cancelled => "cancelled",
            ChangeState::Scheduled if self.ends_at <= now => "done",
            ChangeState::Scheduled if self.starts_at <= now => "active",
            ChangeState::Scheduled => "scheduled",
        }
    }

    /// The API's view: the stored fields with `state` as the [`phase`](Change::phase) at `now`.
    pub fn to_api_json(&self, now: DateTime<Utc>) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("state".into(), self.phase(now).into());
        }
        v
    }
}

/// A stored change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Id.
    pub id: i64,
    /// What.
    pub title: String,
    /// Details.
    pub description: String,
    /// Expected impact.
    pub impact: String,
    /// Planned or emergency.
    pub kind: ChangeKind,
    /// Scheduled or cancelled.
    pub state: ChangeState,
    /// 1, then one more on every reschedule.
    pub revision: u32,
    /// Why it was rescheduled or cancelled (the latest).
    pub reason: Option<String>,
    /// Window start.
    pub starts_at: DateTime<Utc>,
    /// Window end.
    pub ends_at: DateTime<Utc>,
    /// Affected devices (sites expanded).
    pub devices: Vec<String>,
    /// Affected customers (from the devices).
    pub customers: Vec<String>,
    /// When it was announced (or last rescheduled).
    pub notice_at: DateTime<Utc>,
    /// Who announced it.
    pub created_by: String,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Too late for a planned change.
    #[error(
        "a planned change must start at least {NOTICE_WORKING_DAYS} working days after the notice; the earliest allowed start date is {earliest}"
    )]
    TooEarly {
        /// The earliest allowed start date (Europe/Oslo).
        earliest: NaiveDate,
    },
    /// Anything else wrong with it.
    #[error("{0}")]
    Invalid(String),
}

/// A new window for a change, as requested through the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// New start.
    pub starts_at: DateTime<Utc>,
    /// New end.
    pub ends_at: DateTime<Utc>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A cancellation, as requested through the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Checks a new window for a stored change, announced again at `notice`: a planned change
/// needs the full notice for its new start too; a cancelled one cannot move.
pub fn check_reschedule(
    change: &Change,
    req: &RescheduleRequest,
    notice: DateTime<Utc>,
) -> Result<(), ChangeError> {
    if change.state == ChangeState::Cancelled {
        return Err(ChangeError::Invalid(format!(
            "change {} is cancelled; announce a new one",
            change.id
        )));
    }
    if req.ends_at <= req.starts_at {
        return Err(ChangeError::Invalid(
            "the window must end after it starts".into(),
        ));
    }
    if change.kind == ChangeKind::Planned {
        let earliest = earliest_start(notice);
        if req.starts_at.with_timezone(&Oslo).date_naive() < earliest {
            return Err(ChangeError::TooEarly { earliest });
        }
    }
    Ok(())
}

/// A change ordered by a customer, as requested through the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The customer (a customer token's own is taken when left out).
    #[serde(default)]
    pub customer: Option<String>,
    /// What.
    pub title: String,
    /// Details: where, why.
    #[serde(default)]
    pub description: String,
    /// Wanted window start, if any.
    #[serde(default)]
    pub wanted_from: Option<DateTime<Utc>>,
    /// Wanted window end, if any.
    #[serde(default)]
    pub wanted_to: Option<DateTime<Utc>>,
}

/// A stored change order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeOrder {
    /// Id.
    pub id: i64,
    /// The customer.
    pub customer: String,
    /// The token that ordered it.
    pub requested_by: String,
    /// The technical contact it was ordered as.
    pub contact: String,
    /// What.
    pub title: String,
    /// Details.
    pub description: String,
    /// Wanted window start.
    pub wanted_from: Option<DateTime<Utc>>,
    /// Wanted window end.
    pub wanted_to: Option<DateTime<Utc>>,
    /// `submitted` (queued for SSC).
    pub state: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Why a change order is refused: only a registered `technical` contact of the customer may
/// order changes (the operating instruction); a third party goes through one of them.
pub fn check_order_contact(
    customer: &crate::customers::Customer,
    contact: Option<&str>,
) -> Result<String, String> {
    let Some(contact) = contact.map(str::trim).filter(|c| !c.is_empty()) else {
        return Err(format!(
            "this token names no contact person; only the technical contacts of `{}` may order changes",
            customer.id
        ));
    };
    let same = |p: &crate::customers::ContactPoint| p.to.eq_ignore_ascii_case(contact);
    if customer.technical.iter().any(same) {
        return Ok(contact.to_owned());
    }
    if customer.administrative.iter().any(same) {
        return Err(format!(
            "`{contact}` is an administrative contact of `{}`; only its technical contacts may order changes",
            customer.id
        ));
    }
    Err(format!(
        "`{contact}` is not a registered technical contact of `{}`; only technical contacts may order changes, and third parties must order through one of them",
        customer.id
    ))
}

/// The earliest start date of a planned change announced at `notice` (dates in Europe/Oslo).
pub fn earliest_start(notice: DateTime<Utc>) -> NaiveDate {
    add_working_days(
        notice.with_timezone(&Oslo).date_naive(),
        NOTICE_WORKING_DAYS,
    )
}

/// Checks a request announced at `notice` and expands its sites to devices.
pub fn check(
    req: &ChangeRequest,
    notice: DateTime<Utc>,
    inventory: &Inventory,
) -> Result<(Vec<String>, Vec<String>), ChangeError> {
    if req.title.trim().is_empty() {
        return Err(ChangeError::Invalid("a change needs a title".into()));
    }
    if req.ends_at <= req.starts_at {
        return Err(ChangeError::Invalid(
            "the window must end after it starts".into(),
        ));
    }
    let mut devices: Vec<String> = Vec::new();
    for d in &req.devices {
        if !inventory.devices.contains_key(d) {
            return Err(ChangeError::Invalid(format!(
                "device `{d}` is not in the inventory"
            )));
        }
        devices.push(d.clone());
    }
    for site in &req.sites {
        let mut found = false;
        for (name, d) in &inventory.devices {
            if d.site.as_deref() == Some(site.as_str()) {
                found = true;
                if !devices.contains(name) {
                    devices.push(name.clone());
                }
            }
        }
        if !found {
            return Err(ChangeError::Invalid(format!(
                "site `{site}` has no devices in the inventory"
            )));
        }
    }
    if devices.is_empty() {
        return Err(ChangeError::Invalid(
            "a change needs affected devices or sites".into(),
        ));
    }
    devices.sort();
    if req.kind == ChangeKind::Planned {
        let earliest = earliest_start(notice);
        if req.starts_at.with_timezone(&Oslo).date_naive() < earliest {
            return Err(ChangeError::TooEarly { earliest });
        }
    }
    let customers: HashSet<String> = devices
        .iter()
        .filter_map(|d| inventory.devices.get(d).and_then(|x| x.customer.clone()))
        .collect();
    let mut customers: Vec<String> = customers.into_iter().collect();
    customers.sort();
    Ok((devices, customers))
}

/// Maintenance windows read from the stored changes.
pub struct StoredWindows {
    /// The store.
    pub store: Arc<dyn Store>,
}

impl Maintenance for StoredWindows {
    fn in_window(&self, device: &str, now: DateTime<Utc>) -> bool {
        match self.store.changes() {
            Ok(list) => list.iter().any(|c| {
                c.state == ChangeState::Scheduled
                    && c.starts_at <= now
                    && now < c.ends_at
                    && c.devices.iter().any(|d| d == device)
            }),
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the change windows.");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::InventoryDevice;

    fn inv() -> Inventory {
        let mut i = Inventory::default();
        i.devices.insert(
            "a1".into(),
            InventoryDevice {
                site: Some("b12".into()),
                customer: Some("uni-b".into()),
                ..Default::default()
            },
        );
        i.devices.insert(
            "a2".into(),
            InventoryDevice {
                site: Some("b12".into()),
                customer: Some("uni-b".into()),
                ..Default::default()
            },
        );
        i
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn req(kind: ChangeKind, start: &str) -> ChangeRequest {
        ChangeRequest {
            title: "Software upgrade".into(),
            description: String::new(),
            impact: String::new(),
            kind,
            starts_at: at(start),
            ends_at: at(start) + chrono::TimeDelta::hours(2),
            devices: vec![],
            sites: vec!["b12".into()],
        }
    }

    #[test]
    fn the_eight_working_day_rule() {
        // Notice Tuesday 23 March 2027 (Easter week): earliest start Wednesday 7 April.
        let notice = at("2027-03-23T10:00:00Z");
        assert_eq!(
            earliest_start(notice),
            NaiveDate::from_ymd_opt(2027, 4, 7).unwrap()
        );
        let ok = check(
            &req(ChangeKind::Planned, "2027-04-07T18:00:00Z"),
            notice,
            &inv(),
        )
        .unwrap();
        assert_eq!(ok.0, ["a1", "a2"]);
        assert_eq!(ok.1, ["uni-b"]);
        // The day before is refused, with the earliest date.
        let e = check(
            &req(ChangeKind::Planned, "2027-04-06T18:00:00Z"),
            notice,
            &inv(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            ChangeError::TooEarly {
                earliest: NaiveDate::from_ymd_opt(2027, 4, 7).unwrap()
            }
        );
        // An emergency change is accepted at once.
        assert!(
            check(
                &req(ChangeKind::Emergency, "2027-03-23T12:00:00Z"),
                notice,
                &inv()
            )
            .is_ok()
        );
        // 22:30 UTC on 6 April is already 7 April in Oslo (CEST): accepted.
        assert!(
            check(
                &req(ChangeKind::Planned, "2027-04-06T22:30:00Z"),
                notice,
                &inv()
            )
            .is_ok()
        );
    }

    #[test]
    fn working_day_table_with_the_boundary_day_accepted_and_the_day_before_refused() {
        // (notice, earliest allowed start), worked out by hand from the holiday list.
        let table = [
            // Easter 2026: Maundy Thursday 2 Apr, Good Friday 3 Apr, Easter Monday 6 Apr.
            ("2026-03-30T09:00:00Z", "2026-04-14"),
            // Easter 2027 (28 Mar): 25, 26 and 29 Mar.
            ("2027-03-23T10:00:00Z", "2027-04-07"),
            // Easter 2028 (16 Apr): 13, 14 and 17 Apr.
            ("2028-04-10T09:00:00Z", "2028-04-25"),
            // Easter 2030 (21 Apr): 18, 19 and 22 Apr.
            ("2030-04-15T09:00:00Z", "2030-04-30"),
            // 17 May on a Wednesday (2028), then Ascension Day on 25 May.
            ("2028-05-12T09:00:00Z", "2028-05-26"),
            // 17 May on a Sunday (2026) costs nothing; Ascension 14 May does.
            ("2026-05-11T09:00:00Z", "2026-05-22"),
            // Whit Monday 25 May 2026.
            ("2026-05-15T09:00:00Z", "2026-05-28"),
            // 2027: Ascension 6 May; Whit Monday falls on 17 May.
            ("2027-05-03T09:00:00Z", "2027-05-14"),
            ("2027-05-10T09:00:00Z", "2027-05-21"),
            // Christmas to New Year 2027/28: 25 and 26 Dec and 1 Jan fall on weekends.
            ("2027-12-22T09:00:00Z", "2028-01-03"),
            // Christmas to New Year 2030/31: 25, 26 Dec and 1 Jan are weekdays.
            ("2030-12-20T09:00:00Z", "2031-01-06"),
            // A notice on a Saturday or Sunday counts from the next Monday.
            ("2026-11-28T09:00:00Z", "2026-12-09"),
            ("2026-11-29T09:00:00Z", "2026-12-09"),
            // 23:30 UTC on Thursday is already Friday in Oslo: counted from Friday.
            ("2026-11-26T23:30:00Z", "2026-12-09"),
        ];
        for (notice, want) in table {
            let notice = at(notice);
            let want: NaiveDate = want.parse().unwrap();
            assert_eq!(earliest_start(notice), want, "notice {notice}");
            let noon = |d: NaiveDate| d.and_hms_opt(10, 0, 0).unwrap().and_utc();
            let on_the_day = noon(want).to_rfc3339();
            assert!(
                check(&req(ChangeKind::Planned, &on_the_day), notice, &inv()).is_ok(),
                "{want} itself must be accepted"
            );
            let before = noon(want.pred_opt().unwrap()).to_rfc3339();
            assert_eq!(
                check(&req(ChangeKind::Planned, &before), notice, &inv()),
                Err(ChangeError::TooEarly { earliest: want }),
                "the day before {want} must be refused"
            );
        }
    }

    #[test]
    fn a_shared_change_shows_each_customer_its_part() {
        let mut inventory = inv();
        inventory.devices.insert(
            "c1".into(),
            InventoryDevice {
                customer: Some("uni-c".into()),
                ..Default::default()
            },
        );
        let c = Change {
            id: 1,
            title: "Core upgrade".into(),
            description: String::new(),
            impact: String::new(),
            kind: ChangeKind::Planned,
            state: ChangeState::Scheduled,
            revision: 1,
            reason: None,
            starts_at: at("2027-04-08T18:00:00Z"),
            ends_at: at("2027-04-08T20:00:00Z"),
            devices: vec!["a1".into(), "c1".into(), "a2".into()],
            customers: vec!["uni-b".into(), "uni-c".into()],
            notice_at: at("2027-03-23T10:00:00Z"),
            created_by: "ssc".into(),
        };
        let b = c.clone().for_customer("uni-b", &inventory);
        assert_eq!(
            (b.devices.as_slice(), b.customers.as_slice()),
            (
                &["a1".to_owned(), "a2".to_owned()][..],
                &["uni-b".to_owned()][..]
            )
        );
        let cc = c.for_customer("uni-c", &inventory);
        assert_eq!(
            (cc.devices.as_slice(), cc.customers.as_slice()),
            (&["c1".to_owned()][..], &["uni-c".to_owned()][..])
        );
    }

    #[test]
    fn reschedules_need_the_notice_again_and_orders_a_technical_contact() {
        let notice = at("2027-03-23T10:00:00Z");
        let mut c = Change {
            id: 1,
            title: "Upgrade".into(),
            description: String::new(),
            impact: String::new(),
            kind: ChangeKind::Planned,
            state: ChangeState::Scheduled,
            revision: 1,
            reason: None,
            starts_at: at("2027-04-08T18:00:00Z"),
            ends_at: at("2027-04-08T20:00:00Z"),
            devices: vec!["a1".into()],
            customers: vec!["uni-b".into()],
            notice_at: notice,
            created_by: "ssc".into(),
        };
        let to = |start: &str| RescheduleRequest {
            starts_at: at(start),
            ends_at: at(start) + chrono::TimeDelta::hours(2),
            reason: None,
        };
        assert!(check_reschedule(&c, &to("2027-04-07T18:00:00Z"), notice).is_ok());
        assert!(matches!(
            check_reschedule(&c, &to("2027-04-06T18:00:00Z"), notice),
            Err(ChangeError::TooEarly { .. })
        ));
        c.kind = ChangeKind::Emergency;
        assert!(check_reschedule(&c, &to("2027-03-23T18:00:00Z"), notice).is_ok());
        c.state = ChangeState::Cancelled;
        assert!(check_reschedule(&c, &to("2027-04-20T18:00:00Z"), notice).is_err());

        let point = |to: &str| crate::customers::ContactPoint {
            channel: "mail".into(),
            to: to.into(),
            name: None,
        };
        let customer = crate::customers::check(
            &crate::customers::CustomerEntry {
                id: "uni-b".into(),
                name: "Uni B".into(),
                timezone: "Europe/Oslo".into(),
                language: "nb".into(),
                opening_hours: vec!["mon-fri 08:00-16:00".into()],
                incident: Some(point("servicedesk@uni-b.no")),
                change: Some(point("servicedesk@uni-b.no")),
                local_support: Some(point("helpdesk@uni-b.no")),
                technical: vec![point("Ola.Nordmann@uni-b.no")],
                administrative: vec![point("kontrakt@uni-b.no")],
            },
            &["mail".into()],
        )
        .0
        .unwrap();
        assert_eq!(
            check_order_contact(&customer, Some("ola.nordmann@uni-b.no")),
            Ok("ola.nordmann@uni-b.no".into())
        );
        for (who, reason) in [
            (Some("kontrakt@uni-b.no"), "administrative contact"),
            (Some("someone@consulting.example"), "through one of them"),
            (None, "names no contact"),
        ] {
            let e = check_order_contact(&customer, who).unwrap_err();
            assert!(e.contains(reason), "{who:?}: {e}");
        }
    }

    #[test]
    fn bad_requests() {
        let notice = at("2026-11-24T10:00:00Z");
        let mut r = req(ChangeKind::Emergency, "2026-11-24T12:00:00Z");
        r.sites = vec!["nowhere".into()];
        assert!(matches!(
            check(&r, notice, &inv()),
            Err(ChangeError::Invalid(_))
        ));
        let mut r = req(ChangeKind::Emergency, "2026-11-24T12:00:00Z");
        r.ends_at = r.starts_at;
        assert!(matches!(
            check(&r, notice, &inv()),
            Err(ChangeError::Invalid(_))
        ));
        let mut r = req(ChangeKind::Emergency, "2026-11-24T12:00:00Z");
        r.sites.clear();
        assert!(matches!(
            check(&r, notice, &inv()),
            Err(ChangeError::Invalid(_))
        ));
    }
}
