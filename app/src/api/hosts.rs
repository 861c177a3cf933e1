//! Hosts and groups, always within the caller's scope; the rules are in
//! [`crate::fleet::hosts`].

use crate::api::AppError;
use crate::audit::Requester;
use crate::auth::access::Caller;
use crate::fleet::hosts;
use crate::http::extract::Json;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use shared::fleet::{GroupUpdate, HostGroups, NewGroup};

/// `GET /api/v1/hosts?…`: one page of the hosts the caller may see.
pub async fn list(
    state: web::Data<AppState>,
    who: Caller,
    query: web::Query<shared::fleet::HostQuery>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(hosts::list(&state, who.scope, query.into_inner()).await?))
}

/// `GET /api/v1/hosts/{host_id}`.
pub async fn detail(
    state: web::Data<AppState>,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(hosts::detail(&state, who.scope, path.into_inner()).await?))
}

/// `GET /api/v1/hosts/{host_id}/certificate-bundle`: the host's certificate and the CA
/// certificate as one PEM file. Public parts only: private keys never leave the hosts.
pub async fn certificate_bundle(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let (file, body) = hosts::certificate_bundle(&state, &by, path.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"{file}\""),
        ))
        .body(body))
}

/// `GET /api/v1/groups`: the caller's groups (all for Admins), with member counts.
pub async fn groups(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(hosts::groups(&state, who.scope).await?))
}

/// `POST /api/v1/groups`.
pub async fn create_group(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: Json<NewGroup>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let by = Requester::of(&who, &req);
    let group = hosts::create_group(&state, &by, &body.name, body.description).await?;
    Ok(HttpResponse::Created().json(group))
}

/// `POST /api/v1/hosts/{host_id}/refresh`: the host's actor polls its agent now.
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    hosts::refresh(&state, &by, path.into_inner()).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// `GET /api/v1/hosts/{host_id}/packages`.
pub async fn packages(
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(hosts::packages(&state, path.into_inner()).await?))
}

/// `GET /api/v1/hosts/{host_id}/patches`.
pub async fn patches(
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(hosts::patches(&state, path.into_inner()).await?))
}

/// `DELETE /api/v1/hosts/{host_id}`: removes the host (Admins).
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    hosts::remove(&state, &by, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PATCH /api/v1/groups/{group_id}` (Admins).
pub async fn update_group(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: Json<GroupUpdate>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let g = hosts::update_group(&state, &by, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(g))
}

/// `DELETE /api/v1/groups/{group_id}` (Admins).
pub async fn delete_group(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    hosts::delete_group(&state, &by, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /api/v1/hosts/{host_id}/groups` (Admins): the host's groups, all at once.
pub async fn set_groups(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
    body: Json<HostGroups>,
) -> Result<HttpResponse, AppError> {
    let by = Requester::of(&who, &req);
    let set = hosts::set_host_groups(&state, &by, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(set))
}
