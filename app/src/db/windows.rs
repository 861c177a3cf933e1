//! Maintenance windows (`maintenance_windows`): each for one host or one group.

use super::schema::{
    host_group_members as m, host_groups as g, hosts as h, maintenance_windows as w,
};
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// A window as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = w)]
pub struct WindowRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Its host.
    pub host_id: Option<i64>,
    /// Its group.
    pub group_id: Option<i64>,
    /// `once`, `daily`, `weekly`, `monthly`.
    pub recurrence: String,
    /// IANA time zone.
    pub time_zone: String,
    /// `YYYY-MM-DD`.
    pub start_date: String,
    /// `HH:MM`.
    pub start_time: String,
    /// Minutes open.
    pub duration_minutes: i32,
    /// 1 (Monday) to 7.
    pub weekday: Option<i32>,
    /// 1 to 31.
    pub day_of_month: Option<i32>,
    /// Opens at all.
    pub enabled: bool,
    /// Creator.
    pub created_by: Option<i64>,
    /// Created.
    pub created_at: NaiveDateTime,
    /// Changed.
    pub updated_at: NaiveDateTime,
}

/// A new window.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = w)]
pub struct NewWindowRow<'a> {
    /// Name.
    pub name: &'a str,
    /// Its host.
    pub host_id: Option<i64>,
    /// Its group.
    pub group_id: Option<i64>,
    /// Recurrence.
    pub recurrence: &'a str,
    /// Time zone.
    pub time_zone: &'a str,
    /// Start date.
    pub start_date: &'a str,
    /// Start time.
    pub start_time: &'a str,
    /// Minutes open.
    pub duration_minutes: i32,
    /// Weekday.
    pub weekday: Option<i32>,
    /// Day of the month.
    pub day_of_month: Option<i32>,
    /// Opens at all.
    pub enabled: bool,
    /// Creator.
    pub created_by: Option<i64>,
    /// Created.
    pub created_at: NaiveDateTime,
    /// Changed.
    pub updated_at: NaiveDateTime,
}

/// Stores a window; answers its id.
pub fn insert(conn: &mut DbConnection, row: &NewWindowRow<'_>) -> Result<i64, DbError> {
    Ok(diesel::insert_into(w::table)
        .values(row)
        .returning(w::id)
        .get_result(conn)?)
}

/// Every window, by name, with the name of the host or group it is for.
pub fn all(conn: &mut DbConnection) -> Result<Vec<(WindowRow, String)>, DbError> {
    let rows: Vec<WindowRow> = w::table
        .select(WindowRow::as_select())
        .order((w::name.asc(), w::id.asc()))
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name = match (r.host_id, r.group_id) {
            (Some(host), _) => h::table
                .find(host)
                .select(h::display_name)
                .first::<String>(conn)
                .optional()?,
            (None, Some(group)) => g::table
                .find(group)
                .select(g::name)
                .first::<String>(conn)
                .optional()?,
            (None, None) => None,
        };
        out.push((r, name.unwrap_or_default()));
    }
    Ok(out)
}

/// One window.
pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<WindowRow>, DbError> {
    Ok(w::table
        .find(id)
        .select(WindowRow::as_select())
        .first(conn)
        .optional()?)
}

/// Deletes a window; answers whether it existed.
pub fn delete(conn: &mut DbConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(w::table.find(id)).execute(conn)? > 0)
}

/// The hosts a window applies to now: its host, or its group's members.
pub fn hosts_of(conn: &mut DbConnection, row: &WindowRow) -> Result<Vec<i64>, DbError> {
    match (row.host_id, row.group_id) {
        (Some(host), _) => Ok(vec![host]),
        (None, Some(group)) => Ok(m::table
            .filter(m::group_id.eq(group))
            .select(m::host_id)
            .load(conn)?),
        (None, None) => Ok(Vec::new()),
    }
}

/// The enabled windows that apply to `host`: its own and its groups'.
pub fn of_host(conn: &mut DbConnection, host: i64) -> Result<Vec<WindowRow>, DbError> {
    let groups: Vec<i64> = m::table
        .filter(m::host_id.eq(host))
        .select(m::group_id)
        .load(conn)?;
    Ok(w::table
        .filter(w::enabled.eq(true))
        .filter(w::host_id.eq(host).or(w::group_id.eq_any(groups)))
        .select(WindowRow::as_select())
        .load(conn)?)
}
