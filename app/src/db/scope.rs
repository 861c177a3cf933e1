//! Group membership as access control reads it: which groups a user belongs to, and which hosts
//! those groups cover (`user_groups`, `host_group_members`).

use super::schema::{host_group_members, user_groups};
use super::{DbConnection, DbError};
use diesel::prelude::*;

/// Ids of the host groups the user belongs to.
pub fn groups_of_user(c: &mut DbConnection, user_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(user_groups::table
        .filter(user_groups::user_id.eq(user_id))
        .select(user_groups::group_id)
        .load(c)?)
}

/// Whether the host is a member of any of the groups.
pub fn host_in_groups(c: &mut DbConnection, host_id: i64, groups: &[i64]) -> Result<bool, DbError> {
    let n: i64 = host_group_members::table
        .filter(host_group_members::host_id.eq(host_id))
        .filter(host_group_members::group_id.eq_any(groups.to_vec()))
        .count()
        .get_result(c)?;
    Ok(n > 0)
}

/// Ids of the hosts that are members of any of the groups, sorted, without duplicates.
pub fn hosts_in_groups(c: &mut DbConnection, groups: &[i64]) -> Result<Vec<i64>, DbError> {
    let mut ids: Vec<i64> = host_group_members::table
        .filter(host_group_members::group_id.eq_any(groups.to_vec()))
        .select(host_group_members::host_id)
        .load(c)?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
