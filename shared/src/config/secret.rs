//! Secrets (passwords, communities, keys) come from a file or an environment variable, never
//! from the command line, and never appear in logs: [`Secret`] prints as `***`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret value. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret is read from; exactly one of the two.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// A file holding the secret (trailing newline removed).
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    pub env: Option<String>,
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The variable is not set or not UTF-8.
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The secret is empty.
    #[error("the secret from {0} is empty")]
    Empty(String),
    /// Both or neither source given.
    #[error("give exactly one of `file` and `env`")]
    Ambiguous,
}

impl SecretSource {
    /// Reads the secret. Relative files are taken relative to `base` (the config file's folder).
    pub fn read(&self, base: &Path) -> Result<Secret, SecretError> {
        match (&self.file, &self.env) {
            (Some(file), None) => read_file(&base.join(file)),
            (None, Some(var)) => {
                let v = std::env::var(var).map_err(|_| SecretError::Env(var.clone()))?;
                if v.is_empty() {
                    return Err(SecretError::Empty(format!("${var}")));
                }
                Ok(Secret(v))
            }
            _ => Err(SecretError::Ambiguous),
        }
    }
}

/// Reads a secret from a file, dropping one trailing newline.
pub fn read_file(path: &Path) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
        path: path.to_owned(),
        source,
    })?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(SecretError::Empty(path.display().to_string()));
    }
    Ok(Secret(value.to_owned()))
}

/// A URL as it may be shown (logs, errors, API fields, notifications): user-info and the
/// query string (where API keys hide) replaced by `***`, the fragment dropped.
/// `https://u:pw@gw.example/sms?key=abc#x` becomes `https://***@gw.example/sms?***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let rest = rest.split('#').next().unwrap_or("");
    let (before_query, query) = match rest.split_once('?') {
        Some((b, _)) => (b, "?***"),
        None => (rest, ""),
    };
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let (authority, path) = before_query.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{path}{query}")
}

/// `text` with every URL in it (`scheme://...` up to white space or a quote) redacted by
/// [`redact_url`] (a closing parenthesis ends it): for error texts made by libraries that may quote the URL they failed on.
pub fn redact_urls_in(text: &str) -> String {
    static URL: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = URL
        .get_or_init(|| regex::Regex::new(r#"[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>`()]+"#).ok())
        .as_ref()
    else {
        return text.to_owned();
    };
    re.replace_all(text, |c: &regex::Captures<'_>| redact_url(&c[0]))
        .into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_lose_their_credentials_and_query() {
        assert_eq!(
            super::redact_url("https://u:pw@gw.example:8443/sms?key=abc&x=1#frag"),
            "https://***@gw.example:8443/sms?***"
        );
        assert_eq!(
            super::redact_url("http://gw.example/sms"),
            "http://gw.example/sms"
        );
        assert_eq!(
            super::redact_url("postgres://cnaas:secret@db/cnaas"),
            "postgres://***@db/cnaas"
        );
        assert_eq!(
            super::redact_urls_in(
                "error sending request for url (https://gw.example/x?token=s3cr3t): timed out"
            ),
            "error sending request for url (https://gw.example/x?***): timed out"
        );
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn from_file_relative_to_base() {
        let dir = std::env::temp_dir().join(format!("cnaas-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
        let src = SecretSource {
            file: Some("pw".into()),
            env: None,
        };
        assert_eq!(src.read(&dir).unwrap().expose(), "s3cret");
        std::fs::write(dir.join("empty"), "\n").unwrap();
        let src = SecretSource {
            file: Some("empty".into()),
            env: None,
        };
        assert!(matches!(src.read(&dir), Err(SecretError::Empty(_))));
        assert!(matches!(
            SecretSource::default().read(&dir),
            Err(SecretError::Ambiguous)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
