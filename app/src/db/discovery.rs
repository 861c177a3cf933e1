//! Discovery runs and what they found (`discovery_runs`, `discovery_results`), for the record;
//! the live state of a run is in [`crate::fleet::discovery`].

use super::schema::{discovery_results as r, discovery_runs as d};
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// One result as recorded.
#[derive(Debug, Clone)]
pub struct ResultRow<'a> {
    /// Address.
    pub address: &'a str,
    /// Port.
    pub port: i32,
    /// Certificate subject.
    pub subject: Option<&'a str>,
    /// Certificate SHA-256.
    pub fingerprint: Option<&'a str>,
    /// Agent version it reported.
    pub agent_version: Option<&'a str>,
    /// The host it was adopted as.
    pub adopted_host_id: Option<i64>,
}

/// Records a run that starts; answers its id.
pub fn start(
    conn: &mut DbConnection,
    cidrs_json: &str,
    started_by: Option<i64>,
    total: i64,
    now: NaiveDateTime,
) -> Result<i64, DbError> {
    Ok(diesel::insert_into(d::table)
        .values((
            d::cidrs_json.eq(cidrs_json),
            d::status.eq("running"),
            d::started_by.eq(started_by),
            d::probes_total.eq(total),
            d::probes_done.eq(0i64),
            d::found_count.eq(0i64),
            d::started_at.eq(now),
        ))
        .returning(d::id)
        .get_result(conn)?)
}

/// Records how a run ended and what it found, in one transaction.
pub fn finish(
    conn: &mut DbConnection,
    id: i64,
    status: &str,
    probed: i64,
    end: NaiveDateTime,
    results: &[ResultRow<'_>],
) -> Result<(), DbError> {
    super::transaction::transaction(conn, |c| {
        diesel::update(d::table.find(id))
            .set((
                d::status.eq(status),
                d::probes_done.eq(probed),
                d::found_count.eq(i64::try_from(results.len()).unwrap_or(i64::MAX)),
                d::finished_at.eq(end),
            ))
            .execute(c)?;
        for x in results {
            diesel::insert_into(r::table)
                .values((
                    r::run_id.eq(id),
                    r::address.eq(x.address),
                    r::port.eq(x.port),
                    r::cert_subject.eq(x.subject),
                    r::cert_fingerprint.eq(x.fingerprint),
                    r::agent_version.eq(x.agent_version),
                    r::found_at.eq(end),
                    r::adopted_host_id.eq(x.adopted_host_id),
                ))
                .execute(c)?;
        }
        Ok(())
    })
}

/// Notes that a recorded result was adopted as `host_id` (no-op while the run is still going:
/// its results are written when it ends).
pub fn mark_adopted(
    conn: &mut DbConnection,
    run_id: i64,
    address: &str,
    host_id: i64,
) -> Result<(), DbError> {
    diesel::update(
        r::table
            .filter(r::run_id.eq(run_id))
            .filter(r::address.eq(address)),
    )
    .set(r::adopted_host_id.eq(host_id))
    .execute(conn)?;
    Ok(())
}

/// Runs still marked running were cut short by a stop of the manager; answers how many.
pub fn mark_interrupted(conn: &mut DbConnection) -> Result<usize, DbError> {
    Ok(diesel::update(d::table.filter(d::status.eq("running")))
        .set(d::status.eq("interrupted"))
        .execute(conn)?)
}
