//! Maintenance windows as the API sees them: listed, created for a host or a group, deleted —
//! within the caller's [`Scope`]; every change reaches the scheduler at once and is audited.

use super::scheduler::{calendar_of, Reload};
use super::windows::{timestamp_of, Calendar};
use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Scope;
use crate::clock::rfc3339;
use crate::db::windows::{NewWindowRow, WindowRow};
use crate::db::DbError;
use crate::state::AppState;
use shared::ids::{GroupId, HostId, WindowId};
use shared::windows::{NewWindow, Recurrence, WindowInfo, WindowSpec};

/// Longest window name.
const MAX_NAME: usize = 100;

/// The spec of a stored window.
pub fn spec_of(row: &WindowRow) -> Result<WindowSpec, String> {
    Ok(WindowSpec {
        name: row.name.clone(),
        recurrence: row.recurrence.parse::<Recurrence>()?,
        time_zone: row.time_zone.clone(),
        start_date: row.start_date.clone(),
        start_time: row.start_time.clone(),
        duration_minutes: u32::try_from(row.duration_minutes).map_err(|e| e.to_string())?,
        weekday: row.weekday.and_then(|d| u8::try_from(d).ok()),
        day_of_month: row.day_of_month.and_then(|d| u8::try_from(d).ok()),
        enabled: row.enabled,
    })
}

/// Windows of the hosts and groups the caller may see, with their next opening.
pub async fn list(state: &AppState, scope: Scope) -> Result<Vec<WindowInfo>, AppError> {
    let now = timestamp_of(state.clock.now());
    let rows = state
        .db
        .run(move |c| {
            let visible = scope.host_ids(c)?;
            let rows = crate::db::windows::all(c)?;
            Ok(rows
                .into_iter()
                .filter(|(r, _)| match (&visible, r.host_id, r.group_id) {
                    (None, _, _) => true,
                    (Some(v), Some(h), _) => v.contains(&h),
                    (Some(_), None, Some(g)) => scope.allows_group(g),
                    _ => false,
                })
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(r, applies_to)| {
            let spec = spec_of(&r).ok()?;
            let next = calendar_of(&r)
                .ok()
                .filter(|_| r.enabled)
                .and_then(|c| c.next(now));
            Some(WindowInfo {
                id: WindowId(r.id),
                host_id: r.host_id.map(HostId),
                group_id: r.group_id.map(GroupId),
                applies_to,
                window: spec,
                open_now: next.is_some_and(|(o, _)| o <= now),
                next_open: next.map(|(o, _)| rfc3339(super::windows::naive_of(o))),
                next_close: next.map(|(_, c)| rfc3339(super::windows::naive_of(c))),
            })
        })
        .collect())
}

/// Creates a window for one host or one group the caller may see; audited.
pub async fn create(
    state: &AppState,
    scope: Scope,
    by: &Requester,
    new: NewWindow,
) -> Result<WindowInfo, AppError> {
    let spec = &new.window;
    let name = spec.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "window.name",
            format!("A window has a name of 1 to {MAX_NAME} characters."),
        ));
    }
    let calendar = Calendar::new(spec)
        .map_err(|e| AppError::invalid(&format!("window.{}", e.field), e.message))?;
    let now = timestamp_of(state.clock.now());
    if spec.enabled && calendar.next(now).is_none() {
        return Err(AppError::invalid(
            "window.start_date",
            "This window would never open: a one-time window must end in the future.",
        ));
    }
    let (host, group) = match (new.host_id, new.group_id) {
        (Some(h), None) => (Some(h.0), None),
        (None, Some(g)) => (None, Some(g.0)),
        _ => {
            return Err(AppError::invalid(
                "host_id",
                "A window is for one host or for one group: give host_id or group_id.",
            ))
        }
    };
    let spec = spec.clone();
    let created_by = by.user_id;
    let at = state.clock.now();
    let id = state
        .db
        .run(move |c| {
            if let Some(h) = host {
                if !scope.allows_host(c, h)? || crate::db::hosts::existing(c, &[h])?.is_empty() {
                    return Ok(Err(AppError::NotFound("no such host".into())));
                }
            }
            if let Some(g) = group {
                if !scope.allows_group(g) || !crate::db::hosts::group_exists(c, g)? {
                    return Ok(Err(AppError::NotFound("no such group".into())));
                }
            }
            let weekday = spec
                .weekday
                .filter(|_| spec.recurrence == Recurrence::Weekly);
            let day = spec
                .day_of_month
                .filter(|_| spec.recurrence == Recurrence::Monthly);
            let row = NewWindowRow {
                name: spec.name.trim(),
                host_id: host,
                group_id: group,
                recurrence: spec.recurrence.as_str(),
                time_zone: spec.time_zone.trim(),
                start_date: spec.start_date.trim(),
                start_time: spec.start_time.trim(),
                duration_minutes: i32::try_from(spec.duration_minutes).unwrap_or(i32::MAX),
                weekday: weekday.map(i32::from),
                day_of_month: day.map(i32::from),
                enabled: spec.enabled,
                created_by,
                created_at: at,
                updated_at: at,
            };
            Ok::<_, DbError>(Ok(crate::db::windows::insert(c, &row)?))
        })
        .await??;
    state
        .audit
        .note(
            by.success("window.created")
                .target(format!("window:{id}"))
                .details(
                    serde_json::json!({ "host_id": host, "group_id": group, "window": new.window }),
                ),
        )
        .await;
    state.fleet.scheduler.do_send(Reload);
    list(state, Scope::all())
        .await?
        .into_iter()
        .find(|w| w.id == WindowId(id))
        .ok_or_else(|| AppError::Internal("the window just created is gone".into()))
}

/// Deletes a window of a host or group the caller may see; audited.
pub async fn delete(
    state: &AppState,
    scope: Scope,
    by: &Requester,
    id: i64,
) -> Result<(), AppError> {
    let deleted = state
        .db
        .run(move |c| {
            let Some(row) = crate::db::windows::find(c, id)? else {
                return Ok(false);
            };
            let visible = match (row.host_id, row.group_id) {
                (Some(h), _) => scope.allows_host(c, h)?,
                (None, Some(g)) => scope.allows_group(g),
                _ => scope.is_all(),
            };
            Ok(visible && crate::db::windows::delete(c, id)?)
        })
        .await?;
    if !deleted {
        return Err(AppError::NotFound("no such window".into()));
    }
    state
        .audit
        .note(by.success("window.deleted").target(format!("window:{id}")))
        .await;
    state.fleet.scheduler.do_send(Reload);
    Ok(())
}

/// The hosts among `hosts` that no enabled window will open for again (a job queued for
/// windows would wait for ever on them), by name.
pub async fn hosts_without_window(
    state: &AppState,
    hosts: Vec<i64>,
) -> Result<Vec<String>, AppError> {
    let now = timestamp_of(state.clock.now());
    Ok(state
        .db
        .run(move |c| {
            let mut missing = Vec::new();
            for h in hosts {
                let windows = crate::db::windows::of_host(c, h)?;
                let opens = windows
                    .iter()
                    .any(|w| calendar_of(w).is_ok_and(|cal| cal.next(now).is_some()));
                if !opens {
                    missing.push(crate::db::hosts::name_of(c, h)?.unwrap_or_else(|| h.to_string()));
                }
            }
            Ok(missing)
        })
        .await?)
}
