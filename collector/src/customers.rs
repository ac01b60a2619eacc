//! Customers of the service and their five kinds of contact point, as the customer operating
//! instruction defines them (DESIGN.md section 1):
//!
//! | key | used for |
//! |---|---|
//! | `incident` | every incident the provider detects in the customer's network |
//! | `change` | every planned or emergency change |
//! | `local_support` | the customer's helpdesk; local hands-on work |
//! | `technical` (1..n) | serious incidents outside opening hours; may order changes |
//! | `administrative` (1..n) | commercial matters; never notified by monitoring |
//!
//! The first three should be functional (a shared mailbox or duty phone), not a person: the
//! loader warns when one looks personal.

use serde::{Deserialize, Serialize};

use crate::calendar::OpeningHours;

/// An address on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPoint {
    /// The `[[channel]]` it is reached through.
    pub channel: String,
    /// E-mail address, phone number (SMS gateway) or URL.
    pub to: String,
    /// A person's or function's name, for the message and the API.
    pub name: Option<String>,
}

/// `[[customer]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerEntry {
    /// Short id, used by devices and tokens (`customer:<id>`).
    pub id: String,
    /// Organisation name.
    pub name: String,
    /// Time zone of the opening hours.
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Language of its notifications: `nb` or `en`.
    #[serde(default = "default_language")]
    pub language: String,
    /// Weekly opening hours, e.g. `["mon-fri 08:00-16:00"]`; closed on public holidays.
    #[serde(default)]
    pub opening_hours: Vec<String>,
    /// Varslingspunkt Incidents.
    pub incident: Option<ContactPoint>,
    /// Varslingspunkt Change.
    pub change: Option<ContactPoint>,
    /// Lokalt supportpunkt.
    pub local_support: Option<ContactPoint>,
    /// Teknisk ansvarlig (one or more).
    #[serde(default)]
    pub technical: Vec<ContactPoint>,
    /// Juridisk/administrativ ansvarlig (one or more).
    #[serde(default)]
    pub administrative: Vec<ContactPoint>,
}

fn default_tz() -> String {
    "Europe/Oslo".into()
}

fn default_language() -> String {
    "nb".into()
}

/// A customer, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Customer {
    /// Id.
    pub id: String,
    /// Organisation name.
    pub name: String,
    /// Time zone name.
    pub timezone: String,
    /// `nb` or `en`.
    pub language: String,
    /// Opening hours as written.
    pub opening_hours: Vec<String>,
    /// Incident point.
    pub incident: ContactPoint,
    /// Change point.
    pub change: ContactPoint,
    /// Local support point.
    pub local_support: ContactPoint,
    /// Technical contacts.
    pub technical: Vec<ContactPoint>,
    /// Administrative contacts.
    pub administrative: Vec<ContactPoint>,
    /// Points that look personal (for the API and check-config).
    pub warnings: Vec<String>,
    #[serde(skip)]
    hours: Option<OpeningHours>,
}

impl Customer {
    /// Whether the customer is open at `at` (no schedule: never open, so serious incidents
    /// always reach the technical contacts).
    pub fn is_open(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        self.hours.as_ref().is_some_and(|h| h.is_open(at))
    }
}

/// Functional words that make a mailbox shared rather than personal.
const FUNCTIONAL: [&str; 16] = [
    "servicedesk",
    "service",
    "helpdesk",
    "support",
    "drift",
    "it",
    "noc",
    "soc",
    "change",
    "incident",
    "kundesenter",
    "post",
    "orakel",
    "brukerstotte",
    "vakt",
    "ikt",
];

/// Whether an address looks like one person's: `firstname.lastname@...`, or a phone number.
pub fn looks_personal(to: &str) -> bool {
    let to = to.trim();
    if let Some((local, _)) = to.split_once('@') {
        let local = local.to_lowercase();
        let parts: Vec<&str> = local
            .split(['.', '-', '_', '+'])
            .filter(|p| !p.is_empty())
            .collect();
        // A short functional word must be a whole part (`it@`, `it-drift@`), or it would
        // match inside names (`birgitte.hansen@`); longer ones may stand inside a part
        // (`itservicedesk@`).
        let functional = |p: &str| {
            FUNCTIONAL
                .iter()
                .any(|w| p == *w || (w.len() >= 4 && p.contains(w)))
        };
        if parts.iter().any(|p| functional(p)) {
            return false;
        }
        return parts.len() >= 2 && parts.iter().all(|p| p.chars().all(char::is_alphabetic));
    }
    // A phone number (SMS) is usually someone's own phone; a duty phone is the exception.
    let digits = to.chars().filter(char::is_ascii_digit).count();
    !to.starts_with("http")
        && digits >= 8
        && to.chars().all(|c| c.is_ascii_digit() || "+ -".contains(c))
}

/// Problems of one customer: (field, message, is_error).
pub type Finding = (&'static str, String, bool);

/// An error when a contact point refers to a channel that is not defined.
fn check_channel(
    field: &'static str,
    p: &ContactPoint,
    channels: &[String],
    findings: &mut Vec<Finding>,
) {
    if !channels.contains(&p.channel) {
        findings.push((
            field,
            format!(
                "`{field}` uses channel `{}`, which is not defined",
                p.channel
            ),
            true,
        ));
    }
}

/// Checks a customer entry against the channel names; returns the customer (if usable) and
/// every finding.
pub fn check(entry: &CustomerEntry, channels: &[String]) -> (Option<Customer>, Vec<Finding>) {
    let mut findings: Vec<Finding> = Vec::new();
    let point = |field: &'static str,
                 p: &Option<ContactPoint>,
                 functional: bool,
                 findings: &mut Vec<Finding>| {
        match p {
            None => {
                findings.push((
                    field,
                    format!("customer `{}` has no `{field}` contact point", entry.id),
                    true,
                ));
                None
            }
            Some(p) => {
                check_channel(field, p, channels, findings);
                if functional && looks_personal(&p.to) {
                    findings.push((
                        field,
                        format!("`{field}` of `{}` looks personal ({}); use a shared mailbox or duty phone", entry.id, p.to),
                        false,
                    ));
                }
                Some(p.clone())
            }
        }
    };
    let incident = point("incident", &entry.incident, true, &mut findings);
    let change = point("change", &entry.change, true, &mut findings);
    let local_support = point("local_support", &entry.local_support, true, &mut findings);
    for (field, list) in [
        ("technical", &entry.technical),
        ("administrative", &entry.administrative),
    ] {
        if list.is_empty() {
            findings.push((
                field,
                format!(
                    "customer `{}` needs at least one `{field}` contact",
                    entry.id
                ),
                true,
            ));
        }
        for p in list {
            check_channel(field, p, channels, &mut findings);
        }
    }
    if !["nb", "en"].contains(&entry.language.as_str()) {
        findings.push((
            "language",
            format!("language `{}`: use nb or en", entry.language),
            true,
        ));
    }
    let hours = match OpeningHours::parse(&entry.timezone, &entry.opening_hours) {
        Ok(h) => Some(h),
        Err(e) => {
            let field = if e.line == entry.timezone {
                "timezone"
            } else {
                "opening_hours"
            };
            findings.push((field, e.to_string(), true));
            None
        }
    };
    if entry.opening_hours.is_empty() {
        findings.push((
            "opening_hours",
            format!(
                "customer `{}` has no opening hours: it counts as always closed",
                entry.id
            ),
            false,
        ));
    }
    let warnings = findings
        .iter()
        .filter(|f| !f.2)
        .map(|f| f.1.clone())
        .collect();
    let customer = match (incident, change, local_support, hours) {
        (Some(incident), Some(change), Some(local_support), Some(hours))
            if findings.iter().all(|f| !f.2) =>
        {
            Some(Customer {
                id: entry.id.clone(),
                name: entry.name.clone(),
                timezone: entry.timezone.clone(),
                language: entry.language.clone(),
                opening_hours: entry.opening_hours.clone(),
                incident,
                change,
                local_support,
                technical: entry.technical.clone(),
                administrative: entry.administrative.clone(),
                warnings,
                hours: Some(hours),
            })
        }
        _ => None,
    };
    (customer, findings)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn personal_or_functional() {
        for (to, personal) in [
            ("servicedesk@uni-b.no", false),
            ("it-support@uni-b.no", false),
            ("ola.nordmann@uni-b.no", true),
            ("kari-anne.berg@uni-b.no", true),
            ("ola@uni-b.no", false),
            ("noc.drift@uni-b.no", false),
            // "it" is a functional word only as a whole part, not inside a name.
            ("birgitte.hansen@uni-b.no", true),
            ("it@uni-b.no", false),
            ("it.drift@uni-b.no", false),
            ("itservicedesk@uni-b.no", false),
            ("+47 912 34 567", true),
            ("https://sms.example.org/send", false),
        ] {
            assert_eq!(looks_personal(to), personal, "{to}");
        }
    }

    fn entry() -> CustomerEntry {
        let p = |to: &str| {
            Some(ContactPoint {
                channel: "mail".into(),
                to: to.into(),
                name: None,
            })
        };
        CustomerEntry {
            id: "uni-b".into(),
            name: "Universitetet i B".into(),
            timezone: default_tz(),
            language: "nb".into(),
            opening_hours: vec!["mon-fri 08:00-16:00".into()],
            incident: p("servicedesk@uni-b.no"),
            change: p("change@uni-b.no"),
            local_support: p("helpdesk@uni-b.no"),
            technical: vec![ContactPoint {
                channel: "mail".into(),
                to: "ola.nordmann@uni-b.no".into(),
                name: Some("Ola".into()),
            }],
            administrative: vec![ContactPoint {
                channel: "mail".into(),
                to: "kontrakt@uni-b.no".into(),
                name: None,
            }],
        }
    }

    #[test]
    fn a_complete_customer() {
        let (c, f) = check(&entry(), &["mail".into()]);
        assert!(f.is_empty(), "{f:?}");
        let c = c.unwrap();
        assert!(
            c.is_open(
                chrono::DateTime::parse_from_rfc3339("2026-11-24T09:00:00Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc)
            )
        );
    }

    #[test]
    fn missing_points_are_errors_personal_ones_warnings() {
        let mut e = entry();
        e.change = None;
        e.administrative.clear();
        e.incident = Some(ContactPoint {
            channel: "sms".into(),
            to: "ola.nordmann@uni-b.no".into(),
            name: None,
        });
        let (c, f) = check(&e, &["mail".into()]);
        assert!(c.is_none());
        let errors: Vec<&str> = f.iter().filter(|x| x.2).map(|x| x.0).collect();
        assert_eq!(errors, ["incident", "change", "administrative"], "{f:?}");
        assert!(
            f.iter()
                .any(|x| !x.2 && x.0 == "incident" && x.1.contains("looks personal")),
            "{f:?}"
        );
    }
}
