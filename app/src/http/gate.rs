//! The access gate: applies each route's [`Access`] rule before any handler or body extractor
//! runs, and hands handlers the outcome as a [`Caller`] extractor. A refusal (401, 403, or 404
//! for a host outside the caller's scope) is an ordinary response, so it carries the request id,
//! the security headers and a log line like any other answer.

use crate::auth::access::{scope_of, Access, Caller};
use crate::auth::identity::Identity;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use std::future::{ready, Ready};
use std::sync::Arc;

/// The access rules of one resource (one path), by method.
pub type Rules = Arc<[(Method, Access)]>;

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    /// Only the gate stores a `Caller`; a handler asking for one on a route the gate does not
    /// cover gets a 500, never access.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Caller>().cloned().ok_or_else(|| {
            AppError::Internal(format!(
                "route {} has no access rule; refusing",
                req.match_pattern().unwrap_or_default()
            ))
            .into()
        }))
    }
}

/// Applies the resource's rule for the request's method. Methods without a rule fall through to
/// the resource, which answers 405.
pub async fn gate(
    rules: Rules,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let access = rules
        .iter()
        .find(|(m, _)| m == req.method())
        .map(|(_, a)| *a);
    match access {
        None | Some(Access::Public) => Ok(next.call(req).await?.map_into_boxed_body()),
        Some(access) => match decide(access, &req).await {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Ok(next.call(req).await?.map_into_boxed_body())
            }
            Err(refusal) => Ok(req.error_response(refusal)),
        },
    }
}

/// Who is calling and whether the rule lets them through.
async fn decide(access: Access, req: &ServiceRequest) -> Result<Caller, actix_web::Error> {
    let identity = Identity::from_request(req.request(), &mut Payload::None).await?;
    if identity.mfa_enrolment_pending && access != Access::Session {
        return Err(AppError::Forbidden(
            "Your account requires a second factor: enrol one before going on.".into(),
        )
        .into());
    }
    if access == Access::Admin && !identity.is_admin() {
        return Err(AppError::Forbidden("This needs the Admin role.".into()).into());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::Internal("application state missing".into()))?;
    let scope = scope_of(&state.db, &identity)
        .await
        .map_err(AppError::from)?;
    if access == Access::Host {
        let host_id: i64 = req
            .match_info()
            .get("host_id")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| AppError::NotFound("no such host".into()))?;
        let s = scope.clone();
        let visible = state
            .db
            .run(move |c| s.allows_host(c, host_id))
            .await
            .map_err(AppError::from)?;
        if !visible {
            return Err(AppError::NotFound("no such host".into()).into());
        }
    }
    Ok(Caller { identity, scope })
}
