//! Port roles: which ports matter for incidents (DESIGN.md section 2, "Which ports matter").
//!
//! Users unplug laptops all day, so an `access` port going down is information, not an incident.
//! `uplink`, `downlink` and `infrastructure` ports are watched. A role comes from the inventory
//! first, then from ifAlias patterns; anything else is `access`.

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::Deserialize;

/// The role of a port (ordered as listed: the most important first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortRole {
    /// Towards the device's parent (distribution or core).
    Uplink,
    /// Towards a child device.
    Downlink,
    /// Servers, access points and other infrastructure that must stay up.
    Infrastructure,
    /// A user port: state is exported, events are informational only.
    Access,
}

impl PortRole {
    /// Every role, watched ones first.
    pub const ALL: [PortRole; 4] = [
        PortRole::Uplink,
        PortRole::Downlink,
        PortRole::Infrastructure,
        PortRole::Access,
    ];

    /// The name used in config files, events and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PortRole::Uplink => "uplink",
            PortRole::Downlink => "downlink",
            PortRole::Infrastructure => "infrastructure",
            PortRole::Access => "access",
        }
    }

    /// Whether a fault on a port of this role is an incident.
    pub fn is_watched(self) -> bool {
        self != PortRole::Access
    }
}

impl fmt::Display for PortRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PortRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        PortRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(())
    }
}

/// The `[roles]` section: ifAlias regular expressions per role, tried in the order
/// uplink, downlink, infrastructure.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePatternsConfig {
    /// Patterns marking uplinks, e.g. `'(?i)^uplink'`.
    #[serde(default)]
    pub uplink: Vec<String>,
    /// Patterns marking downlinks.
    #[serde(default)]
    pub downlink: Vec<String>,
    /// Patterns marking infrastructure ports.
    #[serde(default)]
    pub infrastructure: Vec<String>,
}

/// A pattern that did not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid {role} pattern #{index} `{pattern}`: {source}")]
pub struct PatternError {
    /// The role the pattern was listed under.
    pub role: PortRole,
    /// Position in its list (0-based).
    pub index: usize,
    /// The pattern text.
    pub pattern: String,
    /// What the regex compiler said.
    #[source]
    pub source: regex::Error,
}

/// Compiled ifAlias patterns.
#[derive(Debug, Clone, Default)]
pub struct RolePatterns {
    rules: Vec<(PortRole, Regex)>,
}

impl RolePatterns {
    /// Compiles the patterns of a `[roles]` section; the first bad one is reported.
    pub fn build(cfg: &RolePatternsConfig) -> Result<RolePatterns, PatternError> {
        let mut rules = Vec::new();
        for (role, list) in [
            (PortRole::Uplink, &cfg.uplink),
            (PortRole::Downlink, &cfg.downlink),
            (PortRole::Infrastructure, &cfg.infrastructure),
        ] {
            for (index, pattern) in list.iter().enumerate() {
                let re = Regex::new(pattern).map_err(|source| PatternError {
                    role,
                    index,
                    pattern: pattern.clone(),
                    source,
                })?;
                rules.push((role, re));
            }
        }
        Ok(RolePatterns { rules })
    }

    /// The role the alias patterns give, if any matches.
    pub fn match_alias(&self, alias: &str) -> Option<PortRole> {
        self.rules
            .iter()
            .find(|(_, re)| re.is_match(alias))
            .map(|(role, _)| *role)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn alias_patterns_in_role_order() {
        let p = RolePatterns::build(&RolePatternsConfig {
            uplink: vec!["(?i)^uplink".into()],
            downlink: vec!["(?i)^(downlink|to-access)".into()],
            infrastructure: vec!["(?i)\\bap\\b".into(), "(?i)server".into()],
        })
        .unwrap();
        for (alias, want) in [
            ("Uplink: dist1 Te1/0/5", Some(PortRole::Uplink)),
            ("downlink a-b12-02", Some(PortRole::Downlink)),
            ("B12 AP 3", Some(PortRole::Infrastructure)),
            ("B12-R101-U01", None),
            ("", None),
        ] {
            assert_eq!(p.match_alias(alias), want, "alias {alias:?}");
        }
    }

    #[test]
    fn a_bad_pattern_names_role_and_position() {
        let err = RolePatterns::build(&RolePatternsConfig {
            uplink: vec!["ok".into(), "(unclosed".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.role, PortRole::Uplink);
        assert_eq!(err.index, 1);
    }

    #[test]
    fn only_access_is_unwatched() {
        let watched: Vec<_> = PortRole::ALL
            .into_iter()
            .filter(|r| r.is_watched())
            .collect();
        assert_eq!(watched.len(), 3);
        assert!(!PortRole::Access.is_watched());
    }
}
