//! Configuration pieces both binaries share: loading TOML with diagnostics that point at file,
//! line and column, human-written durations, and secrets read from files or the environment.

mod diag;
mod duration;
mod secret;

pub use diag::{ConfigSource, Diagnostic, Diagnostics, Loaded, PathSeg, Severity};
pub use duration::{DURATION_HINT, HumanDuration};
pub use secret::{Secret, SecretError, SecretSource, redact_url, redact_urls_in};
