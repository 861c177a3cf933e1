//! The hash-chained audit log table.
//!
//! Each record carries `prev_hash` (the previous record's `row_hash`, or [`GENESIS_HASH`] for the
//! first) and `row_hash`, the SHA-256 of the record's canonical form: a JSON array of every column
//! in a fixed order, `prev_hash` included. Ids are assigned here, contiguous from 1, so a deleted
//! record shows as a gap, an edited one as a hash mismatch, and a re-ordered one as a broken link.
//!
//! Appending reads the tail and inserts in one transaction; the single audit writer actor
//! ([`crate::audit`]) is the only caller, which keeps the chain linear. The primary key makes a
//! second, accidental writer fail loudly instead of forking the chain.

use super::schema::audit_log;
use super::{DbConnection, DbError};
use chrono::{NaiveDateTime, Timelike};
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use shared::status::AuditChainState;

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records read per query while verifying.
const VERIFY_BATCH: i64 = 1000;

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    /// Position in the chain, from 1.
    pub id: i64,
    /// When it happened (UTC, microsecond precision).
    pub ts: NaiveDateTime,
    /// Who: a user name, `system`, or a host/agent identity.
    pub actor: String,
    /// What, as a dotted verb (`config.changed`, `user.login`).
    pub action: String,
    /// On what, if anything (`host:12`).
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Structured details as canonical JSON.
    pub details_json: String,
    /// Client address, when a request caused it.
    pub source_ip: Option<String>,
    /// Request id, when a request caused it.
    pub request_id: Option<String>,
    /// `row_hash` of the previous record.
    pub prev_hash: String,
    /// SHA-256 (hex) of this record's canonical form.
    pub row_hash: String,
}

/// What a caller records; the chain fields are filled in by [`append`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Structured details.
    pub details: serde_json::Value,
    /// Client address.
    pub source_ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
}

/// How the audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed.
    Failure,
    /// It was refused by a security rule.
    Denied,
}

impl NewAuditEntry {
    /// An entry: who did what, and how it ended. Add the rest with the builder methods; the
    /// request id is filled in from the request being handled when the entry is noted.
    pub fn new(actor: impl Into<String>, action: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            target: None,
            outcome,
            details: serde_json::Value::Null,
            source_ip: None,
            request_id: None,
        }
    }

    /// On what (at most 200 characters are kept: a target may come from a request path).
    #[must_use]
    pub fn target(mut self, target: impl AsRef<str>) -> Self {
        self.target = Some(target.as_ref().chars().take(200).collect());
        self
    }

    /// Structured details.
    #[must_use]
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The client address, when a request caused it.
    #[must_use]
    pub fn source(mut self, ip: Option<std::net::IpAddr>) -> Self {
        self.source_ip = ip.map(|ip| ip.to_canonical().to_string());
        self
    }

    /// The request id, when known explicitly (otherwise taken from the request being handled).
    #[must_use]
    pub fn request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }
}

impl Outcome {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

/// Truncates to microseconds, the precision both engines store, so hashes survive a round trip.
pub fn audit_timestamp(t: NaiveDateTime) -> NaiveDateTime {
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.with_nanosecond(micros).unwrap_or(t)
}

/// SHA-256 (hex) of a record's canonical form; `row_hash` itself is not part of it.
pub fn compute_row_hash(row: &AuditRow) -> String {
    let canonical = serde_json::json!([
        row.id,
        row.ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        row.actor,
        row.action,
        row.target,
        row.outcome,
        row.details_json,
        row.source_ip,
        row.request_id,
        row.prev_hash,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The record at `id` with `hash`; `id` 0 with [`GENESIS_HASH`] is the point before the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPoint {
    /// Record id (0: before the first record).
    pub id: i64,
    /// Its `row_hash`.
    pub hash: String,
}

impl ChainPoint {
    /// Before the first record.
    pub fn genesis() -> Self {
        Self {
            id: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

fn tail(conn: &mut DbConnection) -> Result<ChainPoint, DbError> {
    let tail: Option<(i64, String)> = audit_log::table
        .select((audit_log::id, audit_log::row_hash))
        .order(audit_log::id.desc())
        .first(conn)
        .optional()?;
    Ok(tail.map_or_else(ChainPoint::genesis, |(id, hash)| ChainPoint { id, hash }))
}

/// The newest record's id and hash (the genesis point when the log is empty).
pub fn head(conn: &mut DbConnection) -> Result<ChainPoint, DbError> {
    tail(conn)
}

/// `row_hash` of record `id`, if it exists.
pub fn hash_of(conn: &mut DbConnection, id: i64) -> Result<Option<String>, DbError> {
    Ok(audit_log::table
        .filter(audit_log::id.eq(id))
        .select(audit_log::row_hash)
        .first(conn)
        .optional()?)
}

fn build_row(after: &ChainPoint, entry: NewAuditEntry, now: NaiveDateTime) -> AuditRow {
    let mut row = AuditRow {
        id: after.id + 1,
        ts: audit_timestamp(now),
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        outcome: entry.outcome.as_str().to_owned(),
        // serde_json's default map is ordered by key, so this text is canonical.
        details_json: entry.details.to_string(),
        source_ip: entry.source_ip,
        request_id: entry.request_id,
        prev_hash: after.hash.clone(),
        row_hash: String::new(),
    };
    row.row_hash = compute_row_hash(&row);
    row
}

/// Appends one record at `now`, linked to the current tail, and returns it.
pub fn append(
    conn: &mut DbConnection,
    entry: NewAuditEntry,
    now: NaiveDateTime,
) -> Result<AuditRow, DbError> {
    conn.transaction(|conn| {
        let row = build_row(&tail(conn)?, entry, now);
        diesel::insert_into(audit_log::table)
            .values(&row)
            .execute(conn)?;
        Ok(row)
    })
}

/// Appends many records in one transaction, exactly as [`append`] would one by one (for tests
/// and benchmarks that need long chains quickly); answers the new head.
pub fn append_batch(
    conn: &mut DbConnection,
    entries: impl IntoIterator<Item = NewAuditEntry>,
    now: NaiveDateTime,
) -> Result<ChainPoint, DbError> {
    conn.transaction(|conn| {
        let mut head = tail(conn)?;
        for entry in entries {
            let row = build_row(&head, entry, now);
            diesel::insert_into(audit_log::table)
                .values(&row)
                .execute(conn)?;
            head = ChainPoint {
                id: row.id,
                hash: row.row_hash,
            };
        }
        Ok(head)
    })
}

/// How a walk along the chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walk {
    /// Every record from the start point on links up; `tail` is the last one.
    Intact {
        /// The newest record verified.
        tail: ChainPoint,
        /// Records checked in this walk.
        checked: u64,
    },
    /// The first record that does not verify.
    Broken {
        /// Its id (or the first missing id).
        id: i64,
        /// What is wrong.
        reason: String,
    },
}

/// Walks the chain in id order from `from` (a record verified before, or the genesis point) to
/// the end and reports the first record that does not verify. `from` itself must still be there
/// with the same hash. `check` may reject a record for a reason of its own (a checkpoint it
/// contradicts). Reads in batches, each its own statement: appends are never blocked.
pub fn walk(
    conn: &mut DbConnection,
    from: &ChainPoint,
    mut check: impl FnMut(&AuditRow) -> Option<String>,
) -> Result<Walk, DbError> {
    if from.id > 0 {
        match hash_of(conn, from.id)? {
            Some(h) if h == from.hash => {}
            Some(_) => {
                return Ok(Walk::Broken {
                    id: from.id,
                    reason: "record changed since it was last verified (record altered)".into(),
                })
            }
            None => {
                return Ok(Walk::Broken {
                    id: from.id,
                    reason: format!(
                        "record {} is missing: it was verified before and has been deleted",
                        from.id
                    ),
                })
            }
        }
    }
    let mut expected_id = from.id + 1;
    let mut expected_prev = from.hash.clone();
    let mut checked = 0_u64;
    loop {
        let batch: Vec<AuditRow> = audit_log::table
            .filter(audit_log::id.ge(expected_id))
            .order(audit_log::id.asc())
            .limit(VERIFY_BATCH)
            .select(AuditRow::as_select())
            .load(conn)?;
        if batch.is_empty() {
            return Ok(Walk::Intact {
                tail: ChainPoint {
                    id: expected_id - 1,
                    hash: expected_prev,
                },
                checked,
            });
        }
        for row in batch {
            if row.id != expected_id {
                return Ok(Walk::Broken {
                    id: expected_id,
                    reason: format!(
                        "record {expected_id} is missing (next present is {})",
                        row.id
                    ),
                });
            }
            if row.prev_hash != expected_prev {
                return Ok(Walk::Broken {
                    id: row.id,
                    reason: "prev_hash does not match the previous record's hash".into(),
                });
            }
            if compute_row_hash(&row) != row.row_hash {
                return Ok(Walk::Broken {
                    id: row.id,
                    reason: "content does not match its row_hash (record altered)".into(),
                });
            }
            if let Some(reason) = check(&row) {
                return Ok(Walk::Broken { id: row.id, reason });
            }
            expected_prev = row.row_hash;
            expected_id += 1;
            checked += 1;
        }
    }
}

/// Walks the whole chain (without checkpoints) and reports the first record that does not verify.
pub fn verify(conn: &mut DbConnection) -> Result<AuditChainState, DbError> {
    Ok(match walk(conn, &ChainPoint::genesis(), |_| None)? {
        Walk::Intact { tail, .. } => AuditChainState::Intact {
            records: u64::try_from(tail.id).unwrap_or(0),
        },
        Walk::Broken { id, reason } => AuditChainState::Broken { id, reason },
    })
}

/// Number of records.
pub fn count(conn: &mut DbConnection) -> Result<i64, DbError> {
    Ok(audit_log::table.count().get_result(conn)?)
}

/// Which records a search returns; every part optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Exactly this action, or every action starting with it when it ends in a dot.
    pub action: Option<String>,
    /// Exactly this target.
    pub target: Option<String>,
    /// At or after.
    pub since: Option<NaiveDateTime>,
    /// Before.
    pub until: Option<NaiveDateTime>,
}

/// One page of matching records, newest first, and how many match in all.
pub fn search(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    offset: i64,
    limit: i64,
) -> Result<(Vec<AuditRow>, i64), DbError> {
    let build = || {
        let mut q = audit_log::table.into_boxed();
        if let Some(a) = &filter.actor {
            q = q.filter(audit_log::actor.eq(a.clone()));
        }
        match filter.action.as_deref() {
            Some(a) if a.ends_with('.') => {
                // A family of actions: `user.` matches `user.login`, `user.created`, … (LIKE's
                // own wildcards in the prefix are escaped).
                let pattern = format!(
                    "{}%",
                    a.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                q = q.filter(audit_log::action.like(pattern).escape('\\'));
            }
            Some(a) => q = q.filter(audit_log::action.eq(a.to_owned())),
            None => {}
        }
        if let Some(t) = &filter.target {
            q = q.filter(audit_log::target.eq(t.clone()));
        }
        if let Some(t) = filter.since {
            q = q.filter(audit_log::ts.ge(t));
        }
        if let Some(t) = filter.until {
            q = q.filter(audit_log::ts.lt(t));
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let rows = build()
        .order(audit_log::id.desc())
        .offset(offset)
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// The most recent records, newest first.
pub fn recent(conn: &mut DbConnection, limit: i64) -> Result<Vec<AuditRow>, DbError> {
    Ok(audit_log::table
        .order(audit_log::id.desc())
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn row() -> AuditRow {
        AuditRow {
            id: 1,
            ts: NaiveDate::from_ymd_opt(2026, 11, 23)
                .unwrap()
                .and_hms_micro_opt(10, 0, 0, 5)
                .unwrap(),
            actor: "system".into(),
            action: "manager.started".into(),
            target: None,
            outcome: "success".into(),
            details_json: "{}".into(),
            source_ip: None,
            request_id: None,
            prev_hash: GENESIS_HASH.into(),
            row_hash: String::new(),
        }
    }

    #[test]
    fn hash_covers_every_field() {
        let base = compute_row_hash(&row());
        assert_eq!(base.len(), 64);
        type Change = Box<dyn Fn(&mut AuditRow)>;
        let variants: Vec<Change> = vec![
            Box::new(|r| r.id = 2),
            Box::new(|r| r.ts += chrono::Duration::microseconds(1)),
            Box::new(|r| r.actor = "eve".into()),
            Box::new(|r| r.action = "x".into()),
            Box::new(|r| r.target = Some("host:1".into())),
            Box::new(|r| r.outcome = "failure".into()),
            Box::new(|r| r.details_json = "{\"a\":1}".into()),
            Box::new(|r| r.source_ip = Some("127.0.0.1".into())),
            Box::new(|r| r.request_id = Some("01H".into())),
            Box::new(|r| r.prev_hash = "1".repeat(64)),
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut r = row();
            change(&mut r);
            assert_ne!(
                compute_row_hash(&r),
                base,
                "field change {i} not covered by the hash"
            );
        }
        let mut r = row();
        r.row_hash = "ignored".into();
        assert_eq!(compute_row_hash(&r), base, "row_hash must not hash itself");
    }

    #[test]
    fn timestamps_are_truncated_to_micros() {
        let t = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_nano_opt(0, 0, 0, 123_456_789)
            .unwrap();
        assert_eq!(audit_timestamp(t).nanosecond(), 123_456_000);
    }
}
