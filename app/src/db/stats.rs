//! Counts shown on the overview page.

use super::schema::{host_groups, hosts, users};
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
