//! Counts shown on the overview page.

use super::schema::{host_group_members, host_groups, hosts, users};
use super::{DbConnection, DbError};
use diesel::prelude::*;

/// Row counts of the main inventory tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryCounts {
    /// Managed hosts.
    pub hosts: i64,
    /// Host groups.
    pub groups: i64,
    /// User accounts.
    pub users: i64,
}

/// Reads the counts in one transaction so they are consistent with each other.
pub fn inventory_counts(conn: &mut DbConnection) -> Result<InventoryCounts, DbError> {
    conn.transaction(|conn| {
        Ok(InventoryCounts {
            hosts: hosts::table.count().get_result(conn)?,
            groups: host_groups::table.count().get_result(conn)?,
            users: users::table.count().get_result(conn)?,
        })
    })
}

/// One host's line for the dashboard: id, state, pending and security updates, reboot, whether
/// it was ever inventoried.
pub type HostLine = (i64, String, i64, i64, bool, bool);

/// The dashboard lines of the hosts in `visible` (all when `None`).
pub fn host_lines(
    conn: &mut DbConnection,
    visible: Option<&[i64]>,
) -> Result<Vec<HostLine>, DbError> {
    let mut q = hosts::table
        .select((
            hosts::id,
            hosts::status,
            hosts::pending_patches,
            hosts::pending_security_patches,
            hosts::reboot_required,
            hosts::last_patch_scan_at.is_not_null(),
        ))
        .into_boxed();
    if let Some(ids) = visible {
        q = q.filter(hosts::id.eq_any(ids.to_vec()));
    }
    Ok(q.load(conn)?)
}

/// (host id, group name) of every membership in the groups `visible` (all when `None`).
pub fn group_lines(
    conn: &mut DbConnection,
    visible: Option<&[i64]>,
) -> Result<Vec<(i64, String)>, DbError> {
    let mut q = host_group_members::table
        .inner_join(host_groups::table)
        .select((host_group_members::host_id, host_groups::name))
        .into_boxed();
    if let Some(ids) = visible {
        q = q.filter(host_groups::id.eq_any(ids.to_vec()));
    }
    Ok(q.load(conn)?)
}

/// What `/metrics` reads from the database at scrape time.
#[derive(Debug, Clone, Default)]
pub struct MetricCounts {
    /// Hosts by state.
    pub hosts: Vec<(String, i64)>,
    /// Patch jobs by state.
    pub jobs: Vec<(String, i64)>,
    /// Expiry of each host's newest unrevoked certificate.
    pub host_cert_expiry: Vec<chrono::NaiveDateTime>,
}

/// Reads the counts `/metrics` shows, in one transaction.
pub fn metric_counts(conn: &mut DbConnection) -> Result<MetricCounts, DbError> {
    use super::schema::{certificates, patch_jobs};
    use diesel::dsl::count_star;
    conn.transaction(|conn| {
        let hosts = hosts::table
            .group_by(hosts::status)
            .select((hosts::status, count_star()))
            .load(conn)?;
        let jobs = patch_jobs::table
            .group_by(patch_jobs::status)
            .select((patch_jobs::status, count_star()))
            .load(conn)?;
        // A renewed host keeps its old certificate until it expires; the newest one counts.
        let certs: Vec<(i64, chrono::NaiveDateTime)> = certificates::table
            .inner_join(hosts::table.on(certificates::host_id.eq(hosts::id.nullable())))
            .filter(certificates::revoked_at.is_null())
            .select((hosts::id, certificates::not_after))
            .order((hosts::id.asc(), certificates::created_at.desc()))
            .load(conn)?;
        let mut host_cert_expiry = Vec::new();
        let mut last = None;
        for (host, not_after) in certs {
            if last != Some(host) {
                host_cert_expiry.push(not_after);
                last = Some(host);
            }
        }
        Ok(MetricCounts {
            hosts,
            jobs,
            host_cert_expiry,
        })
    })
}
