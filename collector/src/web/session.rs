//! Dashboard sessions: a browser signs in once with its bearer token and then carries only a
//! random session id in an HttpOnly, SameSite=Strict cookie. The token itself is never stored
//! in the browser. Sessions live in memory (a restart signs everyone out) and end after a
//! while without use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::Principal;

/// The cookie's name.
pub const COOKIE: &str = "cnaas_session";

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who signed in.
    pub principal: Principal,
    /// Must come back in every form (a second guard beside SameSite against cross-site posts).
    pub csrf: String,
    last_used: Instant,
}

/// The sessions, by id.
#[derive(Debug)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: usize,
}

/// A fresh unguessable id (244 random bits from the OS generator, through uuid v4).
pub fn random_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Sessions {
    /// Sessions that end after `idle` without use; at most `max` at once (the oldest goes).
    pub fn new(idle: Duration, max: usize) -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            idle,
            max: max.max(1),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map usable: it holds only plain data.
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a session; returns its id.
    pub fn create(&self, principal: Principal, now: Instant) -> String {
        let mut map = self.map();
        let idle = self.idle;
        map.retain(|_, s| now.saturating_duration_since(s.last_used) < idle);
        while map.len() >= self.max {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        let id = random_id();
        map.insert(
            id.clone(),
            Session {
                principal,
                csrf: random_id(),
                last_used: now,
            },
        );
        id
    }

    /// The session with this id, if it is still alive (and marks it used).
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.map();
        let alive = map
            .get(id)
            .is_some_and(|s| now.saturating_duration_since(s.last_used) < self.idle);
        if !alive {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        s.last_used = now;
        Some(s.clone())
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.map().remove(id);
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::Role;

    fn who(name: &str) -> Principal {
        Principal {
            name: name.into(),
            role: Role::Ssc,
            contact: None,
        }
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let t0 = Instant::now();
        let s = Sessions::new(Duration::from_secs(60), 2);
        let a = s.create(who("a"), t0);
        assert_eq!(a.len(), 64);
        let got = s.get(&a, t0 + Duration::from_secs(59)).unwrap();
        assert_eq!(got.principal.name, "a");
        assert_ne!(got.csrf, a);
        // Use keeps it alive; idleness ends it.
        assert!(s.get(&a, t0 + Duration::from_secs(118)).is_some());
        assert!(s.get(&a, t0 + Duration::from_secs(179)).is_none());
        // At most two: the least recently used goes.
        let t1 = t0 + Duration::from_secs(200);
        let b = s.create(who("b"), t1);
        let c = s.create(who("c"), t1 + Duration::from_secs(1));
        let d = s.create(who("d"), t1 + Duration::from_secs(2));
        assert!(s.get(&b, t1 + Duration::from_secs(3)).is_none());
        assert!(s.get(&c, t1 + Duration::from_secs(3)).is_some());
        assert!(s.get(&d, t1 + Duration::from_secs(3)).is_some());
        s.remove(&d);
        assert!(s.get(&d, t1 + Duration::from_secs(3)).is_none());
        assert!(s.get("guess", t1).is_none());
    }

    #[test]
    fn cookie_header_is_parsed() {
        assert_eq!(cookie("a=1; cnaas_session=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("cnaas_session=", COOKIE), Some(""));
        assert_eq!(cookie("cnaas_sessionx=1", COOKIE), None);
        assert_eq!(cookie("", COOKIE), None);
    }
}
