//! The `[mqtt]` section both binaries share and the rumqttc options built from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, TlsConfiguration, Transport};
use serde::Deserialize;

use crate::config::{HumanDuration, SecretError, SecretSource};

/// Largest MQTT packet a client accepts (16 MiB): above any broker limit this project ships.
pub const MAX_INCOMING_PACKET: usize = 16 << 20;

/// `[mqtt]`: where the broker is and how to log in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    /// Client id; defaults to one derived from the agent or collector id.
    pub client_id: Option<String>,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// CA certificate (PEM) to verify an `mqtts://` broker; without it the system roots are used.
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive; the broker declares the client dead after 1.5 times this.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: HumanDuration,
}

fn default_keep_alive() -> HumanDuration {
    HumanDuration::secs(15)
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Whether to use TLS (`mqtts://`).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// TCP port (default 1883, or 8883 with TLS).
    pub port: u16,
}

/// Why MQTT options could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MqttConfigError {
    /// The URL is not `mqtt://host[:port]` or `mqtts://host[:port]`.
    #[error("invalid MQTT url `{url}`: {reason}")]
    Url {
        /// The URL as written, redacted (no user-info, no query).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The password could not be read.
    #[error("MQTT password: {0}")]
    Password(#[from] SecretError),
    /// A password was given without a user name, or both a file and a variable.
    #[error("MQTT credentials: {0}")]
    Credentials(&'static str),
    /// The CA file could not be read.
    #[error("cannot read MQTT CA file {path}: {source}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub fn parse(url: &str) -> Result<BrokerUrl, MqttConfigError> {
        let bad = |reason: &str| MqttConfigError::Url {
            url: crate::config::redact_url(url),
            reason: reason.to_owned(),
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(bad("it must start with mqtt:// or mqtts://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '@']) {
            return Err(bad(
                "only host and port belong in the url; credentials go in username and password_file",
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad("the port must be a number 1-65535"))?;
                (h, port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        if port == 0 {
            return Err(bad("the port must be a number 1-65535"));
        }
        Ok(BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl MqttConfig {
    /// Checks what can be checked without touching the network or secret files.
    pub fn validate(&self) -> Result<BrokerUrl, MqttConfigError> {
        let url = BrokerUrl::parse(&self.url)?;
        if self.password_file.is_some() && self.password_env.is_some() {
            return Err(MqttConfigError::Credentials(
                "give either password_file or password_env, not both",
            ));
        }
        if self.username.is_none() && (self.password_file.is_some() || self.password_env.is_some())
        {
            return Err(MqttConfigError::Credentials("a password needs a username"));
        }
        Ok(url)
    }

    /// Reads the password (and checks the CA file) as the service will, so `check-config`
    /// says that one is missing rather than the service failing later. The secret's text is
    /// never in the message.
    pub fn check_files(&self, base_dir: &Path) -> Result<(), MqttConfigError> {
        if self.password_file.is_some() || self.password_env.is_some() {
            crate::config::SecretSource {
                file: self.password_file.clone(),
                env: self.password_env.clone(),
            }
            .read(base_dir)?;
        }
        if let Some(ca) = &self.ca_file {
            let path = base_dir.join(ca);
            std::fs::metadata(&path).map_err(|source| MqttConfigError::Ca { path, source })?;
        }
        Ok(())
    }

    /// Client options: broker address, credentials, TLS, keep-alive and an optional last will.
    /// `clean_session` is false, so QoS 1 messages in flight survive a reconnect.
    pub fn client_options(
        &self,
        base_dir: &Path,
        default_client_id: &str,
        last_will: Option<LastWill>,
    ) -> Result<MqttOptions, MqttConfigError> {
        let url = self.validate()?;
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id.to_owned());
        let mut opts = MqttOptions::new(client_id, url.host, url.port);
        opts.set_keep_alive(self.keep_alive.get().max(Duration::from_secs(1)));
        opts.set_clean_session(false);
        // Incoming well above the broker's limit (the shipped Mosquitto config sets
        // `max_packet_size 262144`): a packet over the client's own limit drops the connection
        // and the broker sends it again, forever, so the broker must be the one to refuse it.
        opts.set_max_packet_size(MAX_INCOMING_PACKET, 1 << 20);
        if let Some(user) = &self.username {
            let source = SecretSource {
                file: self.password_file.clone(),
                env: self.password_env.clone(),
            };
            let password = if source.file.is_none() && source.env.is_none() {
                String::new()
            } else {
                source.read(base_dir)?.expose().to_owned()
            };
            opts.set_credentials(user.clone(), password);
        }
        if url.tls {
            let transport = match &self.ca_file {
                Some(path) => {
                    let path = base_dir.join(path);
                    let ca = std::fs::read(&path).map_err(|source| MqttConfigError::Ca {
                        path: path.clone(),
                        source,
                    })?;
                    Transport::tls_with_config(TlsConfiguration::Simple {
                        ca,
                        alpn: None,
                        client_auth: None,
                    })
                }
                None => Transport::tls_with_default_config(),
            };
            opts.set_transport(transport);
        }
        if let Some(will) = last_will {
            opts.set_last_will(will);
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:16883").unwrap();
        assert_eq!(
            u,
            BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 16883
            }
        );
        assert_eq!(
            BrokerUrl::parse("mqtts://broker.example.org").unwrap().port,
            8883
        );
        assert_eq!(BrokerUrl::parse("mqtt://broker/").unwrap().port, 1883);
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1884").unwrap().host, "::1");
        for bad in [
            "tcp://x:1",
            "mqtt://",
            "mqtt://x:abc",
            "mqtt://x:0",
            "mqtt://u:p@x:1",
            "mqtt://x:1/t",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_needs_user() {
        let cfg = MqttConfig {
            url: "mqtt://x:1".into(),
            client_id: None,
            username: None,
            password_file: Some("pw".into()),
            password_env: None,
            ca_file: None,
            keep_alive: HumanDuration::secs(5),
        };
        assert!(matches!(
            cfg.validate(),
            Err(MqttConfigError::Credentials(_))
        ));
    }
}
