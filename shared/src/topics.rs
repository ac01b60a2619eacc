//! MQTT topic names (DESIGN.md section 4). The only place topics are spelt out.

/// Prefix of every topic this product uses.
pub const PREFIX: &str = "cnaas/v1";

/// Filter matching every event of every agent.
pub const EVENTS_FILTER: &str = "cnaas/v1/events/+/+";

/// Filter matching every agent's status.
pub const STATUS_FILTER: &str = "cnaas/v1/agents/+/status";

/// `cnaas/v1/events/{agent}/{device}`: events, QoS 1.
pub fn event_topic(agent: &str, device: &str) -> String {
    format!("{PREFIX}/events/{agent}/{device}")
}

/// `cnaas/v1/agents/{agent}/status`: retained status, last-will `offline`.
pub fn status_topic(agent: &str) -> String {
    format!("{PREFIX}/agents/{agent}/status")
}

/// What a topic is, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    /// An event topic with its agent and device.
    Event {
        /// Agent id.
        agent: &'a str,
        /// Device name.
        device: &'a str,
    },
    /// An agent status topic.
    Status {
        /// Agent id.
        agent: &'a str,
    },
}

/// Parses a topic this product publishes; `None` for anything else.
pub fn parse(topic: &str) -> Option<Topic<'_>> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["events", agent, device] if !agent.is_empty() && !device.is_empty() => {
            Some(Topic::Event { agent, device })
        }
        ["agents", agent, "status"] if !agent.is_empty() => Some(Topic::Status { agent }),
        _ => None,
    }
}

/// Whether a name can be used as one topic level (no wildcards, separators or NUL).
pub fn is_valid_level(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse() {
        let t = event_topic("site-b12", "a-b12-01");
        assert_eq!(t, "cnaas/v1/events/site-b12/a-b12-01");
        assert_eq!(
            parse(&t),
            Some(Topic::Event {
                agent: "site-b12",
                device: "a-b12-01"
            })
        );
        assert_eq!(
            parse(&status_topic("site-b12")),
            Some(Topic::Status { agent: "site-b12" })
        );
        for bad in [
            "cnaas/v1/events/a",
            "cnaas/v1/events/a/b/c",
            "other/v1/events/a/b",
            "cnaas/v1/events//b",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn levels() {
        assert!(is_valid_level("a-b12-01.example.org"));
        for bad in ["", "a/b", "a+", "#", "a\0"] {
            assert!(!is_valid_level(bad), "{bad:?}");
        }
    }
}
