//! What the host actors learn, written down: health (`hosts` state columns and `host_health`)
//! and inventory (`host_packages`, `host_patches` and the counters on `hosts`). The rules (what
//! the state is, when to poll) are in `crate::fleet`.

use super::schema::{host_health as hh, host_packages as hp, host_patches as hpt, hosts as h};
use super::transaction::transaction;
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Rows written per INSERT (SQLite allows at most 32,766 bound values per statement).
const CHUNK: usize = 1000;

/// A host's state after a health poll.
#[derive(Debug, Clone)]
pub struct HealthRecord<'a> {
    /// Host.
    pub host_id: i64,
    /// `healthy`, `degraded`, `unreachable`.
    pub status: &'a str,
    /// Why, when not healthy.
    pub reason: Option<&'a str>,
    /// The state changed with this poll.
    pub changed: bool,
    /// The agent answered.
    pub reachable: bool,
    /// Now.
    pub at: NaiveDateTime,
    /// The report, when the agent answered.
    pub report: Option<HealthRow<'a>>,
}

/// The `host_health` row of a report.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = hh)]
pub struct HealthRow<'a> {
    /// Host.
    pub host_id: i64,
    /// When.
    pub checked_at: NaiveDateTime,
    /// `ok` or `degraded`.
    pub agent_status: &'a str,
    /// Package backend.
    pub backend: Option<&'a str>,
    /// Jobs running.
    pub jobs_running: i64,
    /// Jobs queued.
    pub jobs_queued: i64,
    /// Exclusive mode.
    pub exclusive_mode: bool,
    /// Agent certificate expiry.
    pub cert_expires_at: Option<NaiveDateTime>,
    /// Uptime, when known.
    pub uptime_seconds: Option<i64>,
    /// Round trip of the poll.
    pub latency_ms: Option<i64>,
    /// The whole report, JSON.
    pub details_json: &'a str,
}

/// Records a health poll; answers whether the host still exists.
pub fn record_health(conn: &mut DbConnection, rec: &HealthRecord<'_>) -> Result<bool, DbError> {
    transaction(conn, |c| {
        let target = h::table.filter(h::id.eq(rec.host_id));
        let n = if rec.changed {
            diesel::update(target)
                .set((
                    h::status.eq(rec.status),
                    h::status_reason.eq(rec.reason),
                    h::status_changed_at.eq(rec.at),
                    h::last_health_at.eq(rec.at),
                ))
                .execute(c)?
        } else {
            diesel::update(target)
                .set(h::last_health_at.eq(rec.at))
                .execute(c)?
        };
        if n == 0 {
            return Ok(false);
        }
        if rec.reachable {
            diesel::update(h::table.filter(h::id.eq(rec.host_id)))
                .set(h::last_seen_at.eq(rec.at))
                .execute(c)?;
        }
        if let Some(report) = &rec.report {
            diesel::delete(hh::table.filter(hh::host_id.eq(rec.host_id))).execute(c)?;
            diesel::insert_into(hh::table).values(report).execute(c)?;
        }
        Ok(true)
    })
}

/// One installed package row.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, Queryable, Selectable)]
#[diesel(table_name = hp)]
pub struct PackageRow {
    /// Host.
    pub host_id: i64,
    /// Name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Installed version.
    pub version: String,
    /// Package manager state.
    pub status: String,
    /// Source package.
    pub source: Option<String>,
}

/// One pending update row.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, Queryable, Selectable)]
#[diesel(table_name = hpt)]
pub struct PatchRow {
    /// Host.
    pub host_id: i64,
    /// Package.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Installed version.
    pub installed_version: Option<String>,
    /// Version the update brings.
    pub candidate_version: String,
    /// Suites.
    pub origin: Option<String>,
    /// From a security suite.
    pub is_security: bool,
    /// Severity.
    pub severity: Option<String>,
    /// CVE ids, JSON list.
    pub cves_json: String,
    /// Usually needs a reboot.
    pub reboot_likely: bool,
    /// When seen.
    pub detected_at: NaiveDateTime,
}

/// System facts stored on the host row.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = h)]
pub struct HostFacts<'a> {
    /// os-release ID.
    pub os_id: Option<&'a str>,
    /// os-release VERSION_ID.
    pub os_version: Option<&'a str>,
    /// Kernel.
    pub kernel: Option<&'a str>,
    /// Architecture.
    pub arch: Option<&'a str>,
    /// Agent version.
    pub agent_version: Option<&'a str>,
    /// Reboot required.
    pub reboot_required: bool,
    /// Pending updates.
    pub pending_patches: i64,
    /// Pending security updates.
    pub pending_security_patches: i64,
    /// When scanned.
    pub last_patch_scan_at: Option<NaiveDateTime>,
    /// Now.
    pub updated_at: NaiveDateTime,
}

/// What an inventory write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryWrite {
    /// The host no longer exists.
    NoSuchHost,
    /// The package list was unchanged (same hash): only facts and patches were written.
    Unchanged,
    /// The package list was replaced.
    Replaced,
}

/// Stores an inventory in one transaction: facts, patches, and the package list unless its hash
/// equals the stored one.
pub fn store_inventory(
    conn: &mut DbConnection,
    host_id: i64,
    facts: &HostFacts<'_>,
    packages_hash: &str,
    packages: &[PackageRow],
    patches: &[PatchRow],
) -> Result<InventoryWrite, DbError> {
    transaction(conn, |c| {
        let stored: Option<Option<String>> = h::table
            .filter(h::id.eq(host_id))
            .select(h::inventory_hash)
            .first(c)
            .optional()?;
        let Some(stored) = stored else {
            return Ok(InventoryWrite::NoSuchHost);
        };
        diesel::update(h::table.filter(h::id.eq(host_id)))
            .set(facts)
            .execute(c)?;
        diesel::delete(hpt::table.filter(hpt::host_id.eq(host_id))).execute(c)?;
        for chunk in patches.chunks(CHUNK) {
            insert_rows!(c, hpt::table, chunk);
        }
        if stored.as_deref() == Some(packages_hash) {
            return Ok(InventoryWrite::Unchanged);
        }
        diesel::delete(hp::table.filter(hp::host_id.eq(host_id))).execute(c)?;
        for chunk in packages.chunks(CHUNK) {
            insert_rows!(c, hp::table, chunk);
        }
        diesel::update(h::table.filter(h::id.eq(host_id)))
            .set(h::inventory_hash.eq(packages_hash))
            .execute(c)?;
        Ok(InventoryWrite::Replaced)
    })
}

/// Every host with where its agent is, its pin and its recorded state (for starting the actors).
pub fn supervised(
    conn: &mut DbConnection,
) -> Result<Vec<(super::hosts::AgentAddressRow, String)>, DbError> {
    Ok(h::table
        .order(h::id.asc())
        .select((super::hosts::AgentAddressRow::as_select(), h::status))
        .load(conn)?)
}

/// A host's packages, by name.
pub fn packages(conn: &mut DbConnection, host_id: i64) -> Result<Vec<PackageRow>, DbError> {
    Ok(hp::table
        .filter(hp::host_id.eq(host_id))
        .order((hp::name.asc(), hp::arch.asc()))
        .select(PackageRow::as_select())
        .load(conn)?)
}

/// A host's pending updates, security first, then by name.
pub fn patches(conn: &mut DbConnection, host_id: i64) -> Result<Vec<PatchRow>, DbError> {
    Ok(hpt::table
        .filter(hpt::host_id.eq(host_id))
        .order((hpt::is_security.desc(), hpt::name.asc()))
        .select(PatchRow::as_select())
        .load(conn)?)
}
