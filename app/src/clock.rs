//! The time as the sign-in code sees it: the system clock plus an offset that only tests move.
//! TOTP windows, replay refusal and challenge expiry are then tested by moving time rather than
//! by waiting for it.

use chrono::{Duration, NaiveDateTime, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

/// Wall clock with an adjustable offset.
#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    /// Current time (UTC).
    pub fn now(&self) -> NaiveDateTime {
        Utc::now().naive_utc() + Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    /// Current Unix time in seconds.
    pub fn unix(&self) -> u64 {
        u64::try_from(self.now().and_utc().timestamp()).unwrap_or(0)
    }

    /// Moves this clock forward (or back) by `secs`. For tests.
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

/// A stored UTC time as RFC 3339, the way the API writes times.
pub fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339()
}
