//! Scenario files: what happens to the campus, and when. Each `[[step]]` has `at` (time from
//! the start, e.g. `"5s"`) and one action:
//!
//! ```toml
//! [[step]]
//! at = "5s"
//! link = { switch = "access-1-1", port = 52, up = false }   # uplink down
//! [[step]]
//! at = "8s"
//! flap = { switch = "access-1-2", port = 3, times = 6, every = "2s" }
//! [[step]]
//! at = "20s"
//! alive = { switch = "dist-1", alive = false }                # a distribution switch dies
//! [[step]]
//! at = "25s"
//! vlan = { switch = "access-1-3", port = 5, vlan = 20 }
//! [[step]]
//! at = "40s"
//! recover = true
//! ```

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::control::Control;

/// One thing that happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A link goes up or down.
    Link {
        /// Switch.
        switch: String,
        /// ifIndex.
        port: u32,
        /// Up or down.
        up: bool,
    },
    /// ifAdminStatus.
    Admin {
        /// Switch.
        switch: String,
        /// ifIndex.
        port: u32,
        /// Up or down.
        up: bool,
    },
    /// A port's VLAN.
    Vlan {
        /// Switch.
        switch: String,
        /// ifIndex.
        port: u32,
        /// VLAN id.
        vlan: u32,
    },
    /// A switch dies or comes back.
    Alive {
        /// Switch.
        switch: String,
        /// Alive or dead.
        alive: bool,
    },
    /// Everything back up.
    Recover,
}

/// Why a scenario file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not TOML of the expected shape.
    #[error("{0}")]
    Parse(String),
    /// A step is wrong.
    #[error("step {index}: {reason}")]
    Step {
        /// 1-based.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    step: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortUp {
    switch: String,
    port: u32,
    up: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flap {
    switch: String,
    port: u32,
    times: u32,
    every: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vlan {
    switch: String,
    port: u32,
    vlan: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Alive {
    switch: String,
    alive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    at: String,
    link: Option<PortUp>,
    admin: Option<PortUp>,
    flap: Option<Flap>,
    vlan: Option<Vlan>,
    alive: Option<Alive>,
    recover: Option<bool>,
}

fn duration(index: usize, s: &str) -> Result<Duration, ScenarioError> {
    humantime::parse_duration(s).map_err(|e| ScenarioError::Step {
        index,
        reason: format!("`{s}`: {e}"),
    })
}

/// Parses a scenario into a timeline sorted by time (a flap becomes its downs and ups).
pub fn parse(text: &str) -> Result<Vec<(Duration, Action)>, ScenarioError> {
    let file: File =
        toml_edit::de::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
    let mut out = Vec::new();
    for (i, s) in file.step.into_iter().enumerate() {
        let index = i + 1;
        let at = duration(index, &s.at)?;
        let count = [
            s.link.is_some(),
            s.admin.is_some(),
            s.flap.is_some(),
            s.vlan.is_some(),
            s.alive.is_some(),
            s.recover == Some(true),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if count != 1 {
            return Err(ScenarioError::Step {
                index,
                reason: format!(
                    "give exactly one action (link, admin, flap, vlan, alive, recover), not {count}"
                ),
            });
        }
        if let Some(l) = s.link {
            out.push((
                at,
                Action::Link {
                    switch: l.switch,
                    port: l.port,
                    up: l.up,
                },
            ));
        } else if let Some(a) = s.admin {
            out.push((
                at,
                Action::Admin {
                    switch: a.switch,
                    port: a.port,
                    up: a.up,
                },
            ));
        } else if let Some(f) = s.flap {
            let every = duration(index, &f.every)?;
            for n in 0..f.times {
                let t = at + every * n;
                out.push((
                    t,
                    Action::Link {
                        switch: f.switch.clone(),
                        port: f.port,
                        up: false,
                    },
                ));
                out.push((
                    t + every / 2,
                    Action::Link {
                        switch: f.switch.clone(),
                        port: f.port,
                        up: true,
                    },
                ));
            }
        } else if let Some(v) = s.vlan {
            out.push((
                at,
                Action::Vlan {
                    switch: v.switch,
                    port: v.port,
                    vlan: v.vlan,
                },
            ));
        } else if let Some(a) = s.alive {
            out.push((
                at,
                Action::Alive {
                    switch: a.switch,
                    alive: a.alive,
                },
            ));
        } else {
            out.push((at, Action::Recover));
        }
    }
    out.sort_by_key(|(t, _)| *t);
    Ok(out)
}

/// Applies one action.
pub fn apply(control: &Control, action: &Action) -> Result<(), crate::control::ControlError> {
    match action {
        Action::Link { switch, port, up } => control.link(switch, *port, *up),
        Action::Admin { switch, port, up } => control.admin(switch, *port, *up),
        Action::Vlan { switch, port, vlan } => control.vlan(switch, *port, *vlan),
        Action::Alive { switch, alive } => control.alive(switch, *alive),
        Action::Recover => {
            control.recover();
            Ok(())
        }
    }
}

/// Plays a timeline from now; `on_step` hears of each action as it happens.
pub async fn play(
    control: Control,
    timeline: Vec<(Duration, Action)>,
    token: CancellationToken,
    on_step: impl Fn(&Action, &Result<(), crate::control::ControlError>),
) {
    let start = tokio::time::Instant::now();
    for (at, action) in timeline {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep_until(start + at) => {}
        }
        let r = apply(&control, &action);
        on_step(&action, &r);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn steps_expand_and_sort_and_bad_ones_say_which() {
        let t = parse(
            r#"
[[step]]
at = "20s"
alive = { switch = "dist-1", alive = false }
[[step]]
at = "5s"
flap = { switch = "a", port = 3, times = 2, every = "2s" }
[[step]]
at = "1m"
recover = true
"#,
        )
        .unwrap();
        let times: Vec<u64> = t.iter().map(|(d, _)| d.as_millis() as u64).collect();
        assert_eq!(times, [5000, 6000, 7000, 8000, 20000, 60000]);
        assert_eq!(
            t[0].1,
            Action::Link {
                switch: "a".into(),
                port: 3,
                up: false
            }
        );
        assert_eq!(t[5].1, Action::Recover);
        let e = parse("[[step]]\nat = \"1s\"\n").unwrap_err();
        assert!(
            e.to_string().starts_with("step 1: give exactly one action"),
            "{e}"
        );
        let e = parse("[[step]]\nat = \"soon\"\nrecover = true\n").unwrap_err();
        assert!(e.to_string().starts_with("step 1: `soon`"), "{e}");
        assert!(parse("[[step]]\nat = \"1s\"\nexplode = true\n").is_err());
    }
}
