//! The agent's NETCONF client against real servers: Debian's netconfd (yuma123) behind
//! OpenSSH with both framings, host key checking, and a server that misbehaves in every way
//! the issue lists (garbage, a truncated chunk, a chunk header claiming 4 GB, a message that
//! never ends, no answer): each is a clear error, the next call reconnects, memory stays bounded.
//! An `<rpc-error>` keeps the session; a reply with another message-id is not taken for ours.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cnaas_agent::netconf::{Auth, HostKeys, NcError, Session, Target};
use cnaas_tests::netconf::{Hostile, Misbehaviour, Netconfd};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

const SESSIONS: &str = r#"<netconf-state xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"><sessions/></netconf-state>"#;

fn hello_get_close(base10_only: bool) -> Result<()> {
    let peer = Netconfd::start(base10_only)?;
    let rt = runtime()?;
    // Generous: this checks framing, not speed, and netconfd's first answer was seen to take
    // over 5 s on a loaded 2-core machine.
    let t = peer.login.target(Duration::from_secs(20));
    rt.block_on(async {
        let mut s = Session::new(t);
        let data = s.get(SESSIONS).await.with_context(|| peer.logs())?;
        assert!(data.contains("<session"), "{data}");
        assert_eq!(s.version(), Some(if base10_only { "1.0" } else { "1.1" }));
        // A second request on the same session: message-ids keep matching.
        let again = s.get(SESSIONS).await?;
        assert!(again.contains("<session-id>"), "{again}");
        // netconfd has no ietf-interfaces here: an empty answer, not an error.
        assert_eq!(s.interfaces().await?, vec![]);
        s.close().await.context("close-session")?;
        eprintln!("netconfd: peak RSS {} MiB", peak_rss_mib());
        anyhow::Ok(())
    })
}

#[test]
fn netconfd_chunked_framing() -> Result<()> {
    hello_get_close(false)
}

#[test]
fn netconfd_end_of_message_framing() -> Result<()> {
    hello_get_close(true)
}

#[test]
fn host_keys_are_checked_unless_the_lab_opts_out() -> Result<()> {
    let peer = Netconfd::start(false)?;
    let rt = runtime()?;
    // Another server's key in known_hosts.
    let other = Hostile::start(Misbehaviour::Good)?;
    let wrong = std::fs::read_to_string(&other.login.known_hosts)?.replace(
        &format!("[127.0.0.1]:{}", other.login.port),
        &format!("[127.0.0.1]:{}", peer.login.port),
    );
    let wrong_file = peer.login.known_hosts.with_file_name("wrong_known_hosts");
    std::fs::write(&wrong_file, wrong)?;
    let empty = peer.login.known_hosts.with_file_name("empty_known_hosts");
    std::fs::write(&empty, "")?;
    rt.block_on(async {
        for (file, what) in [(&wrong_file, "a different key"), (&empty, "no entry")] {
            let mut s = Session::new(Arc::new(Target {
                host_keys: HostKeys::KnownHosts(file.clone()),
                ..(*peer.login.target(Duration::from_secs(5))).clone()
            }));
            let e = s.get(SESSIONS).await.err().context(what)?;
            assert!(matches!(e, NcError::Connect { .. }), "{what}: {e}");
            assert!(
                e.to_string().to_lowercase().contains("host key")
                    || e.to_string().contains("known_hosts"),
                "{what}: {e}"
            );
            // Backoff: the next call does not even try.
            let again = s.get(SESSIONS).await.err().context(what)?;
            assert!(matches!(again, NcError::Backoff { .. }), "{again}");
        }
        let mut lab = Session::new(Arc::new(Target {
            host_keys: HostKeys::AcceptAny,
            ..(*peer.login.target(Duration::from_secs(5))).clone()
        }));
        assert!(lab.get(SESSIONS).await?.contains("<session"));
        lab.close().await?;
        eprintln!("host keys: peak RSS {} MiB", peak_rss_mib());
        anyhow::Ok(())
    })
}

#[test]
fn a_key_with_a_passphrase_read_from_a_file() -> Result<()> {
    let peer = Netconfd::start(false)?;
    let key = peer.add_client_key("locked_key", "key-passphrase-0815")?;
    let rt = runtime()?;
    rt.block_on(async {
        let with = |passphrase: &str| {
            Arc::new(Target {
                auth: Auth::Key {
                    file: key.clone(),
                    passphrase: Some(cnaas_shared::config::Secret::new(passphrase)),
                },
                ..(*peer.login.target(Duration::from_secs(5))).clone()
            })
        };
        let mut s = Session::new(with("key-passphrase-0815"));
        assert!(
            s.get(SESSIONS)
                .await
                .with_context(|| peer.logs())?
                .contains("<session")
        );
        s.close().await?;
        let mut wrong = Session::new(with("not-the-passphrase"));
        let e = wrong
            .get(SESSIONS)
            .await
            .err()
            .context("a wrong passphrase worked")?;
        assert!(matches!(e, NcError::Connect { .. }), "{e}");
        assert!(!e.to_string().contains("not-the-passphrase"), "{e}");
        anyhow::Ok(())
    })
}

/// VmHWM (peak resident memory) of this process, in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[test]
fn a_misbehaving_server_gives_clear_errors_and_reconnects() -> Result<()> {
    let peer = Hostile::start(Misbehaviour::Good)?;
    let rt = runtime()?;
    let t = peer.login.target(Duration::from_secs(2));
    rt.block_on(async {
        let mut s = Session::new(t);
        let ok = s.interfaces().await.with_context(|| peer.logs())?;
        assert_eq!(ok.len(), 1, "the well-behaved start");
        for (mode, expect) in [
            (Misbehaviour::Garbage, "framing"),
            (Misbehaviour::TruncatedChunk, "closed"),
            (Misbehaviour::HugeChunk, "chunk"),
            (Misbehaviour::Endless, "exceeded"),
            (Misbehaviour::Silent, "timeout"),
        ] {
            peer.set(mode)?;
            let before = peer.sessions();
            // The open session answered well; a new one is needed to meet the new mode.
            drop(std::mem::replace(
                &mut s,
                Session::new(peer.login.target(Duration::from_secs(2))),
            ));
            let e = s
                .interfaces()
                .await
                .err()
                .with_context(|| format!("{mode:?} gave no error\n{}", peer.logs()))?;
            let text = e.to_string();
            assert!(
                text.to_lowercase().contains(expect),
                "{mode:?}: `{text}` does not say `{expect}`"
            );
            assert_eq!(peer.sessions(), before + 1, "{mode:?}\n{}", peer.logs());
            // The session was dropped: the next call connects again (and meets the same
            // misbehaviour), it does not reuse a broken stream.
            let _ = s.interfaces().await;
            assert_eq!(peer.sessions(), before + 2, "{mode:?} did not reconnect");
            eprintln!("{mode:?}: `{text}`, peak RSS so far {} MiB", peak_rss_mib());
        }
        // An <rpc-error> is the server's answer, not a broken session: no reconnect.
        peer.set(Misbehaviour::Refuse)?;
        s = Session::new(peer.login.target(Duration::from_secs(2)));
        let before = peer.sessions();
        for _ in 0..3 {
            let e = s
                .interfaces()
                .await
                .err()
                .context("a refusal is an error")?;
            assert!(e.to_string().contains("interface state is not here"), "{e}");
        }
        assert_eq!(peer.sessions(), before + 1, "refusals reconnected");
        peer.set(Misbehaviour::Good)?;
        // The refusing session is still open (and would go on refusing): start afresh. Its
        // close-session may be refused too; the session is gone either way.
        let _ = s.close().await;
        let ok = s.interfaces().await?;
        assert_eq!(
            peer.sessions(),
            before + 2,
            "the good server needs a new session"
        );
        assert_eq!(ok[0].name, "xe-0/0/0", "reconnected on the same Session");
        // A reply to a request we did not send (another message-id) is not taken for ours.
        peer.set(Misbehaviour::Stale)?;
        let _ = s.close().await;
        for _ in 0..2 {
            let got = s.interfaces().await?;
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].name, "xe-0/0/0", "the stale reply was taken");
        }
        anyhow::Ok(())
    })?;
    // A 4 GB chunk header and an endless message were cut off at the 1 MiB limit.
    let peak = peak_rss_mib();
    assert!(peak < 100, "peak RSS {peak} MiB");
    Ok(())
}
