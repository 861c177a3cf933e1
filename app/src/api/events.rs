//! The live event stream: a ticket for the signed-in user, then the WebSocket it opens (see
//! [`crate::fleet::live`]).

use crate::api::AppError;
use crate::auth::access::Caller;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// `POST /api/v1/events/ticket`.
pub async fn ticket(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, AppError> {
    if who.identity.mfa_enrolment_pending {
        return Err(AppError::Forbidden(
            "Your account requires a second factor: enrol one before going on.".into(),
        ));
    }
    let ticket = state
        .tickets
        .issue(who.identity)
        .map_err(AppError::Internal)?;
    Ok(HttpResponse::Created().json(ticket))
}

/// The `ticket` query parameter.
#[derive(Debug, serde::Deserialize)]
pub struct TicketQuery {
    ticket: String,
}

/// `GET /api/v1/events/ws?ticket=…`: a ticket that is unknown, used or expired gets 401 before
/// any upgrade.
pub async fn stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<TicketQuery>,
) -> Result<HttpResponse, AppError> {
    let identity = state
        .tickets
        .redeem(&query.ticket)
        .ok_or_else(|| AppError::Unauthorized("unknown, used or expired event ticket".into()))?;
    let (response, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| AppError::BadRequest {
            code: shared::vocab::ErrorCode::ValidationFailed,
            message: format!("not a WebSocket handshake: {e}"),
            details: serde_json::Value::Null,
        })?;
    let stream = stream.max_frame_size(4 * 1024);
    let events = state.fleet.events.subscribe();
    let jobs = state.fleet.live.subscribe();
    let access = state.fleet.access.subscribe();
    actix_web::rt::spawn(crate::fleet::live::forward(
        state.get_ref().clone(),
        identity,
        events,
        jobs,
        access,
        session,
        stream,
    ));
    Ok(response)
}
