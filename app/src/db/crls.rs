//! The `crls` and `crl_deliveries` tables: every CRL the manager issued (the newest is in force)
//! and, per host, the newest CRL its agent acknowledged with the state of delivery attempts. The
//! rules (when to issue, backoff, what counts as delivered) are in `crate::pki::crl`.

use super::hosts::AgentAddressRow;
use super::schema::{crl_deliveries as d, crls as c, hosts as h};
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A stored CRL.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = c)]
pub struct CrlRow {
    /// Row id.
    pub id: i64,
    /// CRL number (strictly increasing).
    pub number: i64,
    /// The signed CRL, PEM.
    pub pem: String,
    /// Its thisUpdate (UTC, system time).
    pub this_update: NaiveDateTime,
    /// Its nextUpdate: agents refuse every client once it has passed.
    pub next_update: NaiveDateTime,
    /// Serials it lists.
    pub revoked_count: i64,
    /// Why it was issued (`revocation`, `refresh`, …).
    pub reason: String,
    /// When it was stored (application clock).
    pub created_at: NaiveDateTime,
}

/// Insert form of a CRL.
#[derive(Debug, Insertable)]
#[diesel(table_name = c)]
pub struct NewCrl<'a> {
    /// CRL number.
    pub number: i64,
    /// PEM.
    pub pem: &'a str,
    /// thisUpdate.
    pub this_update: NaiveDateTime,
    /// nextUpdate.
    pub next_update: NaiveDateTime,
    /// Serials listed.
    pub revoked_count: i64,
    /// Why.
    pub reason: &'a str,
    /// Now.
    pub created_at: NaiveDateTime,
}

/// One host's delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = d)]
pub struct DeliveryRow {
    /// Host.
    pub host_id: i64,
    /// Newest CRL number the agent acknowledged.
    pub acked_number: Option<i64>,
    /// When it acknowledged it.
    pub acked_at: Option<NaiveDateTime>,
    /// Failed attempts since the last success or the last new CRL.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Last attempt.
    pub last_attempt_at: Option<NaiveDateTime>,
    /// Not before this time (backoff); `None`: at once.
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// Stores a CRL; answers its row.
pub fn insert(conn: &mut DbConnection, crl: &NewCrl<'_>) -> Result<CrlRow, DbError> {
    let id: i64 = diesel::insert_into(c::table)
        .values(crl)
        .returning(c::id)
        .get_result(conn)?;
    Ok(c::table
        .filter(c::id.eq(id))
        .select(CrlRow::as_select())
        .first(conn)?)
}

/// The CRL in force (highest number), if any was issued.
pub fn current(conn: &mut DbConnection) -> Result<Option<CrlRow>, DbError> {
    Ok(c::table
        .order(c::number.desc())
        .select(CrlRow::as_select())
        .first(conn)
        .optional()?)
}

/// Gives every host without one a delivery row (nothing acknowledged yet). Rows another
/// connection adds at the same moment (an enrollment, the courier) are left alone.
pub fn add_missing(conn: &mut DbConnection) -> Result<usize, DbError> {
    let missing: Vec<i64> = h::table
        .filter(diesel::dsl::not(h::id.eq_any(d::table.select(d::host_id))))
        .select(h::id)
        .load(conn)?;
    let mut added = 0;
    for host_id in missing {
        added += match conn {
            DbConnection::Sqlite(c) => diesel::insert_or_ignore_into(d::table)
                .values(d::host_id.eq(host_id))
                .execute(c)?,
            DbConnection::Postgres(c) => diesel::insert_into(d::table)
                .values(d::host_id.eq(host_id))
                .on_conflict_do_nothing()
                .execute(c)?,
        };
    }
    Ok(added)
}

/// Records that the agent of `host_id` holds CRL `number` (at enrollment or after a push); a
/// lower number never replaces a higher one.
pub fn acknowledge(
    conn: &mut DbConnection,
    host_id: i64,
    number: i64,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    add_missing(conn)?;
    diesel::update(
        d::table
            .filter(d::host_id.eq(host_id))
            .filter(d::acked_number.is_null().or(d::acked_number.lt(number))),
    )
    .set((
        d::acked_number.eq(number),
        d::acked_at.eq(now),
        d::attempts.eq(0),
        d::last_error.eq(None::<String>),
        d::last_attempt_at.eq(now),
        d::next_attempt_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub fn failed(
    conn: &mut DbConnection,
    host_id: i64,
    error: &str,
    next_attempt_at: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(d::table.filter(d::host_id.eq(host_id)))
        .set((
            d::attempts.eq(d::attempts + 1),
            d::last_error.eq(error),
            d::last_attempt_at.eq(now),
            d::next_attempt_at.eq(next_attempt_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Clears every backoff, so the next round tries each agent that lacks the current CRL at once
/// (a new CRL, or an Admin's "retry now").
pub fn retry_all_now(conn: &mut DbConnection) -> Result<(), DbError> {
    diesel::update(d::table)
        .set((
            d::attempts.eq(0),
            d::next_attempt_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Clears the backoff of one host (it just answered the manager).
pub fn retry_host_now(conn: &mut DbConnection, host_id: i64) -> Result<bool, DbError> {
    let n = diesel::update(
        d::table
            .filter(d::host_id.eq(host_id))
            .filter(d::next_attempt_at.is_not_null()),
    )
    .set(d::next_attempt_at.eq(None::<NaiveDateTime>))
    .execute(conn)?;
    Ok(n == 1)
}

/// Agents that lack CRL `number` and whose backoff has passed at `now`, with where to reach them.
pub fn due(
    conn: &mut DbConnection,
    number: i64,
    now: NaiveDateTime,
) -> Result<Vec<(DeliveryRow, AgentAddressRow)>, DbError> {
    Ok(d::table
        .inner_join(h::table)
        .filter(d::acked_number.is_null().or(d::acked_number.lt(number)))
        .filter(d::next_attempt_at.is_null().or(d::next_attempt_at.le(now)))
        .filter(talked_to())
        .order(d::host_id.asc())
        .select((DeliveryRow::as_select(), AgentAddressRow::as_select()))
        .load(conn)?)
}

/// Hosts the manager still talks to: not those whose certificate was revoked (their pin is
/// [`crate::agent_client::REVOKED_PIN`] until they enroll again), which would otherwise wait for
/// a CRL the manager can never deliver.
fn talked_to() -> diesel::dsl::Or<
    diesel::dsl::IsNull<h::cert_fingerprint>,
    diesel::dsl::NotEq<h::cert_fingerprint, &'static str>,
> {
    h::cert_fingerprint
        .is_null()
        .or(h::cert_fingerprint.ne(crate::agent_client::REVOKED_PIN))
}

/// Every host's delivery state, by host id.
pub fn all(conn: &mut DbConnection) -> Result<Vec<(DeliveryRow, AgentAddressRow)>, DbError> {
    Ok(d::table
        .inner_join(h::table)
        .filter(talked_to())
        .order(d::host_id.asc())
        .select((DeliveryRow::as_select(), AgentAddressRow::as_select()))
        .load(conn)?)
}
