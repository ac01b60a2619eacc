//! The collector's own alarm: when ingestion stalls, SSC is told directly on its channels,
//! not through the outbox. The store may be what stalls it (a full disk, a file-size limit, a
//! damaged file), and a notice queued in a store that cannot write would never leave.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use super::channels::Channels;
use super::render::Message;
use crate::customers::ContactPoint;
use crate::metrics::CollectorMetrics;
use crate::store::{About, Notification};

/// Ingestion's state as told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingestion {
    /// Messages wait and nothing has been stored for a while.
    Stalled,
    /// Stored again after a stall.
    Moving,
}

impl Ingestion {
    fn as_str(self) -> &'static str {
        match self {
            Ingestion::Stalled => "ingest_stalled",
            Ingestion::Moving => "ingest_moving",
        }
    }
}

/// What telling SSC directly needs.
#[derive(Clone)]
pub struct OutOfBand {
    /// The channels.
    pub channels: Channels,
    /// SSC's contact points.
    pub ssc: Vec<ContactPoint>,
    /// SSC's language (`nb` or `en`).
    pub language: String,
    /// This collector's id.
    pub collector: String,
    /// Metrics (deliveries counted per channel).
    pub metrics: CollectorMetrics,
}

impl std::fmt::Debug for OutOfBand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutOfBand")
            .field("collector", &self.collector)
            .finish_non_exhaustive()
    }
}

/// The message of a stall (or its end) since `since` with `waiting` messages.
pub fn message(
    collector: &str,
    language: &str,
    what: Ingestion,
    since: DateTime<Utc>,
    waiting: i64,
    key: &str,
) -> Message {
    let at = since.to_rfc3339_opts(SecondsFormat::Secs, true);
    let (subject, body) = match (what, language) {
        (Ingestion::Stalled, "nb") => (
            format!("[CNaaS S1] Innsamlingen står: {collector} lagrer ingen hendelser"),
            format!(
                "Innsamleren {collector} har ikke lagret noe siden {at}, og {waiting} meldinger venter.\n\
                 Nye feil i nettet blir ikke meldt før den går igjen. Sjekk /healthz, loggen og lageret (disk, filstørrelse).\n\
                 Nøkkel: {key}\n"
            ),
        ),
        (Ingestion::Stalled, _) => (
            format!("[CNaaS S1] Ingestion stalled: {collector} stores no events"),
            format!(
                "Collector {collector} has stored nothing since {at}, and {waiting} messages wait.\n\
                 New faults in the network are not reported until it moves again. Check /healthz, the log and the store (disk, file size).\n\
                 Key: {key}\n"
            ),
        ),
        (Ingestion::Moving, "nb") => (
            format!("[CNaaS] Innsamlingen går igjen: {collector}"),
            format!(
                "Innsamleren {collector} lagrer igjen (stod fra {at}). Hendelser fra tiden den stod, blir behandlet nå.\nNøkkel: {key}\n"
            ),
        ),
        (Ingestion::Moving, _) => (
            format!("[CNaaS] Ingestion moves again: {collector}"),
            format!(
                "Collector {collector} stores again (stalled from {at}). Events of the stall are being processed now.\nKey: {key}\n"
            ),
        ),
    };
    let payload = json!({
        "schema": "cnaas.notification.v1",
        "key": key,
        "kind": what.as_str(),
        "collector": collector,
        "since": at,
        "waiting": waiting,
        "subject": subject,
        "text": body,
    });
    Message {
        subject,
        body,
        payload,
    }
}

impl OutOfBand {
    /// Tells every SSC point (three tries each, 2 s apart); returns how many took it.
    pub async fn tell(&self, what: Ingestion, since: DateTime<Utc>, waiting: i64) -> usize {
        let key = format!(
            "collector/{}/{}/{}",
            self.collector,
            what.as_str(),
            since.timestamp_millis()
        );
        let m = message(&self.collector, &self.language, what, since, waiting, &key);
        let now = Utc::now();
        let mut told = 0;
        for p in &self.ssc {
            let n = Notification {
                id: 0,
                key: format!("{key}/{}/{}", p.channel, p.to),
                about: About::Incident,
                about_id: 0,
                customer: None,
                transition: what.as_str().to_owned(),
                audience: "ssc".to_owned(),
                channel: p.channel.clone(),
                recipient: p.to.clone(),
                language: self.language.clone(),
                detail: None,
                state: "pending".to_owned(),
                attempts: 0,
                created_at: now,
                due_at: now,
                delivered_at: None,
                last_error: None,
                subject: Some(m.subject.clone()),
                body: Some(m.body.clone()),
                payload: Some(m.payload.clone()),
                delayed: false,
            };
            for attempt in 1..=3 {
                match self.channels.deliver(&n, &m).await {
                    Ok(()) => {
                        told += 1;
                        self.metrics.count_notification(&p.channel, "delivered");
                        break;
                    }
                    Err(e) => {
                        self.metrics.count_notification(&p.channel, "retry");
                        tracing::error!(channel = %p.channel, attempt, error = %e, "Cannot tell SSC about the collector's ingestion.");
                        if attempt < 3 {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                }
            }
        }
        told
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_what_stalled_since_when_in_ssc_s_language() {
        let since = DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let m = message("collector-1", "nb", Ingestion::Stalled, since, 1234, "k");
        assert!(
            m.subject.contains("Innsamlingen står: collector-1"),
            "{}",
            m.subject
        );
        assert!(m.body.contains("2026-12-02T08:00:00Z") && m.body.contains("1234 meldinger"));
        assert_eq!(m.payload["kind"], "ingest_stalled");
        let m = message("collector-1", "en", Ingestion::Moving, since, 0, "k");
        assert!(m.subject.contains("moves again"), "{}", m.subject);
        assert_eq!(m.payload["kind"], "ingest_moving");
    }
}
