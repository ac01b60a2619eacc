//! Rate limits of the API: writes per token (a runaway script or a stolen token cannot flood
//! the incident history or the outbox) and failed sign-ins per address (no token guessing at
//! speed). Token buckets, in memory, bounded in size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most; beyond, the fullest buckets (idle ones) are forgotten.
const MAX_KEYS: usize = 10_000;

/// Token buckets by key: `burst` at once, refilled at `per_minute`.
#[derive(Debug)]
pub struct Buckets {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Buckets {
    /// Buckets of `burst` tokens refilled at `per_minute`.
    pub fn new(burst: u32, per_minute: u32) -> Buckets {
        Buckets {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`: Ok, or Err(how long until one is free).
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let (burst, rate) = (self.burst, self.per_second);
            map.retain(|_, (level, at)| {
                *level + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (level, at) = map.entry(key.to_owned()).or_insert((self.burst, now));
        let refilled = (*level
            + now.saturating_duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *level = refilled - 1.0;
            Ok(())
        } else {
            *level = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
        }
    }

    /// Peeks whether `key` has a token at `now`, without taking it.
    pub fn has(&self, key: &str, now: Instant) -> bool {
        let map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).is_none_or(|(level, at)| {
            *level + now.saturating_duration_since(*at).as_secs_f64() * self.per_second >= 1.0
        })
    }
}

/// The API's limits.
#[derive(Debug)]
pub struct Limits {
    /// Writes (actions, comments, changes, orders, resends) per token name.
    pub writes: Buckets,
    /// Failed sign-ins per client address.
    pub logins: Buckets,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A person clicks far less; a script doing real work fits too.
            writes: Buckets::new(30, 120),
            // Five wrong tokens, then one a minute.
            logins: Buckets::new(5, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let b = Buckets::new(3, 60);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take("a", t0).is_ok());
        }
        let wait = b.take("a", t0).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert!(b.take("b", t0).is_ok());
        // One a second comes back.
        assert!(b.take("a", t0 + Duration::from_millis(1100)).is_ok());
        assert!(b.take("a", t0 + Duration::from_millis(1200)).is_err());
        assert!(!b.has("a", t0 + Duration::from_millis(1200)));
        assert!(b.has("zzz", t0));
    }
}
