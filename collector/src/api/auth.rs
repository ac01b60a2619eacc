//! Bearer tokens with roles. The tokens file holds only SHA-256 hashes of the tokens, so a
//! leaked file does not leak a token:
//!
//! ```toml
//! [[token]]
//! name = "ssc-desk"        # shown in incident history as the actor
//! role = "ssc"             # ssc | secondline | readonly | customer:<customer id>
//! sha256 = "…"            # printf %s "$TOKEN" | sha256sum
//! contact = "ola.nordmann@uni-b.no"   # optional: the person (as in the customer's contact
//!                                     # points); change orders need a technical contact
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The service centre: everything.
    Ssc,
    /// 2nd line: everything.
    Secondline,
    /// A customer's helpdesk: its own incidents, and comments on them.
    Customer(String),
    /// Read only.
    Readonly,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "ssc" => Some(Role::Ssc),
            "secondline" => Some(Role::Secondline),
            "readonly" => Some(Role::Readonly),
            _ => s
                .strip_prefix("customer:")
                .filter(|id| !id.is_empty())
                .map(|id| Role::Customer(id.to_owned())),
        }
    }

    /// Whether the role may change incidents (ack, escalate, resolve, close).
    pub fn operates(&self) -> bool {
        matches!(self, Role::Ssc | Role::Secondline)
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The person it belongs to, as written in the customer's contact points.
    pub contact: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    role: String,
    sha256: String,
    #[serde(default)]
    contact: Option<String>,
}

/// Why the tokens file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It cannot be read.
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It is not valid.
    #[error("tokens file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The known tokens, by hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: HashMap<String, Principal>,
}

fn hex_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Tokens {
    /// Reads a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokenError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: p.clone(),
            source,
        })?;
        Tokens::parse(&p, &text)
    }

    /// Parses the text of a tokens file.
    pub fn parse(path: &str, text: &str) -> Result<Tokens, TokenError> {
        let bad = |reason: String| TokenError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let file: TokensFile = toml_edit::de::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut by_hash = HashMap::new();
        for (i, t) in file.token.into_iter().enumerate() {
            let role = Role::parse(&t.role).ok_or_else(|| {
                bad(format!(
                    "token #{} ({}): unknown role `{}`",
                    i + 1,
                    t.name,
                    t.role
                ))
            })?;
            let hash = t.sha256.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "token #{} ({}): sha256 must be 64 hex digits",
                    i + 1,
                    t.name
                )));
            }
            by_hash.insert(
                hash,
                Principal {
                    name: t.name,
                    role,
                    contact: t.contact,
                },
            );
        }
        Ok(Tokens { by_hash })
    }

    /// The principal of a bearer token, if it is known.
    pub fn check(&self, token: &str) -> Option<&Principal> {
        self.by_hash.get(&hex_sha256(token))
    }

    /// The role of the token named `name` (an actor in an incident's history).
    pub fn role_of(&self, name: &str) -> Option<&Role> {
        self.by_hash
            .values()
            .find(|p| p.name == name)
            .map(|p| &p.role)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_by_hash_with_roles() {
        let text = format!(
            "[[token]]\nname = \"desk\"\nrole = \"ssc\"\nsha256 = \"{}\"\n[[token]]\nname = \"uni\"\nrole = \"customer:uni-b\"\nsha256 = \"{}\"\n",
            hex_sha256("s3cret-ssc"),
            hex_sha256("s3cret-uni").to_uppercase()
        );
        let t = Tokens::parse("t.toml", &text).unwrap();
        assert_eq!(t.check("s3cret-ssc").map(|p| &p.role), Some(&Role::Ssc));
        assert_eq!(
            t.check("s3cret-uni").map(|p| p.role.clone()),
            Some(Role::Customer("uni-b".into()))
        );
        assert!(t.check("guess").is_none());
        assert!(
            Role::Ssc.operates()
                && !Role::Readonly.operates()
                && !Role::Customer("x".into()).operates()
        );
    }

    #[test]
    fn bad_files_say_why() {
        let e = Tokens::parse(
            "t.toml",
            "[[token]]\nname = \"x\"\nrole = \"admin\"\nsha256 = \"00\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown role `admin`"), "{e}");
        let e = Tokens::parse(
            "t.toml",
            "[[token]]\nname = \"x\"\nrole = \"ssc\"\nsha256 = \"00\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        assert!(Tokens::parse("t.toml", "[[token]]\nnam = 1\n").is_err());
    }
}
