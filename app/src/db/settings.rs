//! The `settings` table: installation settings an Admin changes at run time, one JSON value per
//! key (single sign-on, the allow-list).

use super::schema::settings;
use super::{DbConnection, DbError};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The value under `key`; the default when absent. A value that does not parse is an error
/// ([`DbError::UnreadableSetting`]), never silently the default.
pub fn read<T: DeserializeOwned + Default>(c: &mut DbConnection, key: &str) -> Result<T, DbError> {
    let json: Option<String> = settings::table
        .filter(settings::key.eq(key))
        .select(settings::value_json)
        .first(c)
        .optional()?;
    match json {
        None => Ok(T::default()),
        Some(j) => serde_json::from_str(&j).map_err(|e| DbError::UnreadableSetting {
            key: key.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// The stored text under `key`, parsed or not (kept in the audit log when an unreadable value is
/// replaced).
pub fn read_raw(c: &mut DbConnection, key: &str) -> Result<Option<String>, DbError> {
    Ok(settings::table
        .filter(settings::key.eq(key))
        .select(settings::value_json)
        .first(c)
        .optional()?)
}

/// Replaces the value under `key`, recording who changed it.
pub fn write<T: Serialize>(
    c: &mut DbConnection,
    key: &str,
    value: &T,
    by: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let json = serde_json::to_string(value).map_err(|e| DbError::Task(e.to_string()))?;
    c.transaction(|c| {
        diesel::delete(settings::table.filter(settings::key.eq(key))).execute(c)?;
        diesel::insert_into(settings::table)
            .values((
                settings::key.eq(key),
                settings::value_json.eq(json),
                settings::updated_at.eq(now),
                settings::updated_by.eq(by),
            ))
            .execute(c)?;
        Ok(())
    })
}
