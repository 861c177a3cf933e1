//! The audit log writer: the one actor that appends to the hash chain.
//!
//! Order matters for a hash chain, so every record goes through a single [`AuditWriter`] running on
//! a `SyncArbiter` thread of its own (its database calls block that thread, never an event loop).
//! Features record through the cloneable [`AuditLog`] handle. A timer re-verifies the whole chain
//! periodically; the latest verdict is kept for the overview page and logged loudly when broken.

use crate::clock::Clock;
use crate::db::audit::{self as store, AuditRow, NewAuditEntry, Outcome};
use crate::db::{Database, DbError};
use actix::prelude::*;
use shared::status::AuditChainState;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Failure to write or verify the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The writer actor is gone (shutting down).
    #[error("audit writer unavailable: {0}")]
    Mailbox(#[from] MailboxError),
}

/// Who asked for an action, as the audit log names them: the actor (`user:<id>`, `cli`,
/// `system`…) and, for a request, the client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// Audit actor.
    pub actor: String,
    /// The signed-in user, if any.
    pub user_id: Option<i64>,
    /// Client address, when a request asked.
    pub source: Option<std::net::IpAddr>,
}

impl Requester {
    /// The signed-in caller of a request from `source`.
    pub fn caller(who: &crate::auth::access::Caller, source: Option<std::net::IpAddr>) -> Self {
        Self {
            actor: who.actor(),
            user_id: Some(who.identity.user_id),
            source,
        }
    }

    /// The signed-in caller of `req`.
    pub fn of(who: &crate::auth::access::Caller, req: &actix_web::HttpRequest) -> Self {
        Self::caller(who, crate::http::client::client_ip(req))
    }

    /// Someone without an account (`system`, `cli`, `enrollment`, `anonymous`), from `source`.
    pub fn named(actor: &str, source: Option<std::net::IpAddr>) -> Self {
        Self {
            actor: actor.to_owned(),
            user_id: None,
            source,
        }
    }

    /// An entry for `action` by this requester that ended with `outcome`.
    pub fn entry(&self, action: &str, outcome: Outcome) -> NewAuditEntry {
        NewAuditEntry::new(self.actor.clone(), action, outcome).source(self.source)
    }

    /// An entry for `action` by this requester that succeeded.
    pub fn success(&self, action: &str) -> NewAuditEntry {
        self.entry(action, Outcome::Success)
    }
}

/// Appends one entry; answers the stored record.
#[derive(Debug, Message)]
#[rtype(result = "Result<AuditRow, AuditError>")]
pub struct Append(pub NewAuditEntry);

/// Verifies the whole chain.
#[derive(Debug, Message)]
#[rtype(result = "Result<AuditChainState, AuditError>")]
pub struct Verify;

/// The single writer. Runs on its own thread; blocking is expected here.
pub struct AuditWriter {
    db: Database,
    clock: Arc<Clock>,
}

impl Actor for AuditWriter {
    type Context = SyncContext<Self>;
}

impl Handler<Append> for AuditWriter {
    type Result = Result<AuditRow, AuditError>;

    fn handle(&mut self, msg: Append, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.db.conn()?;
        let row = store::append(&mut conn, msg.0, self.clock.now())?;
        tracing::debug!(audit_id = row.id, action = %row.action, "audit record appended");
        Ok(row)
    }
}

impl Handler<Verify> for AuditWriter {
    type Result = Result<AuditChainState, AuditError>;

    fn handle(&mut self, _: Verify, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.db.conn()?;
        Ok(store::verify(&mut conn)?)
    }
}

/// Cloneable handle used by the rest of the manager.
#[derive(Clone)]
pub struct AuditLog {
    writer: Addr<AuditWriter>,
    last_verdict: Arc<RwLock<Option<AuditChainState>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer thread; records are stamped with `clock`'s time (the application's
    /// clock, so tests that move it see it in the audit log too). Must be called inside an actix
    /// system.
    pub fn start(db: Database, clock: Arc<Clock>) -> Self {
        let writer = SyncArbiter::start(1, move || AuditWriter {
            db: db.clone(),
            clock: clock.clone(),
        });
        Self {
            writer,
            last_verdict: Arc::new(RwLock::new(None)),
        }
    }

    /// Appends an entry and waits until it is stored.
    pub async fn record(&self, entry: NewAuditEntry) -> Result<AuditRow, AuditError> {
        self.writer.send(Append(entry)).await?
    }

    /// Records an event on behalf of a request or background task whose own answer must not
    /// depend on the audit write: the request id is taken from the request being handled when the
    /// entry has none, and a failure is logged instead of returned.
    pub async fn note(&self, mut entry: NewAuditEntry) {
        if entry.request_id.is_none() {
            entry.request_id = crate::http::middleware::current_request_id();
        }
        let action = entry.action.clone();
        if let Err(e) = self.record(entry).await {
            tracing::error!(error = %e, %action, "cannot write the audit log");
        }
    }

    /// Verifies the chain now, remembers and returns the verdict.
    pub async fn verify(&self) -> Result<AuditChainState, AuditError> {
        let verdict = self.writer.send(Verify).await??;
        if let AuditChainState::Broken { id, reason } = &verdict {
            tracing::error!(audit_id = id, %reason, "AUDIT CHAIN BROKEN: the audit log was tampered with");
        }
        if let Ok(mut last) = self.last_verdict.write() {
            *last = Some(verdict.clone());
        }
        Ok(verdict)
    }

    /// Verdict of the latest verification, if one ran.
    pub fn last_verdict(&self) -> Option<AuditChainState> {
        self.last_verdict.read().ok().and_then(|v| v.clone())
    }

    /// Spawns the periodic verification on the current actix runtime.
    pub fn spawn_periodic_verification(&self, every: Duration) {
        let log = self.clone();
        actix::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = log.verify().await {
                    tracing::warn!(error = %e, "periodic audit verification failed to run");
                }
            }
        });
    }
}
