//! The Certificates page's API (Admins only): every certificate the CA issued with its expiry
//! state, renewal of a host's certificate through its agent, rotation of the manager's client
//! certificate, revocation with the CRL delivered in the background (and its progress), and one-time enrollment tokens. The rules
//! are in [`crate::pki::certificates`] and [`crate::pki::enrollment`].

use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Caller;
use crate::http::extract::Json;
use crate::pki::{certificates, enrollment};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::fleet::{NewEnrollmentToken, RevokeRequest};

/// `GET /api/v1/certificates`: newest first.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(certificates::list(&state).await?))
}

/// `POST /api/v1/hosts/{host_id}/certificate/renew`: asks the agent for a CSR from a new key,
/// signs it and installs the certificate; the agent reloads without dropping connections.
pub async fn renew_host(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let info = certificates::renew_host(&state, &by, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(info))
}

/// `POST /api/v1/certificates/manager-client/rotate`: a new client certificate for talking to
/// agents; connections opened from now on use it.
pub async fn rotate_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
) -> Result<HttpResponse, AppError> {
    let serial = certificates::rotate_client(&state, &Requester::of(&who, &req)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "serial": serial })))
}

/// `POST /api/v1/certificates/{certificate_id}/revoke`: revokes and issues the new CRL; answers at
/// once with its delivery status while the courier takes it to every agent.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: Json<RevokeRequest>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let status = certificates::revoke(&state, &by, path.into_inner(), &body.reason).await?;
    Ok(HttpResponse::Ok().json(status))
}

/// `GET /api/v1/certificates/crl`: the CRL in force and which agents lack it.
pub async fn crl_status(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(certificates::crl_status(&state).await?))
}

/// `POST /api/v1/certificates/crl/retry`: every agent lacking the CRL is tried again at once.
pub async fn retry_crl(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
) -> Result<HttpResponse, AppError> {
    let status = certificates::retry_crl(&state, &Requester::of(&who, &req)).await?;
    Ok(HttpResponse::Accepted().json(status))
}

/// `GET /api/v1/enrollment-tokens`: newest first, secrets never shown again.
pub async fn list_tokens(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(enrollment::list(&state).await?))
}

/// `POST /api/v1/enrollment-tokens`: a one-time token (optionally binding the host to a group)
/// and the command to run on the new host. The secret is shown in this answer only.
pub async fn create_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<NewEnrollmentToken>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let by = Requester::of(&who, &req);
    let created = enrollment::issue(&state, &by, body).await?;
    Ok(HttpResponse::Created().json(created))
}

/// `DELETE /api/v1/enrollment-tokens/{token_id}`: withdraws an unused token.
pub async fn delete_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    enrollment::withdraw(&state, &Requester::of(&who, &req), path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
