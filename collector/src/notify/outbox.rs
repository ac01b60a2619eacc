//! Writing notifications into the outbox, inside the transaction of the incident change.
//!
//! Each transition is numbered by the incident's history (`opened-1`, `resolved-1`,
//! `reopened-1`, `resolved-2`, ...), so the idempotency key `inc-ID/TRANSITION/AUDIENCE/
//! CHANNEL/ADDRESS` is the same however often the row is retried, and a repeated enqueue of the
//! same transition (a redelivered event) writes nothing.

use chrono::{DateTime, Utc};

use super::{Routing, Transition, TransitionKind};
use crate::store::{IncidentTx, NewNotification, StoreError};

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
        if t.kind == TransitionKind::Resolved && outbox.supersede_unsent(t.incident, now)? > 0 {
            tracing::info!(
                incident = t.incident,
                "Resolved before its opening was due: nobody is told of either."
            );
            continue;
        }
        let n = outbox.history_count(t.incident, t.kind.action())?.max(1);
        let transition = format!("{}-{n}", t.kind.action());
        let due_at = routing.due_at(t.kind, &incident.kind, now);
        for r in routing.recipients(t.kind, &incident) {
            let key = format!(
                "inc-{}/{transition}/{}/{}/{}",
                incident.id,
                r.audience.as_str(),
                r.point.channel,
                r.point.to
            );
            if outbox.enqueue(&NewNotification {
                key,
                incident: incident.id,
                transition: transition.clone(),
                audience: r.audience.as_str().to_owned(),
                channel: r.point.channel.clone(),
                recipient: r.point.to.clone(),
                language: r.language.clone(),
                detail: t.detail.clone(),
                due_at,
                created_at: now,
            })? {
                queued += 1;
            }
        }
    }
    Ok(queued)
}
