//! How to authenticate to a device: an SNMPv2c community, or an SNMPv3 USM user (authNoPriv
//! or authPriv). Every secret is a [`Secret`], so none of them can reach a log line.

use cnaas_shared::config::Secret;
use serde::Deserialize;
use snmp2::v3::{Auth, AuthProtocol, Cipher, Security};

/// SNMPv3 authentication protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProto {
    /// HMAC-MD5-96 (legacy).
    Md5,
    /// HMAC-SHA-96.
    #[serde(alias = "sha1")]
    Sha,
    /// HMAC-SHA-224.
    Sha224,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA-512.
    Sha512,
}

/// SNMPv3 privacy protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivProto {
    /// DES (legacy).
    Des,
    /// AES-128 (RFC 3826).
    #[serde(alias = "aes128")]
    Aes,
    /// AES-192.
    Aes192,
    /// AES-256.
    Aes256,
}

/// An SNMPv3 USM identity.
#[derive(Debug, Clone)]
pub struct V3 {
    /// USM user name.
    pub user: String,
    /// Authentication protocol.
    pub auth: AuthProto,
    /// Authentication password.
    pub auth_password: Secret,
    /// Privacy protocol and password; `None` is authNoPriv.
    pub privacy: Option<(PrivProto, Secret)>,
    /// Context name (empty for the default context).
    pub context: String,
}

/// Credentials of one device.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// SNMPv2c.
    V2c {
        /// Community.
        community: Secret,
    },
    /// SNMPv3 USM.
    V3(V3),
}

impl Credentials {
    /// The v2c community, if this is v2c (traps are matched on it).
    pub fn community(&self) -> Option<&Secret> {
        match self {
            Credentials::V2c { community } => Some(community),
            Credentials::V3(_) => None,
        }
    }
}

impl V3 {
    /// The snmp2 security context for a fresh session (engine discovery happens on `init`).
    pub fn security(&self) -> Security {
        let proto = match self.auth {
            AuthProto::Md5 => AuthProtocol::Md5,
            AuthProto::Sha => AuthProtocol::Sha1,
            AuthProto::Sha224 => AuthProtocol::Sha224,
            AuthProto::Sha256 => AuthProtocol::Sha256,
            AuthProto::Sha384 => AuthProtocol::Sha384,
            AuthProto::Sha512 => AuthProtocol::Sha512,
        };
        let auth = match &self.privacy {
            None => Auth::AuthNoPriv,
            Some((p, password)) => Auth::AuthPriv {
                cipher: match p {
                    PrivProto::Des => Cipher::Des,
                    PrivProto::Aes => Cipher::Aes128,
                    PrivProto::Aes192 => Cipher::Aes192,
                    PrivProto::Aes256 => Cipher::Aes256,
                },
                privacy_password: password.expose().as_bytes().to_vec(),
            },
        };
        Security::new(self.user.as_bytes(), self.auth_password.expose().as_bytes())
            .with_auth_protocol(proto)
            .with_auth(auth)
            .with_context_name(&self.context)
    }
}
