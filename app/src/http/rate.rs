//! A per-address sliding-window rate limit, the one limiter of the manager: for public endpoints
//! that cost the manager work or an outbound request (the single sign-on start fetches the
//! provider's discovery document and stores a pending sign-in), and for failed sign-ins per
//! source address (an attempt is taken before the password is checked and given back on success).
//!
//! The time is always passed in (the manager's [`crate::clock::Clock`]), so tests move it; the
//! decision itself is the pure [`wait`].

use chrono::{Duration, NaiveDateTime};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Entries kept before stale addresses are swept.
const SWEEP_ABOVE: usize = 50_000;

/// Failed sign-ins per address in [`LOGIN_WINDOW`] before the address must wait.
pub const LOGIN_MAX_FAILURES: usize = 10;
/// Window of the per-address sign-in throttle.
pub const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// At most `max` events per address in any `window`.
#[derive(Debug)]
pub struct Limiter {
    max: usize,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, VecDeque<NaiveDateTime>>>,
}

/// Default of `server.public_writes_per_minute`: requests a minute per source to a public endpoint
/// that writes an audit record.
pub const PUBLIC_WRITES_PER_MINUTE: usize = 30;

/// Takes one of `source`'s attempts at a public endpoint that writes an audit record; a
/// `429 too_many_requests` when it has used them all.
pub fn public_write(
    state: &crate::state::AppState,
    source: Option<IpAddr>,
) -> Result<(), crate::error::AppError> {
    let Some(ip) = source.map(crate::http::client::source_key) else {
        return Ok(());
    };
    state
        .public_writes
        .check(ip, state.clock.now())
        .map_err(|wait| crate::error::AppError::TooManyRequests {
            message: format!("Too many requests from this address; try again in {wait} s."),
            retry_after: i64::try_from(wait).unwrap_or(60),
        })
}

impl Default for Limiter {
    /// The sign-in throttle: [`LOGIN_MAX_FAILURES`] per [`LOGIN_WINDOW`].
    fn default() -> Self {
        Self::new(LOGIN_MAX_FAILURES, LOGIN_WINDOW)
    }
}

/// The decision: with `events` (oldest first, all within the window) already counted, whether
/// one more is allowed at `now`; `Some(seconds to wait)` when `max` is reached.
pub fn wait(
    events: &VecDeque<NaiveDateTime>,
    max: usize,
    window: Duration,
    now: NaiveDateTime,
) -> Option<u64> {
    if events.len() < max {
        return None;
    }
    let oldest = events.front().copied().unwrap_or(now);
    let left = (oldest + window - now).num_seconds().max(1);
    Some(u64::try_from(left).unwrap_or(1))
}

impl Limiter {
    /// A limiter allowing `max` events per `window` and address.
    pub fn new(max: usize, window: std::time::Duration) -> Self {
        Self {
            max,
            window: Duration::from_std(window).unwrap_or_else(|_| Duration::days(365)),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event from `ip` at `now`; `Err(seconds to wait)` when over the limit (not
    /// recorded).
    pub fn check(&self, ip: IpAddr, now: NaiveDateTime) -> Result<(), u64> {
        let Ok(mut seen) = self.seen.lock() else {
            return Ok(());
        };
        let window = self.window;
        if seen.len() > SWEEP_ABOVE {
            seen.retain(|_, q| q.back().is_some_and(|t| *t + window > now));
        }
        let q = seen.entry(ip.to_canonical()).or_default();
        while q.front().is_some_and(|t| *t + window <= now) {
            q.pop_front();
        }
        if let Some(w) = wait(q, self.max, window, now) {
            return Err(w);
        }
        q.push_back(now);
        Ok(())
    }

    /// Gives back the event recorded for `ip` at `at` (a sign-in that succeeded).
    pub fn give_back(&self, ip: IpAddr, at: NaiveDateTime) {
        if let Ok(mut seen) = self.seen.lock() {
            if let Some(q) = seen.get_mut(&ip.to_canonical()) {
                if let Some(pos) = q.iter().rposition(|t| *t == at) {
                    q.remove(pos);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn limits_per_address() {
        let l = Limiter::new(3, std::time::Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..3 {
            assert!(l.check(a, t(i)).is_ok());
        }
        assert_eq!(l.check(a, t(10)), Err(50));
        assert!(
            l.check(b, t(10)).is_ok(),
            "other addresses are not affected"
        );
        assert!(
            l.check("::ffff:192.0.2.1".parse().unwrap(), t(10)).is_err(),
            "v4-mapped is the same address"
        );
        assert!(l.check(a, t(60)).is_ok(), "the oldest left the window");
    }

    #[test]
    fn given_back_attempts_do_not_count() {
        let l = Limiter::new(2, std::time::Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..10 {
            assert!(l.check(a, t(i)).is_ok());
            l.give_back(a, t(i));
        }
        assert!(l.check(a, t(20)).is_ok());
        assert!(l.check(a, t(21)).is_ok());
        assert!(l.check(a, t(22)).is_err());
    }

    #[test]
    fn wait_is_pure() {
        let w = Duration::minutes(15);
        let q: VecDeque<_> = (0..10).map(|i| t(i * 60)).collect();
        assert_eq!(wait(&q, 10, w, t(600)), Some(300));
        assert_eq!(wait(&q, 11, w, t(600)), None);
        assert_eq!(wait(&q, 10, w, t(900)), Some(1), "never less than a second");
    }
}
