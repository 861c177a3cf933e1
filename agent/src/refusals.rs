//! Audit records of refused connections, throttled: an address that is not allowed, or a TLS
//! handshake that fails, is recorded at most once per `audit.refusal_interval_secs` per source
//! (an IPv4 address, an IPv6 /64) and kind; the refusals in between are counted and the count is
//! written with the next record of that source, or by a sweep once the interval has passed, so
//! every refusal is accounted for without a record each. At most [`MAX_SOURCES`] sources are
//! tracked at once; refusals from further sources share one entry (`source = "other"`). A loop
//! of connects therefore writes a bounded number of records per interval instead of one per
//! connect.

use crate::audit::AuditLog;
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Sources tracked at once.
pub const MAX_SOURCES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Address(IpAddr),
    /// An IPv6 /64, by its network address.
    Prefix(Ipv6Addr),
    Unknown,
    Other,
}

impl Source {
    fn of(peer: Option<SocketAddr>) -> Self {
        match peer.map(|p| p.ip().to_canonical()) {
            Some(IpAddr::V6(v6)) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Self::Prefix(Ipv6Addr::from(bits))
            }
            Some(v4) => Self::Address(v4),
            None => Self::Unknown,
        }
    }

    fn label(&self) -> String {
        match self {
            Self::Address(a) => a.to_string(),
            Self::Prefix(p) => format!("{p}/64"),
            Self::Unknown => "unknown".into(),
            Self::Other => "other".into(),
        }
    }
}

struct Entry {
    /// When the last record for this source and kind was written.
    recorded: Instant,
    /// Refusals since then, not yet in a record.
    pending: u64,
    last_peer: Option<SocketAddr>,
    last_reason: String,
}

/// The throttle, shared by the listener's workers.
pub struct Refusals {
    audit: AuditLog,
    interval: Duration,
    entries: Mutex<HashMap<(Source, &'static str), Entry>>,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Refusals {
    /// A throttle writing to `audit` at most once per `interval` per source and kind.
    pub fn new(audit: AuditLog, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            audit,
            interval,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Spawns the sweep (on the current actix runtime) that writes the pending counts of sources
    /// that have gone quiet and forgets them; it ends when the throttle is dropped.
    pub fn spawn_sweep(this: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(this);
        let period = this.interval.min(Duration::from_secs(10));
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match weak.upgrade() {
                    Some(r) => r.sweep(Instant::now()),
                    None => return,
                }
            }
        });
    }

    /// A refused connection from `peer`: `event` names the kind (`connection.denied`,
    /// `tls.refused`), `reason` says why.
    pub fn refused(&self, peer: Option<SocketAddr>, event: &'static str, reason: &str) {
        let now = Instant::now();
        let mut entries = match self.entries.lock() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut key = (Source::of(peer), event);
        if !entries.contains_key(&key) && entries.len() >= MAX_SOURCES {
            key.0 = Source::Other;
        }
        let label = key.0.label();
        match entries.get_mut(&key) {
            Some(e) if now.duration_since(e.recorded) < self.interval => {
                e.pending += 1;
                e.last_peer = peer;
                e.last_reason = reason.to_owned();
            }
            Some(e) => {
                let refusals = e.pending + 1;
                e.recorded = now;
                e.pending = 0;
                self.write(event, &label, peer, reason, refusals);
            }
            None => {
                entries.insert(
                    key,
                    Entry {
                        recorded: now,
                        pending: 0,
                        last_peer: peer,
                        last_reason: reason.to_owned(),
                    },
                );
                self.write(event, &label, peer, reason, 1);
            }
        }
    }

    fn sweep(&self, now: Instant) {
        let mut entries = match self.entries.lock() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.retain(|(source, event), e| {
            if now.duration_since(e.recorded) < self.interval {
                return true;
            }
            if e.pending == 0 {
                return false;
            }
            self.write(
                event,
                &source.label(),
                e.last_peer,
                &e.last_reason,
                e.pending,
            );
            e.recorded = now;
            e.pending = 0;
            true
        });
    }

    fn write(
        &self,
        event: &str,
        source: &str,
        peer: Option<SocketAddr>,
        reason: &str,
        refusals: u64,
    ) {
        tracing::warn!(
            event,
            source,
            ?peer,
            reason,
            refusals,
            "connections refused"
        );
        self.audit.record(
            event,
            json!({
                "peer": peer.map(|p| p.to_string()),
                "source": source,
                "reason": reason,
                "refusals": refusals,
                "interval_secs": self.interval.as_secs(),
            }),
        );
    }
}
