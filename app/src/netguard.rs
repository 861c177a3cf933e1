//! The manager's source-address allow-list.
//!
//! Off until an Admin enables it; then every request from an address not on the list is refused
//! with 403 before routing (deny by default), and the refusal is audited — once a minute per
//! address, so a scanner cannot flood the audit log. While first-run setup is pending, loopback
//! is always let through, so a fresh installation can always be set up from the machine itself.
//! An Admin cannot save a list that leaves out their own address; if the list still locks
//! everyone out, `patch-manager allow-list --disable` on the server turns it off, and the running
//! manager picks that up within [`RELOAD_AFTER`].

use crate::api::AppError;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::{Database, DbConnection, DbError};
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use chrono::NaiveDateTime;
use shared::fleet::AllowListSettings;
use shared::netfilter::AllowList;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Settings key of the list.
pub const SETTING: &str = "security.allow_list";
/// A refused request re-reads the setting at most this often (picks up CLI changes).
pub const RELOAD_AFTER: Duration = Duration::from_secs(5);
/// Refusals of one address are audited at most this often.
const AUDIT_EVERY: Duration = Duration::from_secs(60);

/// The list in force.
#[derive(Debug, Default)]
pub struct NetGuard {
    current: RwLock<(AllowListSettings, AllowList)>,
    loaded_at: Mutex<Option<Instant>>,
    audited: Mutex<HashMap<IpAddr, Instant>>,
}

/// Reads the stored settings.
pub fn read(c: &mut DbConnection) -> Result<AllowListSettings, DbError> {
    crate::db::settings::read(c, SETTING)
}

/// Validates entries: each an address or CIDR range, at most 256.
pub fn validate(s: &AllowListSettings) -> Result<AllowList, String> {
    if s.entries.len() > 256 {
        return Err("at most 256 entries".into());
    }
    AllowList::from_entries(&s.entries)
}

/// Stores the settings.
pub fn write(
    c: &mut DbConnection,
    s: &AllowListSettings,
    by: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    crate::db::settings::write(c, SETTING, s, by, now)
}

impl NetGuard {
    /// Loads the stored list.
    pub async fn load(db: &Database) -> Result<Self, DbError> {
        let guard = Self::default();
        guard.reload(db).await?;
        Ok(guard)
    }

    async fn reload(&self, db: &Database) -> Result<(), DbError> {
        let s = db.run(read).await?;
        // A stored list that no longer parses is treated as empty: deny by default.
        let list = validate(&s).unwrap_or_default();
        self.replace(s, list);
        Ok(())
    }

    /// Puts a new list in force.
    pub fn replace(&self, s: AllowListSettings, list: AllowList) {
        if let Ok(mut cur) = self.current.write() {
            *cur = (s, list);
        }
        if let Ok(mut at) = self.loaded_at.lock() {
            *at = Some(Instant::now());
        }
    }

    /// The list in force.
    pub fn settings(&self) -> AllowListSettings {
        self.current.read().map(|c| c.0.clone()).unwrap_or_default()
    }

    fn allows(&self, ip: IpAddr, setup_pending: bool) -> bool {
        if setup_pending && ip.to_canonical().is_loopback() {
            return true;
        }
        self.current
            .read()
            .map(|c| !c.0.enabled || c.1.allows(ip))
            .unwrap_or(false)
    }

    fn due(&self, last: &Mutex<Option<Instant>>) -> bool {
        last.lock()
            .map(|l| l.is_none_or(|t| t.elapsed() >= RELOAD_AFTER))
            .unwrap_or(true)
    }

    fn should_audit(&self, ip: IpAddr) -> bool {
        let Ok(mut map) = self.audited.lock() else {
            return true;
        };
        if map.len() > 10_000 {
            map.retain(|_, t| t.elapsed() < AUDIT_EVERY);
        }
        match map.get(&ip) {
            Some(t) if t.elapsed() < AUDIT_EVERY => false,
            _ => {
                map.insert(ip, Instant::now());
                true
            }
        }
    }
}

/// Refuses requests from addresses the list does not allow.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(AppError::Internal("application state missing".into()).into());
    };
    let Some(ip) = req.peer_addr().map(|a| a.ip()) else {
        return next.call(req).await;
    };
    let pending = state.setup.required();
    if state.netguard.allows(ip, pending) {
        return next.call(req).await;
    }
    // Maybe the list changed outside this process (the CLI): look again, at most every few
    // seconds.
    if state.netguard.due(&state.netguard.loaded_at) {
        if let Err(e) = state.netguard.reload(&state.db).await {
            tracing::warn!(error = %e, "allow-list reload failed; keeping the list in force");
        }
        if state.netguard.allows(ip, pending) {
            return next.call(req).await;
        }
    }
    if state.netguard.should_audit(ip) {
        state
            .audit
            .note(NewAuditEntry {
                actor: "anonymous".into(),
                action: "network.denied".into(),
                target: Some(req.path().chars().take(200).collect()),
                outcome: Outcome::Denied,
                details: serde_json::json!({ "reason": "source address not on the allow-list" }),
                source_ip: Some(ip.to_string()),
                request_id: None,
            })
            .await;
    }
    Err(AppError::AddressNotAllowed.into())
}
