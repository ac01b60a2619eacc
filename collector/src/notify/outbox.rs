//! Writing notifications into the outbox, inside the transaction of the incident change.
//!
//! Each transition is numbered by the incident's history (`opened-1`, `resolved-1`,
//! `reopened-1`, `resolved-2`, ...), so the idempotency key `inc-ID/TRANSITION/AUDIENCE/
//! CHANNEL/ADDRESS` is the same however often the row is retried, and a repeated enqueue of the
//! same transition (a redelivered event) writes nothing.

use chrono::{DateTime, Utc};

use super::{Recipient, Routing, Transition, TransitionKind};
use crate::changes::{Change, ChangeOrder};
use crate::store::{About, IncidentTx, NewNotification, OutboxTx, StoreError};

/// What a batch of rows is about, shared by its recipients.
struct Subject<'a> {
    about: About,
    id: i64,
    transition: &'a str,
    detail: Option<String>,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

/// Queues one row for one recipient; false when its key was queued before.
fn queue(
    outbox: &mut dyn OutboxTx,
    s: &Subject<'_>,
    r: &Recipient,
    key: String,
    customer: Option<String>,
) -> Result<bool, StoreError> {
    outbox.enqueue(&NewNotification {
        key,
        about: s.about,
        about_id: s.id,
        customer,
        transition: s.transition.to_owned(),
        audience: r.audience.as_str().to_owned(),
        channel: r.point.channel.clone(),
        recipient: r.point.to.clone(),
        language: r.language.clone(),
        detail: s.detail.clone(),
        due_at: s.due_at,
        created_at: s.now,
    })
}

/// Routes the transitions and queues one notification per recipient. Returns how many were
/// queued. A resolution of an incident whose opening was never told (it resolved or was taken
/// into another incident within its grouping window) supersedes that opening and is not told
/// either: recipients hear of the grouped incident, not its parts.
pub fn enqueue(
    tx: &mut dyn IncidentTx,
    routing: &Routing,
    transitions: &[Transition],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let Some(outbox) = tx.outbox() else {
        return Ok(0);
    };
    let mut queued = 0;
    for t in transitions {
        let Some(incident) = outbox.incident(t.incident)? else {
            continue;
        };
        if t.kind == TransitionKind::Merged {
            // Taken into another incident: an opening not yet told is never told; one that
            // was told is followed by the other incident's resolution, not by a false one.
            outbox.opening_untold(t.incident, now)?;
            continue;
        }
        let recipients = if t.kind == TransitionKind::Resolved {
            told_of_an_opening(outbox, t.incident, now)?
        } else {
            routing.recipients(t.kind, &incident)
        };
        if recipients.is_empty() {
            continue;
        }
        let n = outbox.history_count(t.incident, t.kind.action())?.max(1);
        let transition = format!("{}-{n}", t.kind.action());
        let subject = Subject {
            about: About::Incident,
            id: incident.id,
            transition: &transition,
            detail: t.detail.clone(),
            due_at: routing.due_at(t.kind, &incident.kind, now),
            now,
        };
        for r in recipients {
            let key = format!(
                "inc-{}/{transition}/{}/{}/{}",
                incident.id,
                r.audience.as_str(),
                r.point.channel,
                r.point.to
            );
            let customer = incident
                .customer
                .clone()
                .filter(|_| r.audience.is_customer());
            if queue(outbox, &subject, &r, key, customer)? {
                queued += 1;
            }
        }
    }
    Ok(queued)
}

/// Who hears that an incident resolved: exactly those who heard of an opening (of it, a
/// re-opening, the end of its maintenance window, or of an incident merged into it). An
/// opening not yet sent is superseded first, so its recipients hear of neither.
fn told_of_an_opening(
    outbox: &mut dyn OutboxTx,
    incident: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Recipient>, StoreError> {
    if outbox.opening_untold(incident, now)? {
        tracing::info!(
            incident,
            "Resolved before its opening was sent: its recipients are told of neither."
        );
    }
    let mut recipients: Vec<Recipient> = Vec::new();
    for told in outbox.told_of(incident)? {
        // The same point in two roles is told once.
        if recipients
            .iter()
            .any(|r| r.point.channel == told.channel && r.point.to == told.recipient)
        {
            continue;
        }
        let Some(audience) = super::Audience::parse(&told.audience) else {
            continue;
        };
        recipients.push(Recipient {
            audience,
            point: crate::customers::ContactPoint {
                channel: told.channel,
                to: told.recipient,
                name: None,
            },
            language: told.language,
        });
    }
    Ok(recipients)
}

/// Queues the notices of a change: `announced-1`, `rescheduled-N` (N is the new revision) or
/// `cancelled-1`, one per recipient (see [`Routing::change_recipients`]), in the transaction
/// that stores the change. Returns how many were queued.
pub fn enqueue_change(
    outbox: &mut dyn OutboxTx,
    routing: &Routing,
    change: &Change,
    transition: &str,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for (r, customer) in routing.change_recipients(change) {
        let key = format!(
            "chg-{}/{transition}/{}/{}/{}/{}",
            change.id,
            r.audience.as_str(),
            customer.as_deref().unwrap_or("-"),
            r.point.channel,
            r.point.to
        );
        let subject = Subject {
            about: About::Change,
            id: change.id,
            transition,
            detail: change.reason.clone(),
            due_at: now,
            now,
        };
        if queue(outbox, &subject, &r, key, customer)? {
            queued += 1;
        }
    }
    Ok(queued)
}

/// Queues a customer's change order for SSC, in the transaction that stores it.
pub fn enqueue_order(
    outbox: &mut dyn OutboxTx,
    routing: &Routing,
    order: &ChangeOrder,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for r in routing.order_recipients() {
        let key = format!(
            "ord-{}/ordered-1/{}/{}/{}",
            order.id,
            r.audience.as_str(),
            r.point.channel,
            r.point.to
        );
        let subject = Subject {
            about: About::ChangeOrder,
            id: order.id,
            transition: "ordered-1",
            detail: None,
            due_at: now,
            now,
        };
        if queue(outbox, &subject, &r, key, None)? {
            queued += 1;
        }
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::correlate::Rules;
    use crate::customers::ContactPoint;
    use crate::store::{
        AlarmKind, Delivery, NewIncident, NotificationFilter, SqliteStore, Store, alarm_key,
    };

    fn routing() -> Routing {
        let ssc = vec![ContactPoint {
            channel: "q".into(),
            to: "ssc".into(),
            name: None,
        }];
        Routing::new(&[], ssc, vec![], "nb".into(), Rules::default())
    }

    fn new(kind: AlarmKind, device: &str) -> NewIncident {
        NewIncident {
            kind,
            key: alarm_key(device, None, kind),
            severity: 2,
            device: device.into(),
            if_index: None,
            if_name: None,
            if_alias: None,
            role: None,
            site: None,
            customer: None,
            summary: format!("{device} down"),
        }
    }

    /// Runs one transition in one transaction, the way the engine does.
    fn step(
        store: &SqliteStore,
        now: DateTime<Utc>,
        f: impl Fn(&mut dyn IncidentTx) -> (i64, TransitionKind),
    ) -> (i64, usize) {
        let r = routing();
        let mut out = (0, 0);
        store
            .transaction(&mut |tx| {
                let (id, kind) = f(tx);
                tx.note(id, now, kind.action(), None, "")?;
                let t = Transition {
                    incident: id,
                    kind,
                    detail: None,
                };
                out = (id, enqueue(tx, &r, &[t.clone(), t], now)?);
                Ok(())
            })
            .unwrap();
        out
    }

    fn states(store: &SqliteStore) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = store
            .list_notifications(&NotificationFilter {
                limit: 100,
                ..NotificationFilter::default()
            })
            .unwrap()
            .into_iter()
            .map(|n| (n.key, n.state))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn one_row_per_transition_and_recipient_and_silence_for_what_resolved_unseen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        let t0 = Utc::now();
        // A device down waits the grouping window; the same transition twice queues once.
        let (dev, queued) = step(&store, t0, |tx| {
            let id = tx.open(&new(AlarmKind::DeviceDown, "a1"), t0).unwrap();
            (id, TransitionKind::Opened)
        });
        assert_eq!(queued, 1);
        assert!(store.due_notifications(t0, 10).unwrap().is_empty());
        let later = t0 + chrono::TimeDelta::seconds(10);
        assert_eq!(store.due_notifications(later, 10).unwrap().len(), 1);
        // It resolves inside the window (taken into another incident): neither is told.
        let (_, queued) = step(&store, t0, |tx| {
            tx.resolve(dev, t0).unwrap();
            (dev, TransitionKind::Resolved)
        });
        assert_eq!(queued, 0);
        // A link was held already: due at once; once delivered, its resolution is told.
        let (link, _) = step(&store, t0, |tx| {
            let id = tx.open(&new(AlarmKind::LinkDown, "d1"), t0).unwrap();
            (id, TransitionKind::Opened)
        });
        let due = store.due_notifications(t0, 10).unwrap();
        assert_eq!(due.len(), 1);
        store
            .record_delivery(due[0].id, t0, &Delivery::Delivered)
            .unwrap();
        let (_, queued) = step(&store, t0, |tx| {
            tx.resolve(link, t0).unwrap();
            (link, TransitionKind::Resolved)
        });
        assert_eq!(queued, 1);
        assert_eq!(
            states(&store),
            [
                (format!("inc-{dev}/opened-1/ssc/q/ssc"), "superseded".into()),
                (format!("inc-{link}/opened-1/ssc/q/ssc"), "delivered".into()),
                (format!("inc-{link}/resolved-1/ssc/q/ssc"), "pending".into()),
            ]
        );
    }
}
