//! The audit log writer: the one actor that appends to the hash chain, and its verifier.
//!
//! Order matters for a hash chain, so every record goes through a single [`AuditWriter`] running on
//! a `SyncArbiter` thread of its own (its database calls block that thread, never an event loop).
//! Features record through the cloneable [`AuditLog`] handle.
//!
//! The writer also signs **checkpoints** of the chain's head ([`checkpoint`]): after every
//! `audit.checkpoint_every_records` records, every `audit.checkpoint_interval_secs` seconds when
//! the head moved, and at a clean shutdown. They live outside the database (a file in the data
//! directory and the log), so a cut tail shows: the verifier finds a checkpoint naming a record
//! that is gone.
//!
//! Verification runs on a thread and a database connection of its own ([`AuditVerifier`]), never
//! on the writer, so audited requests do not wait for it. It is **incremental**: the verifier
//! remembers the id and hash of the last record it verified and the part of the checkpoint file it
//! has read, and the periodic run checks only what came since (plus that the remembered record and
//! the newest checkpoint's record are unchanged). The whole chain is verified at start (in the
//! background), on demand ([`AuditLog::verify`]) and by `patch-manager verify-audit`. The latest
//! verdict is kept for the overview page and logged loudly when broken.

pub mod checkpoint;

use crate::clock::Clock;
use crate::db::audit::{self as store, AuditRow, ChainPoint, NewAuditEntry, Outcome, Walk};
use crate::db::{Database, DbConnection, DbError};
use actix::prelude::*;
use checkpoint::{Checkpoint, CheckpointError, CheckpointFile, Signer};
use shared::status::AuditChainState;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Failure to write or verify the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The writer or verifier actor is gone (shutting down).
    #[error("audit writer unavailable: {0}")]
    Mailbox(#[from] MailboxError),
    /// The checkpoint key or file could not be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
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

/// Signs a checkpoint of the current head, unless that head has one already.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Checkpoint>, AuditError>")]
pub struct WriteCheckpoint;

/// How much of the chain to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every record, and every checkpoint line.
    Full,
    /// What came since the last verification (the whole chain if none succeeded yet).
    Incremental,
}

/// Verifies the chain.
#[derive(Debug, Message)]
#[rtype(result = "Result<AuditChainState, AuditError>")]
pub struct Verify(pub Scope);

/// How the audit log is kept beyond the database.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The checkpoint key and file; `None` writes and checks no checkpoints.
    pub checkpoints: Option<Arc<Signer>>,
    /// A checkpoint after this many appended records.
    pub checkpoint_every_records: u64,
    /// Where appended records are counted (sign-in outcomes for `/metrics`).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            checkpoints: None,
            checkpoint_every_records: 100,
            metrics: None,
        }
    }
}

/// The single writer. Runs on its own thread; blocking is expected here.
pub struct AuditWriter {
    db: Database,
    clock: Arc<Clock>,
    signer: Option<Arc<Signer>>,
    every: u64,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    since_checkpoint: u64,
    last_checkpointed: Option<ChainPoint>,
}

impl Actor for AuditWriter {
    type Context = SyncContext<Self>;
}

impl AuditWriter {
    fn checkpoint(&mut self, head: ChainPoint) -> Result<Option<Checkpoint>, AuditError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        if head.id == 0 || self.last_checkpointed.as_ref() == Some(&head) {
            return Ok(None);
        }
        let cp = signer.checkpoint(head.id, &head.hash, self.clock.now())?;
        self.since_checkpoint = 0;
        self.last_checkpointed = Some(head);
        Ok(Some(cp))
    }
}

impl Handler<Append> for AuditWriter {
    type Result = Result<AuditRow, AuditError>;

    fn handle(&mut self, msg: Append, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.db.conn()?;
        let counted = self
            .metrics
            .as_ref()
            .map(|m| (m.clone(), msg.0.action.clone(), msg.0.outcome));
        let row = store::append(&mut conn, msg.0, self.clock.now())?;
        if let Some((metrics, action, outcome)) = counted {
            metrics.audited(&action, outcome);
        }
        tracing::debug!(audit_id = row.id, action = %row.action, "audit record appended");
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.every {
            let head = ChainPoint {
                id: row.id,
                hash: row.row_hash.clone(),
            };
            // The record is stored; a checkpoint that cannot be written is retried next time.
            if let Err(e) = self.checkpoint(head) {
                tracing::error!(error = %e, "cannot write an audit checkpoint");
            }
        }
        Ok(row)
    }
}

impl Handler<WriteCheckpoint> for AuditWriter {
    type Result = Result<Option<Checkpoint>, AuditError>;

    fn handle(&mut self, _: WriteCheckpoint, _: &mut Self::Context) -> Self::Result {
        if self.signer.is_none() {
            return Ok(None);
        }
        // From the database, not memory: `patch-manager enrollment-token` appends from outside.
        let head = store::head(&mut *self.db.conn()?)?;
        self.checkpoint(head)
    }
}

/// Verifies the chain and the checkpoints against it, remembering how far it got.
///
/// [`full`](Self::full) walks every record from the first and reads every checkpoint line;
/// [`incremental`](Self::incremental) starts at the last record a successful run verified (which
/// must still be there with the same hash) and reads only the checkpoint lines appended since. Both
/// then check that the newest checkpoint's record exists with the signed hash: a checkpoint beyond
/// the chain's end means its tail was cut, and the verdict says how many records are missing.
#[derive(Debug)]
pub struct ChainVerifier {
    file: Option<CheckpointFile>,
    verified: Option<ChainPoint>,
    offset: u64,
    lines: usize,
    newest: Option<Checkpoint>,
}

/// What one verification did, besides its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The verdict.
    pub state: AuditChainState,
    /// Records read and checked in this run.
    pub checked: u64,
    /// Valid checkpoint lines read in this run.
    pub checkpoints: usize,
    /// The newest valid checkpoint known.
    pub newest_checkpoint: Option<Checkpoint>,
}

impl ChainVerifier {
    /// A verifier checking the checkpoints in `file` (none: the chain only).
    pub fn new(file: Option<CheckpointFile>) -> Self {
        Self {
            file,
            verified: None,
            offset: 0,
            lines: 0,
            newest: None,
        }
    }

    fn forget(&mut self) {
        self.verified = None;
        self.offset = 0;
        self.lines = 0;
        self.newest = None;
    }

    /// Verifies every record and every checkpoint.
    pub fn full(&mut self, conn: &mut DbConnection) -> Result<VerifyReport, AuditError> {
        self.forget();
        self.run(conn, ChainPoint::genesis())
    }

    /// Verifies what came since the last successful run (everything if there was none).
    pub fn incremental(&mut self, conn: &mut DbConnection) -> Result<VerifyReport, AuditError> {
        match self.verified.clone() {
            // The remembered record must still be there as verified; if it is not, the full run
            // says what happened (a cut tail with its count, or the first altered record).
            Some(from) if store::hash_of(conn, from.id)?.as_ref() == Some(&from.hash) => {
                self.run(conn, from)
            }
            _ => self.full(conn),
        }
    }

    /// Verifies the records after `id`, trusting record `id` as stored, and every checkpoint
    /// (`verify-audit --since`, to check the recent part of a long chain quickly).
    pub fn since(&mut self, conn: &mut DbConnection, id: i64) -> Result<VerifyReport, AuditError> {
        self.forget();
        let from = match store::hash_of(conn, id)? {
            Some(hash) => ChainPoint { id, hash },
            None if id <= 0 => ChainPoint::genesis(),
            None => {
                return Ok(self.report(
                    AuditChainState::Broken {
                        id,
                        reason: format!("record {id} does not exist"),
                    },
                    0,
                    0,
                ))
            }
        };
        self.run(conn, from)
    }

    fn report(&self, state: AuditChainState, checked: u64, checkpoints: usize) -> VerifyReport {
        VerifyReport {
            state,
            checked,
            checkpoints,
            newest_checkpoint: self.newest.clone(),
        }
    }

    fn broken(&mut self, id: i64, reason: String, checked: u64, cps: usize) -> VerifyReport {
        let report = self.report(AuditChainState::Broken { id, reason }, checked, cps);
        self.forget();
        report
    }

    fn run(
        &mut self,
        conn: &mut DbConnection,
        from: ChainPoint,
    ) -> Result<VerifyReport, AuditError> {
        // The checkpoint file is read before the chain: every line read names a record that was
        // committed before the walk began, so a checkpoint beyond the walk's end is a cut tail,
        // never a race with the writer.
        let scan = match &self.file {
            Some(file) => Some((file.scan(self.offset, self.lines)?, file.path().to_owned())),
            None => None,
        };
        let (new, bad, shrank, end, lines, path) = match scan {
            Some((s, path)) => (s.valid, s.bad, s.shrank, s.end, s.lines, path),
            None => (Vec::new(), Vec::new(), false, 0, 0, Default::default()),
        };
        let cps = new.len();
        if shrank {
            let id = self.newest.as_ref().map_or(0, |c| c.id);
            return Ok(self.broken(
                id,
                format!(
                    "the checkpoint file {} is shorter than when it was last read: checkpoint \
                     lines were removed (tampering)",
                    path.display()
                ),
                0,
                cps,
            ));
        }
        let mut ahead: std::collections::HashMap<i64, Vec<&Checkpoint>> = Default::default();
        for cp in new.iter().filter(|c| c.id > from.id) {
            ahead.entry(cp.id).or_default().push(cp);
        }
        let walk = store::walk(conn, &from, |row| {
            ahead.get(&row.id).and_then(|cps| {
                cps.iter().find(|c| c.hash != row.row_hash).map(|c| {
                    format!(
                        "record does not match the checkpoint signed at {} (the record was \
                         replaced after it was checkpointed)",
                        c.at
                    )
                })
            })
        })?;
        let (tail, checked) = match walk {
            Walk::Intact { tail, checked } => (tail, checked),
            Walk::Broken { id, reason } => return Ok(self.broken(id, reason, 0, cps)),
        };
        if let Some(b) = bad.first() {
            let what = b.id.map(|id| format!(" (record {id})")).unwrap_or_default();
            let reason = format!(
                "checkpoint file {} line {}{what}: {} — the checkpoint file was tampered with",
                path.display(),
                b.line,
                b.reason
            );
            return Ok(self.broken(b.id.unwrap_or(0), reason, checked, cps));
        }
        // Checkpoints read now that name records verified before; and the newest one.
        let mut newest = self.newest.take();
        let mut to_look_up: Vec<&Checkpoint> = new.iter().filter(|c| c.id <= from.id).collect();
        for cp in &new {
            if newest.as_ref().is_none_or(|n| cp.id >= n.id) {
                newest = Some(cp.clone());
            }
        }
        self.newest = newest.clone();
        if let Some(n) = &newest {
            if n.id > tail.id {
                let missing = n.id - tail.id;
                let ends = if tail.id == 0 {
                    "the chain is empty".to_owned()
                } else {
                    format!("the chain ends at record {}", tail.id)
                };
                let reason = format!(
                    "TRUNCATED: {ends} but checkpoint at record {} (signed {}) — {missing} \
                     record{} missing, and any written after that checkpoint",
                    n.id,
                    n.at,
                    if missing == 1 { "" } else { "s" },
                );
                return Ok(self.broken(tail.id + 1, reason, checked, cps));
            }
            if n.id <= from.id {
                to_look_up.push(n);
            }
        }
        for cp in to_look_up {
            match store::hash_of(conn, cp.id)? {
                Some(h) if h == cp.hash => {}
                found => {
                    let what = if found.is_some() {
                        "does not match"
                    } else {
                        "is missing, named by"
                    };
                    let reason =
                        format!("record {} {what} the checkpoint signed at {}", cp.id, cp.at);
                    return Ok(self.broken(cp.id, reason, checked, cps));
                }
            }
        }
        self.verified = Some(tail.clone());
        self.offset = end;
        self.lines = lines;
        Ok(self.report(
            AuditChainState::Intact {
                records: u64::try_from(tail.id).unwrap_or(0),
            },
            checked,
            cps,
        ))
    }
}

/// Runs verifications on a thread and connection of its own.
pub struct AuditVerifier {
    db: Database,
    verifier: ChainVerifier,
}

impl Actor for AuditVerifier {
    type Context = SyncContext<Self>;
}

impl Handler<Verify> for AuditVerifier {
    type Result = Result<AuditChainState, AuditError>;

    fn handle(&mut self, msg: Verify, _: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let mut conn = self.db.conn()?;
        let report = match msg.0 {
            Scope::Full => self.verifier.full(&mut conn)?,
            Scope::Incremental => self.verifier.incremental(&mut conn)?,
        };
        let elapsed_ms = started.elapsed().as_millis();
        if let AuditChainState::Intact { records } = &report.state {
            if msg.0 == Scope::Full {
                tracing::info!(
                    records,
                    checked = report.checked,
                    checkpoints = report.checkpoints,
                    elapsed_ms,
                    "audit chain verified (full)"
                );
            } else {
                tracing::debug!(
                    records,
                    checked = report.checked,
                    checkpoints = report.checkpoints,
                    elapsed_ms,
                    "audit chain verified (incremental)"
                );
            }
        }
        Ok(report.state)
    }
}

/// Cloneable handle used by the rest of the manager.
#[derive(Clone)]
pub struct AuditLog {
    writer: Addr<AuditWriter>,
    verifier: Addr<AuditVerifier>,
    last_verdict: Arc<RwLock<Option<AuditChainState>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer and verifier threads without checkpoints; records are stamped with
    /// `clock`'s time (the application's clock, so tests that move it see it in the audit log
    /// too). Must be called inside an actix system.
    pub fn start(db: Database, clock: Arc<Clock>) -> Self {
        Self::start_with(db, clock, AuditOptions::default())
    }

    /// Starts the writer and verifier threads, signing checkpoints as `options` say.
    pub fn start_with(db: Database, clock: Arc<Clock>, options: AuditOptions) -> Self {
        let file = options.checkpoints.as_ref().map(|s| s.file().clone());
        let verifier_db = db.clone();
        let verifier = SyncArbiter::start(1, move || AuditVerifier {
            db: verifier_db.clone(),
            verifier: ChainVerifier::new(file.clone()),
        });
        let every = options.checkpoint_every_records.max(1);
        let writer = SyncArbiter::start(1, move || AuditWriter {
            db: db.clone(),
            clock: clock.clone(),
            signer: options.checkpoints.clone(),
            every,
            metrics: options.metrics.clone(),
            since_checkpoint: 0,
            last_checkpointed: None,
        });
        Self {
            writer,
            verifier,
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

    /// Signs a checkpoint of the current head now (none when it has one, or checkpoints are off).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        self.writer.send(WriteCheckpoint).await?
    }

    /// Verifies the whole chain and every checkpoint now, remembers and returns the verdict.
    pub async fn verify(&self) -> Result<AuditChainState, AuditError> {
        self.verify_scope(Scope::Full).await
    }

    /// Verifies what was appended since the last verification, remembers and returns the verdict.
    pub async fn verify_incremental(&self) -> Result<AuditChainState, AuditError> {
        self.verify_scope(Scope::Incremental).await
    }

    async fn verify_scope(&self, scope: Scope) -> Result<AuditChainState, AuditError> {
        let verdict = self.verifier.send(Verify(scope)).await??;
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

    /// Spawns, on the current actix runtime, a full verification now and an incremental one
    /// every `every` after.
    pub fn spawn_periodic_verification(&self, every: Duration) {
        let log = self.clone();
        actix::spawn(async move {
            if let Err(e) = log.verify().await {
                tracing::warn!(error = %e, "audit verification failed to run");
            }
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                if let Err(e) = log.verify_incremental().await {
                    tracing::warn!(error = %e, "periodic audit verification failed to run");
                }
            }
        });
    }

    /// Spawns the periodic checkpoint (written only when the head moved) on the current runtime.
    pub fn spawn_periodic_checkpoints(&self, every: Duration) {
        let log = self.clone();
        actix::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                if let Err(e) = log.checkpoint().await {
                    tracing::error!(error = %e, "cannot write an audit checkpoint");
                }
            }
        });
    }
}

/// Longest filter value accepted (actor, action).
const MAX_FILTER_LEN: usize = 200;

/// `GET /api/v1/audit`: one page of the log, newest first, and the chain verified up to its newest
/// record (incrementally: only what was appended since the last verification is read).
pub async fn page(
    state: &crate::state::AppState,
    query: shared::audit::AuditQuery,
) -> Result<shared::audit::AuditPage, crate::error::AppError> {
    use crate::error::AppError;
    use shared::audit::{AuditEntry, AuditPage, DEFAULT_PER_PAGE, MAX_PER_PAGE};
    let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(AppError::invalid(
            "per_page",
            format!("per_page is 1 to {MAX_PER_PAGE}"),
        ));
    }
    let page = query.page.unwrap_or(1);
    if page == 0 {
        return Err(AppError::invalid("page", "pages count from 1"));
    }
    let text = |field: &str, v: Option<String>| -> Result<Option<String>, AppError> {
        match v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
            Some(v) if v.len() > MAX_FILTER_LEN || v.chars().any(char::is_control) => {
                Err(AppError::invalid(
                    field,
                    format!("{field} is at most {MAX_FILTER_LEN} printable characters"),
                ))
            }
            other => Ok(other),
        }
    };
    let actor = text("actor", query.actor)?;
    let action = text("action", query.action)?;
    let since = query
        .since
        .as_deref()
        .map(|t| parse_time(t, false).ok_or_else(|| bad_time("since", t)))
        .transpose()?;
    let until = query
        .until
        .as_deref()
        .map(|t| parse_time(t, true).ok_or_else(|| bad_time("until", t)))
        .transpose()?;
    let target = query.host.map(|h| format!("host:{h}"));
    let offset = i64::from(page - 1) * i64::from(per_page);
    let chain = match state.audit.verify_incremental().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "audit verification for the audit page failed");
            state
                .audit
                .last_verdict()
                .ok_or_else(|| AppError::Internal(e.to_string()))?
        }
    };
    let (rows, total, records, names) = state
        .db
        .run(move |c| {
            let names: std::collections::HashMap<String, String> = crate::db::users::list(c, None)?
                .into_iter()
                .map(|u| (format!("user:{}", u.id), u.username))
                .collect();
            // A user name stands for that user's `user:<id>` actor.
            let actor = actor.map(|a| {
                names
                    .iter()
                    .find(|(_, name)| **name == a)
                    .map_or(a, |(id, _)| id.clone())
            });
            let filter = store::AuditFilter {
                actor,
                action,
                target,
                since,
                until,
            };
            let (rows, total) = store::search(c, &filter, offset, i64::from(per_page))?;
            Ok((rows, total, store::count(c)?, names))
        })
        .await?;
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: crate::clock::rfc3339(r.ts),
            actor_name: names.get(&r.actor).cloned(),
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            details: serde_json::from_str(&r.details_json).unwrap_or(serde_json::Value::Null),
            source_ip: r.source_ip,
            request_id: r.request_id,
        })
        .collect();
    Ok(AuditPage {
        entries,
        total,
        page,
        per_page,
        records,
        chain,
    })
}

fn bad_time(field: &str, value: &str) -> crate::error::AppError {
    crate::error::AppError::invalid(
        field,
        format!("{field} \"{value}\" is neither a date (2026-11-30) nor an RFC 3339 time"),
    )
}

/// An RFC 3339 time, or a date: its start, or with `end_of_day` the start of the next day.
fn parse_time(text: &str, end_of_day: bool) -> Option<chrono::NaiveDateTime> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.naive_utc());
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let day = if end_of_day { day.succ_opt()? } else { day };
    day.and_hms_opt(0, 0, 0)
}

#[cfg(test)]
mod page_tests {
    use super::parse_time;

    #[test]
    fn dates_cover_whole_days() {
        let from = parse_time("2026-11-30", false).unwrap();
        let to = parse_time("2026-11-30", true).unwrap();
        assert_eq!(from.to_string(), "2026-11-30 00:00:00");
        assert_eq!(to.to_string(), "2026-12-01 00:00:00");
        assert_eq!(
            parse_time("2026-11-30T10:00:00+02:00", false)
                .unwrap()
                .to_string(),
            "2026-11-30 08:00:00"
        );
        assert!(parse_time("yesterday", false).is_none());
        assert!(parse_time("2026-13-01", true).is_none());
    }
}
