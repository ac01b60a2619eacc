//! The channels a notification can leave by, each configured once (`[[channel]]`) and
//! referred to by name: `smtp` (lettre; STARTTLS and authentication optional), `webhook`
//! (HTTP POST of the JSON document), `mqtt` (a topic on the broker, QoS 1, confirmed by
//! PUBACK) and `file` (JSON lines, synced).
//!
//! Every channel carries the idempotency key, so a retry after a crash is recognisable:
//! e-mail as `Message-ID` (derived from the key) and `X-CNaaS-Idempotency-Key`, webhooks as
//! the `Idempotency-Key` header, and every JSON document as its `key` field.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cnaas_shared::config::redact_urls_in;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::render::Message;
use crate::config::{ChannelEntry, ChannelKind};
use crate::store::Notification;
use cnaas_shared::config::SecretSource;
use cnaas_shared::mqtt::MqttConfig;

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Worth trying again (timeout, connection refused, 4xx SMTP, 5xx HTTP).
    #[error("{0}")]
    Transient(String),
    /// Will not work by retrying (no such channel, invalid address, 5xx SMTP, 4xx HTTP).
    #[error("{0}")]
    Permanent(String),
}

/// Why a channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting is missing or wrong.
    #[error("channel `{channel}`: {reason}")]
    Invalid {
        /// Channel name.
        channel: String,
        /// What is wrong.
        reason: String,
    },
}

/// `Message-ID` of a notification's e-mail: the same for every retry of it.
pub fn message_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@cnaas-collector>")
}

/// Fills `{customer}`, `{audience}` and `{to}` of an MQTT topic.
pub fn expand_topic(template: &str, n: &Notification, m: &Message) -> String {
    let customer = m.payload["incident"]["customer"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    // Topic levels must not be split or wildcarded by what a config or an incident says.
    let clean = |s: &str| s.replace(['/', '+', '#'], "_");
    template
        .replace("{customer}", &clean(&customer))
        .replace("{audience}", &clean(&n.audience))
        .replace("{to}", &clean(&n.recipient))
}

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

struct Webhook {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

enum MqttNote {
    Sent(u16),
    Acked(u16),
}

struct Mqtt {
    client: AsyncClient,
    topic: String,
    notes: Mutex<mpsc::UnboundedReceiver<MqttNote>>,
    timeout: Duration,
}

struct FileOut {
    path: PathBuf,
    lock: Mutex<()>,
}

enum Channel {
    Smtp(Smtp),
    Webhook(Webhook),
    Mqtt(Mqtt),
    File(FileOut),
}

/// The configured channels by name.
#[derive(Clone, Default)]
pub struct Channels {
    map: HashMap<String, Arc<Channel>>,
    kinds: HashMap<String, ChannelKind>,
    timeouts: HashMap<String, Duration>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("names", &self.kinds)
            .finish()
    }
}

fn invalid(c: &ChannelEntry, reason: impl Into<String>) -> SetupError {
    SetupError::Invalid {
        channel: c.name.clone(),
        reason: reason.into(),
    }
}

impl Channels {
    /// Sets up every channel. MQTT channels get their own client on the collector's broker
    /// (`mqtt`), whose event loop runs until `token` is cancelled.
    pub fn build(
        entries: &[ChannelEntry],
        mqtt: &MqttConfig,
        base_dir: &Path,
        collector_id: &str,
        token: &CancellationToken,
    ) -> Result<Channels, SetupError> {
        let mut out = Channels::default();
        for c in entries {
            let timeout = c.timeout.map_or(Duration::from_secs(10), |t| t.get());
            let channel = match c.kind {
                ChannelKind::Smtp => Channel::Smtp(smtp(c, base_dir, timeout)?),
                ChannelKind::Webhook => {
                    let token = secret(c, base_dir, &c.token_file, &c.token_env)?;
                    let client = reqwest::Client::builder()
                        .timeout(timeout)
                        .build()
                        .map_err(|e| invalid(c, e.to_string()))?;
                    Channel::Webhook(Webhook {
                        client,
                        url: c.url.clone().ok_or_else(|| invalid(c, "needs `url`"))?,
                        token,
                    })
                }
                ChannelKind::Mqtt => {
                    let opts = mqtt
                        .client_options(
                            base_dir,
                            &format!("cnaas-collector-{collector_id}-notify-{}", c.name),
                            None,
                        )
                        .map_err(|e| invalid(c, e.to_string()))?;
                    let (client, mut eventloop) = AsyncClient::new(opts, 64);
                    let (tx, rx) = mpsc::unbounded_channel();
                    let token = token.clone();
                    let name = c.name.clone();
                    tokio::spawn(async move {
                        loop {
                            let polled = tokio::select! {
                                () = token.cancelled() => break,
                                p = eventloop.poll() => p,
                            };
                            match polled {
                                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                                    let _ = tx.send(MqttNote::Sent(pkid));
                                }
                                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                                    let _ = tx.send(MqttNote::Acked(ack.pkid));
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(channel = %name, error = %e, "Notification channel lost its broker; reconnecting.");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                        }
                    });
                    Channel::Mqtt(Mqtt {
                        client,
                        topic: c.topic.clone().ok_or_else(|| invalid(c, "needs `topic`"))?,
                        notes: Mutex::new(rx),
                        timeout,
                    })
                }
                ChannelKind::File => Channel::File(FileOut {
                    path: base_dir.join(c.path.clone().ok_or_else(|| invalid(c, "needs `path`"))?),
                    lock: Mutex::new(()),
                }),
            };
            out.kinds.insert(c.name.clone(), c.kind);
            out.timeouts.insert(c.name.clone(), timeout);
            out.map.insert(c.name.clone(), Arc::new(channel));
        }
        Ok(out)
    }

    /// Whether a channel of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Hands a rendered notification to its channel; Ok once the channel has taken it.
    pub async fn deliver(&self, n: &Notification, m: &Message) -> Result<(), ChannelError> {
        let Some(channel) = self.map.get(&n.channel).cloned() else {
            return Err(ChannelError::Permanent(format!(
                "channel `{}` is not configured",
                n.channel
            )));
        };
        let send = async {
            match channel.as_ref() {
                Channel::Smtp(s) => s.send(n, m).await,
                Channel::Webhook(w) => w.post(n, m).await,
                Channel::Mqtt(q) => q.publish(n, m).await,
                Channel::File(f) => f.append(m).await,
            }
        };
        // The clients have their own timeouts, but not for every step (an SMTP server that
        // never answers AUTH); this bounds the whole delivery.
        let limit = self
            .timeouts
            .get(&n.channel)
            .copied()
            .unwrap_or(Duration::from_secs(10))
            + Duration::from_secs(1);
        tokio::time::timeout(limit, send)
            .await
            .unwrap_or_else(|_| {
                Err(ChannelError::Transient(format!(
                    "no answer within {} ms",
                    limit.as_millis()
                )))
            })
            // An error text goes to the store (`last_error`, shown in the API and the
            // dashboard), the log and SSC's channels: no URL in it keeps a key or password.
            .map_err(ChannelError::redacted)
    }
}

impl ChannelError {
    /// The same error with every URL in its text redacted.
    pub fn redacted(self) -> ChannelError {
        match self {
            ChannelError::Transient(t) => ChannelError::Transient(redact_urls_in(&t)),
            ChannelError::Permanent(t) => ChannelError::Permanent(redact_urls_in(&t)),
        }
    }
}

fn secret(
    c: &ChannelEntry,
    base_dir: &Path,
    file: &Option<PathBuf>,
    env: &Option<String>,
) -> Result<Option<String>, SetupError> {
    if file.is_none() && env.is_none() {
        return Ok(None);
    }
    SecretSource {
        file: file.clone(),
        env: env.clone(),
    }
    .read(base_dir)
    .map(|s| Some(s.expose().to_owned()))
    .map_err(|e| invalid(c, e.to_string()))
}

fn smtp(c: &ChannelEntry, base_dir: &Path, timeout: Duration) -> Result<Smtp, SetupError> {
    let server = c
        .server
        .as_deref()
        .ok_or_else(|| invalid(c, "needs `server`"))?;
    let (host, port) = server
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| invalid(c, format!("server `{server}` is not host:port")))?;
    let from: Mailbox = c
        .from
        .as_deref()
        .ok_or_else(|| invalid(c, "needs `from`"))?
        .parse()
        .map_err(|e| invalid(c, format!("from: {e}")))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port);
    if c.starttls {
        let mut tls = TlsParameters::builder(host.to_owned());
        if let Some(ca) = &c.ca_file {
            let path = base_dir.join(ca);
            let pem = std::fs::read(&path)
                .map_err(|e| invalid(c, format!("ca_file {}: {e}", path.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| invalid(c, format!("ca_file {}: {e}", path.display())))?;
            tls = tls.add_root_certificate(cert);
        }
        let params = tls.build().map_err(|e| invalid(c, e.to_string()))?;
        builder = builder.tls(Tls::Required(params));
    } else if c.username.is_some() {
        return Err(invalid(
            c,
            "a password is never sent in the clear: set starttls = true with username",
        ));
    }
    builder = builder.timeout(Some(timeout));
    if let Some(user) = &c.username {
        let password = secret(c, base_dir, &c.password_file, &c.password_env)?
            .ok_or_else(|| invalid(c, "`username` needs `password_file` or `password_env`"))?;
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(Smtp {
        transport: builder.build(),
        from,
    })
}

impl Smtp {
    async fn send(&self, n: &Notification, m: &Message) -> Result<(), ChannelError> {
        let to: Mailbox = n.recipient.parse().map_err(|e| {
            ChannelError::Permanent(format!("`{}` is not an e-mail address: {e}", n.recipient))
        })?;
        let key_header = HeaderName::new_from_ascii("X-CNaaS-Idempotency-Key".into())
            .map_err(|e| ChannelError::Permanent(e.to_string()))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(message_id(&n.key)))
            .raw_header(HeaderValue::new(key_header, n.key.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(m.body.clone())
            .map_err(|e| ChannelError::Permanent(format!("cannot build the e-mail: {e}")))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(ChannelError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(ChannelError::Transient(format!("SMTP: {e}"))),
        }
    }
}

impl Webhook {
    async fn post(&self, n: &Notification, m: &Message) -> Result<(), ChannelError> {
        let mut req = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", &n.key)
            .json(&m.payload);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            // Without the URL: its query string may hold a key, and this text reaches the API,
            // the dashboard and SSC's channels.
            .map_err(|e| ChannelError::Transient(format!("webhook: {}", e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(ChannelError::Transient(format!(
                "webhook answered {status}"
            )))
        } else {
            Err(ChannelError::Permanent(format!(
                "webhook answered {status}"
            )))
        }
    }
}

impl Mqtt {
    async fn publish(&self, n: &Notification, m: &Message) -> Result<(), ChannelError> {
        // One publish at a time per channel, so the next PUBACK is ours.
        let mut notes = self.notes.lock().await;
        while notes.try_recv().is_ok() {}
        let topic = expand_topic(&self.topic, n, m);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, m.payload.to_string())
            .await
            .map_err(|e| ChannelError::Transient(format!("MQTT: {e}")))?;
        let wait = async {
            let mut ours = None;
            while let Some(note) = notes.recv().await {
                match note {
                    MqttNote::Sent(pkid) if ours.is_none() => ours = Some(pkid),
                    MqttNote::Acked(pkid) if Some(pkid) == ours => return true,
                    _ => {}
                }
            }
            false
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ChannelError::Transient("MQTT: the client stopped".into())),
            Err(_) => Err(ChannelError::Transient(
                "MQTT: no PUBACK from the broker in time".into(),
            )),
        }
    }
}

impl FileOut {
    async fn append(&self, m: &Message) -> Result<(), ChannelError> {
        let _one_writer = self.lock.lock().await;
        let path = self.path.clone();
        let mut line = m.payload.to_string();
        line.push('\n');
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(line.as_bytes())?;
            f.sync_data()
        })
        .await
        .map_err(|e| ChannelError::Transient(format!("file: {e}")))?
        .map_err(|e| ChannelError::Transient(format!("file {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::About;

    fn notification() -> Notification {
        let at = chrono::Utc::now();
        Notification {
            id: 1,
            key: "inc-1/opened-1/ssc/q/ssc".into(),
            about: About::Incident,
            about_id: 1,
            customer: None,
            transition: "opened-1".into(),
            audience: "ssc".into(),
            channel: "q".into(),
            recipient: "ssc/#".into(),
            language: "nb".into(),
            detail: None,
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

    #[test]
    fn error_texts_keep_no_secret_of_a_url() {
        let e = ChannelError::Transient(
            "error sending request for url (https://sms.example/send?apikey=s3cr3t): connection refused".into(),
        )
        .redacted();
        assert_eq!(
            e.to_string(),
            "error sending request for url (https://sms.example/send?***): connection refused"
        );
        let e =
            ChannelError::Permanent("POST https://user:pw@hook.example/x failed".into()).redacted();
        assert!(!e.to_string().contains("pw@"), "{e}");
    }

    #[test]
    fn message_ids_are_stable_per_key_and_valid() {
        let a = message_id("inc-1/opened-1/incident/mail/servicedesk@uni-a.no");
        assert_eq!(
            a,
            message_id("inc-1/opened-1/incident/mail/servicedesk@uni-a.no")
        );
        assert_ne!(
            a,
            message_id("inc-1/resolved-1/incident/mail/servicedesk@uni-a.no")
        );
        assert!(a.starts_with('<') && a.ends_with("@cnaas-collector>") && a.len() == 50);
    }

    #[test]
    fn topics_are_filled_and_cannot_be_split() {
        let m = Message {
            subject: String::new(),
            body: String::new(),
            payload: serde_json::json!({"incident": {"customer": "uni/a+"}}),
        };
        assert_eq!(
            expand_topic(
                "cnaas/v1/queue/{audience}/{customer}/{to}",
                &notification(),
                &m
            ),
            "cnaas/v1/queue/ssc/uni_a_/ssc__"
        );
    }

    #[tokio::test]
    async fn file_channel_appends_json_lines_and_unknown_channels_fail_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let entry = ChannelEntry {
            name: "log".into(),
            kind: ChannelKind::File,
            path: Some("out/notifications.jsonl".into()),
            ..ChannelEntry::default()
        };
        let channels = Channels::build(
            &[entry],
            &toml_edit::de::from_str::<MqttConfig>("url = \"mqtt://127.0.0.1:16999\"").unwrap(),
            dir.path(),
            "c1",
            &CancellationToken::new(),
        )
        .unwrap();
        let mut n = notification();
        n.channel = "log".into();
        for i in 0..2 {
            let m = Message {
                subject: format!("s{i}"),
                body: String::new(),
                payload: serde_json::json!({"key": n.key, "i": i}),
            };
            channels.deliver(&n, &m).await.unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join("out/notifications.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["i"], 1);
        n.channel = "nope".into();
        let m = Message {
            subject: String::new(),
            body: String::new(),
            payload: serde_json::Value::Null,
        };
        assert!(matches!(
            channels.deliver(&n, &m).await,
            Err(ChannelError::Permanent(_))
        ));
    }
}
