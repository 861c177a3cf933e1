//! First-run setup: `GET /api/v1/setup` says whether it is pending; `POST /api/v1/setup`
//! creates the first Admin with the one-time token. Both are audited.

use crate::api::AppError;
use crate::auth::setup::SetupError;
use crate::db::audit::{NewAuditEntry, Outcome};
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::auth::{SetupDone, SetupRequest, SetupStatus};

/// Whether setup is pending.
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(SetupStatus {
        required: state.setup.required(),
    })
}

/// Creates the first Admin.
pub async fn complete(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<SetupRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let result = state
        .setup
        .complete(
            &state.db,
            &body.token,
            &body.username,
            &body.display_name,
            &body.password,
            state.clock.now(),
        )
        .await;
    let (outcome, details) = match &result {
        Ok(id) => (
            Outcome::Success,
            serde_json::json!({ "user_id": id, "role": "admin" }),
        ),
        Err(SetupError::BadToken) => (
            Outcome::Denied,
            serde_json::json!({ "reason": "invalid setup token" }),
        ),
        Err(e) => (
            Outcome::Failure,
            serde_json::json!({ "reason": e.to_string() }),
        ),
    };
    let actor = format!(
        "setup:{}",
        body.username.chars().take(64).collect::<String>()
    );
    let entry = NewAuditEntry::new(actor, "setup.first_admin", outcome)
        .details(details)
        .source(crate::http::client::client_ip(&req));
    state.audit.note(entry).await;
    match result {
        Ok(user_id) => Ok(HttpResponse::Created().json(SetupDone {
            user_id: user_id.into(),
        })),
        Err(SetupError::Completed) => Err(AppError::Gone("setup is already complete".into())),
        Err(SetupError::BadToken) => Err(AppError::Unauthorized("invalid setup token".into())),
        Err(SetupError::Invalid(m)) => Err(AppError::BadRequest {
            code: shared::vocab::ErrorCode::ValidationFailed,
            message: m,
            details: serde_json::Value::Null,
        }),
        Err(SetupError::Db(e)) => Err(AppError::Database(e)),
        Err(SetupError::Internal(m)) => Err(AppError::Internal(m)),
    }
}
