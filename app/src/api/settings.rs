//! Installation settings an Admin changes at run time: the manager's source-address allow-list
//! and the host actors' poll intervals.
//! The rules are in [`crate::settings`].

use crate::api::AppError;
use crate::auth::access::Caller;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::http::extract::Json;
use crate::settings;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::fleet::AllowListSettings;

/// `GET /api/v1/settings/allow-list`: the list in force, or `500 setting_unreadable` naming the
/// key when the stored one cannot be read.
pub async fn allow_list(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.netguard.settings()?))
}

/// `PUT /api/v1/settings/allow-list`: replaces the list. A list that would refuse the caller's
/// own address is refused (409), so an Admin cannot lock themselves out by mistake. Saving also
/// repairs a stored list that could not be read.
pub async fn set_allow_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<AllowListSettings>,
) -> Result<HttpResponse, AppError> {
    let wanted = settings::normalise_allow_list(body.into_inner());
    let peer = crate::http::client::client_ip(&req);
    let list = settings::check_new_allow_list(&wanted, peer)?;
    let before = state.netguard.settings().ok();
    let (s, by, now) = (wanted.clone(), who.actor(), state.clock.now());
    state
        .db
        .run(move |c| settings::write_allow_list(c, &s, &by, now))
        .await?;
    state.netguard.replace(wanted.clone(), list);
    state
        .audit
        .note(
            NewAuditEntry::new(who.actor(), "settings.allow_list_changed", Outcome::Success)
                .target(settings::ALLOW_LIST)
                .details(serde_json::json!({ "before": before, "after": wanted }))
                .source(peer),
        )
        .await;
    Ok(HttpResponse::Ok().json(wanted))
}

/// `GET /api/v1/settings/polling`: the intervals in force.
pub async fn polling(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let fleet = state.config.fleet.clone();
    let p = state
        .db
        .run(move |c| settings::read_polling(c, &fleet))
        .await?;
    Ok(HttpResponse::Ok().json(p))
}

/// `PUT /api/v1/settings/polling`: new intervals, stored and applied to every host actor at once.
pub async fn set_polling(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<shared::fleet::PollingSettings>,
) -> Result<HttpResponse, AppError> {
    let wanted = body.into_inner();
    settings::validate_polling(&wanted)?;
    let fleet = state.config.fleet.clone();
    let (by, now) = (who.actor(), state.clock.now());
    let before = state
        .db
        .run(move |c| {
            let before = settings::read_polling(c, &fleet).ok();
            crate::db::settings::write(c, settings::POLLING, &wanted, &by, now)?;
            Ok(before)
        })
        .await?;
    state
        .fleet
        .supervisor
        .do_send(crate::fleet::supervisor::SetIntervals(
            crate::fleet::actor::Intervals::from_settings(&wanted),
        ));
    state
        .audit
        .note(
            NewAuditEntry::new(who.actor(), "settings.polling_changed", Outcome::Success)
                .target(settings::POLLING)
                .details(serde_json::json!({ "before": before, "after": wanted }))
                .source(crate::http::client::client_ip(&req)),
        )
        .await;
    Ok(HttpResponse::Ok().json(wanted))
}
