//! Installation settings an Admin changes at run time: the manager's source-address allow-list.

use crate::api::{audit_action, AppError};
use crate::auth::access::Caller;
use crate::netguard;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::fleet::AllowListSettings;

/// `GET /api/v1/settings/allow-list`.
pub async fn allow_list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.netguard.settings())
}

/// `PUT /api/v1/settings/allow-list`: replaces the list. A list that would refuse the caller's
/// own address is refused (409), so an Admin cannot lock themselves out by mistake.
pub async fn set_allow_list(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: web::Json<AllowListSettings>,
) -> Result<HttpResponse, AppError> {
    let mut wanted = body.into_inner();
    wanted.entries = wanted
        .entries
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    let list = netguard::validate(&wanted).map_err(|m| AppError::invalid("entries", m))?;
    if wanted.enabled {
        if let Some(ip) = req.peer_addr().map(|a| a.ip()) {
            if !list.allows(ip) {
                return Err(AppError::Conflict(format!(
                    "this list does not include your own address {ip}; add it first"
                )));
            }
        }
    }
    let before = state.netguard.settings();
    let (s, by) = (wanted.clone(), who.actor());
    let now = chrono::Utc::now().naive_utc();
    state
        .db
        .run(move |c| netguard::write(c, &s, &by, now))
        .await?;
    state.netguard.replace(wanted.clone(), list);
    audit_action(
        &state,
        &req,
        who.actor(),
        "settings.allow_list_changed",
        netguard::SETTING.into(),
        serde_json::json!({ "before": before, "after": wanted }),
    )
    .await;
    Ok(HttpResponse::Ok().json(wanted))
}
