//! Ingest: subscribes to every agent's events and status over MQTT (QoS 1, manual
//! acknowledgement), validates each message, and hands it to the engine. A malformed or
//! unknown-version message becomes a dead letter with the agent id from its topic; it never
//! stops ingestion.

use std::time::{Duration, Instant};

use chrono::Utc;
use cnaas_shared::topics::{self, Topic};
use cnaas_shared::{DecodeError, Event};
use rumqttc::{AsyncClient, Event as MqttEvent, EventLoop, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{Envelope, Input};
use crate::metrics::CollectorMetrics;
use crate::store::DeadLetter;

/// The event subscription, shared among collectors of a group when one is set.
pub fn event_filter(shared_group: Option<&str>) -> String {
    match shared_group {
        Some(g) => format!("$share/{g}/{}", topics::EVENTS_FILTER),
        None => topics::EVENTS_FILTER.to_owned(),
    }
}

/// Largest event or status message taken (an event is well under 4 KiB); a larger one is a
/// dead letter.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How much of a refused message's payload the dead letter keeps.
pub const DEAD_LETTER_BYTES: usize = 4 * 1024;

/// Turns one MQTT message into an engine input.
pub fn classify(publish: &Publish, received: Instant) -> Input {
    let dead = |agent: Option<&str>, reason: String, label: &'static str| Input::DeadLetter {
        letter: DeadLetter {
            received_at: Utc::now(),
            topic: publish.topic.chars().take(256).collect(),
            agent: agent.map(|a| a.chars().take(128).collect()),
            reason,
            payload: publish.payload[..publish.payload.len().min(DEAD_LETTER_BYTES)].to_vec(),
        },
        reason: label,
    };
    if publish.payload.len() > MAX_MESSAGE_BYTES {
        let agent = match topics::parse(&publish.topic) {
            Some(Topic::Event { agent, .. } | Topic::Status { agent }) => Some(agent),
            None => None,
        };
        return dead(
            agent,
            format!(
                "message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte limit (the first {DEAD_LETTER_BYTES} bytes are kept)",
                publish.payload.len()
            ),
            "too_large",
        );
    }
    match topics::parse(&publish.topic) {
        Some(Topic::Event { agent, device }) => match Event::from_json(&publish.payload) {
            Ok(event) if event.agent == agent && event.device == device => {
                Input::Event { event, received }
            }
            Ok(event) => dead(
                Some(agent),
                format!(
                    "topic names agent `{agent}` and device `{device}` but the payload says `{}` and `{}`",
                    event.agent, event.device
                ),
                "topic_mismatch",
            ),
            Err(e) => {
                let label = e.reason_label();
                let reason = match &e {
                    DecodeError::Json(_) => e.to_string(),
                    _ => format!("invalid event: {e}"),
                };
                dead(Some(agent), reason, label)
            }
        },
        Some(Topic::Status { agent }) => {
            let payload = String::from_utf8_lossy(&publish.payload).into_owned();
            let status = serde_json::from_slice::<serde_json::Value>(&publish.payload)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned));
            match status {
                Some(status) => Input::Status {
                    agent: agent.to_owned(),
                    status,
                    payload,
                },
                None => dead(
                    Some(agent),
                    "status message without a `status` string".into(),
                    "bad_status",
                ),
            }
        }
        None => dead(None, "not a cnaas/v1 topic".into(), "unknown_topic"),
    }
}

/// Acknowledgements from the engine to the ingest task. Never bounded and never dropped: an
/// acknowledgement lost leaves the message in the broker's in-flight window, and once the
/// window is full the broker sends nothing more (ingestion stalls). They are at most as many as
/// the messages in flight.
#[derive(Debug, Clone)]
pub struct AckSender(pub mpsc::UnboundedSender<Publish>);

impl crate::engine::Acker for AckSender {
    fn ack(&self, publish: &Publish) {
        // Only the packet id and QoS matter for a PUBACK: the payload stays behind.
        let mut p = Publish::new(publish.topic.clone(), publish.qos, Vec::new());
        p.pkid = publish.pkid;
        if self.0.send(p).is_err() {
            tracing::warn!(topic = %publish.topic, "Ingest has stopped; the broker will redeliver this message.");
        }
    }
}

/// What the ingest task owns.
pub struct Ingest {
    /// MQTT client (manual acknowledgements).
    pub client: AsyncClient,
    /// Its event loop.
    pub eventloop: EventLoop,
    /// Shared-subscription group, if any.
    pub shared_group: Option<String>,
    /// Where inputs go.
    pub tx: mpsc::Sender<Envelope>,
    /// Metrics.
    pub metrics: CollectorMetrics,
    /// Acknowledgements from the engine.
    pub acks: mpsc::UnboundedReceiver<Publish>,
}

/// Runs the MQTT side until `token` is cancelled. Then it stops forwarding, keeps the
/// connection up while the engine commits and acknowledges what it holds (bounded by
/// `drain_limit`), and disconnects. Messages not forwarded are not acknowledged, so the
/// broker redelivers them to the next session.
pub async fn run(
    ingest: Ingest,
    token: CancellationToken,
    engine_done: CancellationToken,
    drain_limit: Duration,
) {
    let Ingest {
        client,
        mut eventloop,
        shared_group,
        tx,
        metrics,
        mut acks,
    } = ingest;
    // Acknowledgements go out from a task of their own: `ack` waits for room in the client's
    // request queue, which only this task's `poll` empties, so awaiting it here could wait
    // for ever while this task itself waits for room in the engine's queue.
    let mut ack_task = {
        let client = client.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            while let Some(p) = acks.recv().await {
                if let Err(e) = client.ack(&p).await {
                    tracing::warn!(error = %e, "Cannot acknowledge; the broker will redeliver.");
                    break;
                }
                metrics.acks.inc();
            }
        })
    };
    let filter = event_filter(shared_group.as_deref());
    let mut tx = Some(tx);
    let mut backoff = Duration::from_millis(250);
    let mut draining_until: Option<tokio::time::Instant> = None;
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            () = token.cancelled(), if draining_until.is_none() => {
                // Closing the channel lets the engine finish and stop.
                tx = None;
                draining_until = Some(tokio::time::Instant::now() + drain_limit);
                continue;
            }
            () = engine_done.cancelled(), if draining_until.is_some() => break,
            () = sleep_until_opt(draining_until) => {
                tracing::warn!("Engine did not drain in time; disconnecting anyway.");
                break;
            }
        };
        match ev {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(250);
                metrics.mqtt_connected.set(1);
                tracing::info!(filter = %filter, "Connected to the MQTT broker; subscribing.");
                for f in [filter.as_str(), topics::STATUS_FILTER] {
                    if let Err(e) = client.try_subscribe(f, QoS::AtLeastOnce) {
                        tracing::error!(error = %e, filter = f, "Cannot subscribe.");
                    }
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let Some(sender) = tx.as_ref() else {
                    // Draining: leave it unacknowledged for redelivery.
                    continue;
                };
                let input = classify(&p, Instant::now());
                metrics.ingest_queue.inc();
                if sender
                    .send(Envelope {
                        input,
                        ack: Some(p),
                    })
                    .await
                    .is_err()
                {
                    tracing::error!("Engine is gone; stopping ingest.");
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_connected.set(0);
                tracing::warn!(error = %e, "MQTT connection failed; reconnecting.");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = token.cancelled(), if draining_until.is_none() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                if draining_until.is_some() {
                    break;
                }
            }
        }
    }
    drop(tx);
    // The engine has stopped (or the drain ran out): send what it acknowledged before
    // disconnecting, polling the connection meanwhile (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            tokio::select! {
                _ = &mut ack_task => break,
                ev = eventloop.poll() => if ev.is_err() { break },
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    // Let the DISCONNECT (and any last PUBACKs) go out.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    metrics.mqtt_connected.set(0);
    tracing::info!("Ingest stopped.");
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cnaas_shared::{EventKind, Source};

    fn publish(topic: &str, payload: &[u8]) -> Publish {
        Publish::new(topic, QoS::AtLeastOnce, payload.to_vec())
    }

    #[test]
    fn valid_events_pass() {
        let mut e = Event::new("site", "a1", EventKind::LinkDown, Source::Poll);
        e.if_index = Some(1);
        let input = classify(
            &publish("cnaas/v1/events/site/a1", &e.to_json()),
            Instant::now(),
        );
        assert!(
            matches!(input, Input::Event { event, .. } if event.id == e.id && event.kind == e.kind)
        );
    }

    #[test]
    fn bad_messages_become_dead_letters_with_the_agent() {
        let e = Event::new("site", "a1", EventKind::DeviceUnreachable, Source::Poll);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("cnaas/v1/events/site/a1", b"garbage".to_vec(), "json"),
            (
                "cnaas/v1/events/site/a1",
                br#"{"v":2}"#.to_vec(),
                "unsupported_version",
            ),
            (
                "cnaas/v1/events/site/a1",
                br#"{"v":1}"#.to_vec(),
                "missing_field",
            ),
            ("cnaas/v1/events/other/a1", e.to_json(), "topic_mismatch"),
            ("cnaas/v1/agents/site/status", b"{}".to_vec(), "bad_status"),
            ("somewhere/else", b"{}".to_vec(), "unknown_topic"),
        ];
        for (topic, payload, want) in cases {
            match classify(&publish(topic, &payload), Instant::now()) {
                Input::DeadLetter { letter, reason } => {
                    assert_eq!(reason, want, "{topic}");
                    assert_eq!(letter.payload, payload);
                    if topic.starts_with("cnaas/") {
                        assert!(letter.agent.is_some());
                    }
                }
                other => panic!("{topic}: expected a dead letter, got {other:?}"),
            }
        }
    }

    #[test]
    fn status_messages() {
        let input = classify(
            &publish(
                "cnaas/v1/agents/site/status",
                br#"{"v":1,"status":"offline"}"#,
            ),
            Instant::now(),
        );
        assert!(
            matches!(input, Input::Status { agent, status, .. } if agent == "site" && status == "offline")
        );
    }

    #[test]
    fn shared_subscription_filter() {
        assert_eq!(event_filter(Some("g")), "$share/g/cnaas/v1/events/+/+");
        assert_eq!(event_filter(None), "cnaas/v1/events/+/+");
    }
}
