//! The manager's source-address allow-list, enforced at the HTTP edge.
//!
//! Off until an Admin enables it; then every request from an address not on the list is refused
//! with 403 before routing (deny by default), and the refusal is audited — once a minute per
//! address, so a scanner cannot flood the audit log. While first-run setup is pending, loopback
//! is always let through, so a fresh installation can always be set up from the machine itself.
//! The refusal is an ordinary response, so it carries the request id, the security headers and a
//! log line like any other answer.
//!
//! A stored list that cannot be read (it does not parse, or an entry is not an address or range)
//! fails closed: every address is refused, start-up and every reload name the key, and
//! `patch-manager allow-list --disable` on the server is the way back. Rules for changing the
//! list live in [`crate::settings`]; the running manager picks up a change made by the CLI within
//! [`RELOAD_AFTER`].

use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::{Database, DbError};
use crate::error::AppError;
use crate::settings;
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use shared::fleet::AllowListSettings;
use shared::netfilter::AllowList;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// A refused request re-reads the setting at most this often (picks up CLI changes).
pub const RELOAD_AFTER: Duration = Duration::from_secs(5);
/// Refusals of one address are audited at most this often.
const AUDIT_EVERY: Duration = Duration::from_secs(60);

/// What the stored setting says.
#[derive(Debug, Clone)]
enum Policy {
    /// A readable list (enforced only when enabled).
    Readable(AllowListSettings, AllowList),
    /// The stored value cannot be read: refuse everyone until it is fixed.
    Unreadable(String),
}

impl Default for Policy {
    fn default() -> Self {
        Self::Readable(AllowListSettings::default(), AllowList::default())
    }
}

/// The list in force.
#[derive(Debug, Default)]
pub struct NetGuard {
    current: RwLock<Policy>,
    loaded_at: Mutex<Option<Instant>>,
    audited: Mutex<HashMap<IpAddr, Instant>>,
}

impl NetGuard {
    /// Loads the stored list. An unreadable one is logged (naming the key) and enforced as
    /// "refuse everyone"; only a database that cannot be reached fails the start.
    pub async fn load(db: &Database) -> Result<Self, DbError> {
        let guard = Self::default();
        guard.reload(db).await?;
        Ok(guard)
    }

    async fn reload(&self, db: &Database) -> Result<(), DbError> {
        let policy = match db.run(settings::read_allow_list).await {
            Ok(s) => match settings::validate_allow_list(&s) {
                Ok(list) => Policy::Readable(s, list),
                Err(why) => Policy::Unreadable(format!("invalid entry: {why}")),
            },
            Err(DbError::UnreadableSetting { reason, .. }) => Policy::Unreadable(reason),
            Err(e) => return Err(e),
        };
        if let Policy::Unreadable(reason) = &policy {
            tracing::error!(
                key = settings::ALLOW_LIST,
                %reason,
                "the stored allow-list cannot be read: every address is refused until it is \
                 fixed (patch-manager allow-list --disable turns it off)"
            );
        }
        self.set(policy);
        Ok(())
    }

    fn set(&self, policy: Policy) {
        if let Ok(mut cur) = self.current.write() {
            *cur = policy;
        }
        if let Ok(mut at) = self.loaded_at.lock() {
            *at = Some(Instant::now());
        }
    }

    /// Puts a new, validated list in force.
    pub fn replace(&self, s: AllowListSettings, list: AllowList) {
        self.set(Policy::Readable(s, list));
    }

    /// The list in force, or why the stored one cannot be read.
    pub fn settings(&self) -> Result<AllowListSettings, AppError> {
        match self.current.read().map(|c| c.clone()) {
            Ok(Policy::Readable(s, _)) => Ok(s),
            Ok(Policy::Unreadable(reason)) => Err(AppError::Database(DbError::UnreadableSetting {
                key: settings::ALLOW_LIST.into(),
                reason,
            })),
            Err(_) => Err(AppError::Internal("allow-list lock poisoned".into())),
        }
    }

    /// Whether `ip` may use the manager.
    pub fn allows(&self, ip: IpAddr, setup_pending: bool) -> bool {
        if setup_pending && ip.to_canonical().is_loopback() {
            return true;
        }
        match self.current.read().as_deref() {
            Ok(Policy::Readable(s, list)) => !s.enabled || list.allows(ip),
            Ok(Policy::Unreadable(_)) | Err(_) => false,
        }
    }

    fn reload_due(&self) -> bool {
        self.loaded_at
            .lock()
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

/// Refuses requests from addresses the list does not allow, with an ordinary 403 response.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(AppError::Internal("application state missing".into())));
    };
    let Some(ip) = crate::http::client::client_ip(req.request()) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let pending = state.setup.required();
    let mut allowed = state.netguard.allows(ip, pending);
    // Maybe the list changed outside this process (the CLI): look again, at most every few
    // seconds.
    if !allowed && state.netguard.reload_due() {
        if let Err(e) = state.netguard.reload(&state.db).await {
            tracing::warn!(error = %e, "allow-list reload failed; keeping the list in force");
        }
        allowed = state.netguard.allows(ip, pending);
    }
    if allowed {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    if state.netguard.should_audit(ip) {
        state
            .audit
            .note(
                NewAuditEntry::new("anonymous", "network.denied", Outcome::Denied)
                    .target(req.path())
                    .details(serde_json::json!({
                        "reason": "source address not on the allow-list"
                    }))
                    .source(Some(ip)),
            )
            .await;
    }
    Ok(req.error_response(AppError::AddressNotAllowed))
}
