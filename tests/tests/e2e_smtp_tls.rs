//! The `smtp` channel against a real aiosmtpd that demands STARTTLS (certificate from a test
//! CA the channel is told to trust) and AUTH: the message arrives with its idempotency headers;
//! a wrong password is refused for good; a password without TLS is refused at set-up.

use anyhow::{Context, Result};
use cnaas_collector::config::{ChannelEntry, ChannelKind};
use cnaas_collector::notify::channels::{ChannelError, Channels, message_id};
use cnaas_collector::notify::render::Message;
use cnaas_collector::store::{About, Notification};
use cnaas_shared::mqtt::MqttConfig;
use cnaas_tests::open_tempdir;
use cnaas_tests::sinks::SmtpSink;
use tokio_util::sync::CancellationToken;

fn notification(key: &str) -> Notification {
    let at = chrono::Utc::now();
    Notification {
        id: 1,
        key: key.into(),
        about: About::Incident,
        about_id: 1,
        customer: None,
        transition: "opened-1".into(),
        audience: "incident".into(),
        channel: "mail".into(),
        recipient: "servicedesk@uni-b.no".into(),
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

fn channels(dir: &std::path::Path, entry: ChannelEntry) -> Result<Channels> {
    let mqtt: MqttConfig = toml_edit::de::from_str("url = \"mqtt://127.0.0.1:16999\"")?;
    Ok(Channels::build(
        &[entry],
        &mqtt,
        dir,
        "tls-test",
        &CancellationToken::new(),
    )?)
}

#[tokio::test]
async fn starttls_and_auth_against_a_real_server() -> Result<()> {
    let sink = SmtpSink::start_secure("cnaas", "smtp-secret-42")?;
    let dir = open_tempdir()?;
    std::fs::copy(sink.ca_file().context("ca")?, dir.path().join("ca.crt"))?;
    std::fs::write(dir.path().join("smtp.pass"), "smtp-secret-42\n")?;
    std::fs::write(dir.path().join("wrong.pass"), "guess\n")?;
    let entry = |password_file: &str| ChannelEntry {
        name: "mail".into(),
        kind: ChannelKind::Smtp,
        server: Some(format!("127.0.0.1:{}", sink.port)),
        from: Some("noc@sikt.example".into()),
        starttls: true,
        ca_file: Some("ca.crt".into()),
        username: Some("cnaas".into()),
        password_file: Some(password_file.into()),
        ..ChannelEntry::default()
    };
    let message = Message {
        subject: "[CNaaS S2] Ny hendelse: Universitetet i B".into(),
        body: "Organisasjon: Universitetet i B\n".into(),
        payload: serde_json::json!({}),
    };
    let good = channels(dir.path(), entry("smtp.pass"))?;
    let key = "inc-1/opened-1/incident/mail/servicedesk@uni-b.no";
    good.deliver(&notification(key), &message).await?;
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].key, key);
    assert_eq!(mails[0].message_id, message_id(key));
    assert!(mails[0].to.contains("servicedesk@uni-b.no"));
    assert_eq!(mails[0].subject, message.subject);

    let wrong = channels(dir.path(), entry("wrong.pass"))?;
    match wrong.deliver(&notification("inc-1/x"), &message).await {
        Err(ChannelError::Permanent(e)) => assert!(e.contains("SMTP"), "{e}"),
        other => panic!("a wrong password must fail for good: {other:?}"),
    }
    assert_eq!(sink.mails().len(), 1);

    // A password is never sent in the clear.
    let mut clear = entry("smtp.pass");
    clear.starttls = false;
    let err = channels(dir.path(), clear).err().context("must refuse")?;
    assert!(err.to_string().contains("starttls"), "{err}");
    Ok(())
}
