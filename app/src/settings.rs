//! Installation settings an Admin changes at run time, and their rules: the manager's
//! source-address allow-list (enforced by [`crate::http::allow_list`]) and the host actors' poll
//! intervals; single sign-on settings live with single sign-on ([`crate::auth::sso`]).
//!
//! Stored values that do not parse are reported ([`DbError::UnreadableSetting`], naming the key),
//! never replaced by a default; [`report_unreadable`] names them at start-up.

use crate::audit::AuditLog;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::db::{Database, DbConnection, DbError};
use crate::error::AppError;
use chrono::NaiveDateTime;
use shared::fleet::AllowListSettings;
use shared::netfilter::AllowList;
use std::net::IpAddr;

/// Settings key of the allow-list.
pub const ALLOW_LIST: &str = "security.allow_list";
/// Most entries an allow-list may have.
pub const MAX_ALLOW_LIST_ENTRIES: usize = 256;

/// Settings key of the poll intervals.
pub const POLLING: &str = "fleet.polling";

/// The poll intervals in force: the saved ones, or the configuration's when none were saved.
pub fn read_polling(
    c: &mut DbConnection,
    config: &crate::config::FleetConfig,
) -> Result<shared::fleet::PollingSettings, DbError> {
    let saved: Option<shared::fleet::PollingSettings> = crate::db::settings::read(c, POLLING)?;
    Ok(saved.unwrap_or_else(|| config.polling()))
}

/// Checks poll intervals ([`crate::config::check_polling`]), naming the field out of range.
pub fn validate_polling(p: &shared::fleet::PollingSettings) -> Result<(), AppError> {
    crate::config::check_polling(p).map_err(|(field, message)| AppError::invalid(field, message))
}

/// Reads the stored allow-list (the default, off, when none was saved).
pub fn read_allow_list(c: &mut DbConnection) -> Result<AllowListSettings, DbError> {
    crate::db::settings::read(c, ALLOW_LIST)
}

/// Validates entries: each an address or CIDR range, at most [`MAX_ALLOW_LIST_ENTRIES`].
pub fn validate_allow_list(s: &AllowListSettings) -> Result<AllowList, String> {
    if s.entries.len() > MAX_ALLOW_LIST_ENTRIES {
        return Err(format!("at most {MAX_ALLOW_LIST_ENTRIES} entries"));
    }
    AllowList::from_entries(&s.entries)
}

/// Trims entries and drops empty ones, as typed into a form.
pub fn normalise_allow_list(mut s: AllowListSettings) -> AllowListSettings {
    s.entries = s
        .entries
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    s
}

/// Checks a list an Admin wants to save from `caller_ip`: valid entries, and, when enabled, the
/// caller's own address on it (an Admin cannot lock themselves out by mistake).
pub fn check_new_allow_list(
    wanted: &AllowListSettings,
    caller_ip: Option<IpAddr>,
) -> Result<AllowList, AppError> {
    let list = validate_allow_list(wanted).map_err(|m| AppError::invalid("entries", m))?;
    if wanted.enabled {
        if let Some(ip) = caller_ip {
            if !list.allows(ip) {
                return Err(AppError::Conflict(format!(
                    "This list does not include your own address {ip}; add it first."
                )));
            }
        }
    }
    Ok(list)
}

/// Stores the allow-list, recording who changed it.
pub fn write_allow_list(
    c: &mut DbConnection,
    s: &AllowListSettings,
    by: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    crate::db::settings::write(c, ALLOW_LIST, s, by, now)
}

/// What `patch-manager allow-list --disable` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disabled {
    /// It was already off.
    AlreadyOff(AllowListSettings),
    /// It was enforced and is now off, entries kept.
    TurnedOff(AllowListSettings),
    /// The stored value could not be read; it is replaced by an empty list that is off, and the
    /// unreadable value (its first 4 KiB) is kept in the audit record.
    ReplacedUnreadable(String),
}

/// Turns the allow-list off from the server's command line (the way back after a lock-out or an
/// unreadable stored list), audited in the same transaction.
pub fn disable_allow_list(c: &mut DbConnection, now: NaiveDateTime) -> Result<Disabled, DbError> {
    let (outcome, after) = match read_allow_list(c) {
        Ok(s) if !s.enabled => return Ok(Disabled::AlreadyOff(s)),
        Ok(mut s) => {
            s.enabled = false;
            (Disabled::TurnedOff(s.clone()), s)
        }
        Err(DbError::UnreadableSetting { reason, .. }) => (
            Disabled::ReplacedUnreadable(reason),
            AllowListSettings::default(),
        ),
        Err(e) => return Err(e),
    };
    let details = match &outcome {
        Disabled::ReplacedUnreadable(reason) => {
            let raw: Option<String> = crate::db::settings::read_raw(c, ALLOW_LIST)?
                .map(|r| r.chars().take(4096).collect());
            serde_json::json!({ "after": after, "replaced_unreadable": { "reason": reason, "value": raw } })
        }
        _ => serde_json::json!({ "after": after }),
    };
    crate::db::transaction(c, |c| {
        write_allow_list(c, &after, "cli", now)?;
        crate::db::audit::append(
            c,
            NewAuditEntry::new("cli", "settings.allow_list_changed", Outcome::Success)
                .target(ALLOW_LIST)
                .details(details),
            now,
        )?;
        Ok::<(), DbError>(())
    })?;
    Ok(outcome)
}

/// Logs every stored setting that cannot be read, naming its key, so an operator sees it at
/// start-up; the manager still starts (each setting fails closed on its own).
pub async fn report_unreadable(db: &Database, audit: &AuditLog) -> Result<(), DbError> {
    type Check = fn(&mut DbConnection) -> Result<(), DbError>;
    let checks: [(&str, Check); 3] = [
        (ALLOW_LIST, |c| read_allow_list(c).map(drop)),
        (POLLING, |c| {
            crate::db::settings::read::<Option<shared::fleet::PollingSettings>>(c, POLLING)
                .map(drop)
        }),
        (crate::auth::sso::SETTING, |c| {
            crate::auth::sso::read(c).map(drop)
        }),
    ];
    for (key, check) in checks {
        match db.run(check).await {
            Ok(()) => {}
            Err(DbError::UnreadableSetting { reason, .. }) => {
                tracing::error!(key, %reason, "a stored setting cannot be read; it stays refused \
                    (fails closed) until an Admin saves it again");
                audit
                    .note(
                        NewAuditEntry::new("system", "settings.unreadable", Outcome::Failure)
                            .target(key)
                            .details(serde_json::json!({ "reason": reason })),
                    )
                    .await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
