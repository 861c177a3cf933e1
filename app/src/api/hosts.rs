//! Hosts and groups, always within the caller's [`Scope`]: Operators see the hosts of their
//! groups and nothing else, Admins everything.

use crate::api::{rfc3339, AppError};
use crate::auth::access::{Caller, Scope};
use crate::db::schema::{certificates, host_group_members, host_groups, hosts};
use crate::db::{DbConnection, DbError};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared::fleet::{GroupInfo, HostDetail, HostSummary, NewGroup};

type HostRow = (
    i64,
    String,
    Option<String>,
    String,
    i32,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    bool,
    Option<NaiveDateTime>,
);

fn load_summaries(
    c: &mut DbConnection,
    scope: &Scope,
    only: Option<i64>,
) -> Result<Vec<HostSummary>, DbError> {
    let mut q = hosts::table
        .select((
            hosts::id,
            hosts::display_name,
            hosts::fqdn,
            hosts::ip_address,
            hosts::agent_port,
            hosts::status,
            hosts::os_id,
            hosts::os_version,
            hosts::pending_patches,
            hosts::pending_security_patches,
            hosts::reboot_required,
            hosts::last_seen_at,
        ))
        .order(hosts::display_name)
        .into_boxed();
    if let Some(ids) = scope.host_ids(c)? {
        q = q.filter(hosts::id.eq_any(ids));
    }
    if let Some(id) = only {
        q = q.filter(hosts::id.eq(id));
    }
    let rows: Vec<HostRow> = q.load(c)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    // Only the groups the caller may see: an Operator learns nothing of other groups' names.
    let mut mq = host_group_members::table
        .inner_join(host_groups::table)
        .filter(host_group_members::host_id.eq_any(&ids))
        .order(host_groups::name)
        .select((host_group_members::host_id, host_groups::name))
        .into_boxed();
    if let Some(groups) = scope.groups() {
        mq = mq.filter(host_group_members::group_id.eq_any(groups.to_vec()));
    }
    let memberships: Vec<(i64, String)> = mq.load(c)?;
    Ok(rows
        .into_iter()
        .map(|r| HostSummary {
            id: r.0,
            display_name: r.1,
            fqdn: r.2,
            ip_address: r.3,
            agent_port: r.4,
            status: r.5,
            os: match (r.6, r.7) {
                (Some(id), Some(v)) => Some(format!("{id} {v}")),
                (Some(id), None) => Some(id),
                _ => None,
            },
            pending_patches: r.8,
            pending_security_patches: r.9,
            reboot_required: r.10,
            last_seen_at: r.11.map(rfc3339),
            groups: memberships
                .iter()
                .filter(|(h, _)| *h == r.0)
                .map(|(_, g)| g.clone())
                .collect(),
        })
        .collect())
}

/// `GET /api/v1/hosts`.
pub async fn list(state: web::Data<AppState>, who: Caller) -> Result<HttpResponse, AppError> {
    let hosts = state
        .db
        .run(move |c| load_summaries(c, &who.scope, None))
        .await?;
    Ok(HttpResponse::Ok().json(hosts))
}

/// `GET /api/v1/hosts/{host_id}`.
pub async fn detail(
    state: web::Data<AppState>,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let renew_days = state.config.pki.renew_before_days;
    let detail = state
        .db
        .run(move |c| {
            let Some(summary) = load_summaries(c, &who.scope, Some(id))?.pop() else {
                return Ok(None);
            };
            let (kernel, agent_version, created_at): (
                Option<String>,
                Option<String>,
                NaiveDateTime,
            ) = hosts::table
                .filter(hosts::id.eq(id))
                .select((hosts::kernel, hosts::agent_version, hosts::created_at))
                .first(c)?;
            let certificate = current_certificate(c, id)?
                .map(|row| crate::api::certificates::info(row, renew_days, None));
            Ok(Some(HostDetail {
                summary,
                kernel,
                agent_version,
                certificate,
                created_at: rfc3339(created_at),
            }))
        })
        .await?
        .ok_or_else(|| AppError::NotFound("no such host".into()))?;
    Ok(HttpResponse::Ok().json(detail))
}

/// The host's newest unrevoked agent certificate.
fn current_certificate(
    c: &mut DbConnection,
    host_id: i64,
) -> Result<Option<crate::db::certificates::CertificateRow>, DbError> {
    Ok(certificates::table
        .filter(certificates::host_id.eq(host_id))
        .filter(certificates::kind.eq("agent"))
        .filter(certificates::revoked_at.is_null())
        .order(certificates::id.desc())
        .select(crate::db::certificates::CertificateRow::as_select())
        .first(c)
        .optional()?)
}

/// `GET /api/v1/hosts/{host_id}/certificate-bundle`: the host's certificate and the CA
/// certificate as one PEM file. Public parts only: private keys never leave the hosts.
pub async fn certificate_bundle(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let row = state
        .db
        .run(move |c| current_certificate(c, id))
        .await?
        .ok_or_else(|| AppError::NotFound("this host has no valid certificate".into()))?;
    crate::api::audit_action(
        &state,
        &req,
        who.actor(),
        "certificate.downloaded",
        format!("host:{id}"),
        serde_json::json!({ "serial": row.serial, "bundle": true }),
    )
    .await;
    let file = format!("host-{id}-{}.pem", row.serial);
    let mut body = row.cert_pem.trim_end().to_owned();
    body.push('\n');
    body.push_str(state.pki.ca.cert_pem().trim_end());
    body.push('\n');
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
    let groups = state
        .db
        .run(move |c| {
            let mut q = host_groups::table
                .order(host_groups::name)
                .select((host_groups::id, host_groups::name, host_groups::description))
                .into_boxed();
            if let Some(g) = who.scope.groups() {
                q = q.filter(host_groups::id.eq_any(g.to_vec()));
            }
            let rows: Vec<(i64, String, String)> = q.load(c)?;
            let counts: Vec<(i64, i64)> = host_group_members::table
                .group_by(host_group_members::group_id)
                .select((
                    host_group_members::group_id,
                    diesel::dsl::count(host_group_members::host_id),
                ))
                .load(c)?;
            Ok(rows
                .into_iter()
                .map(|(id, name, description)| GroupInfo {
                    id,
                    name,
                    description,
                    hosts: counts.iter().find(|(g, _)| *g == id).map_or(0, |(_, n)| *n),
                })
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(groups))
}

/// `POST /api/v1/groups`.
pub async fn create_group(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Caller,
    body: web::Json<NewGroup>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "name must be 1 to 64 printable characters",
        ));
    }
    if body.description.chars().count() > 500 {
        return Err(AppError::invalid(
            "description",
            "description is limited to 500 characters",
        ));
    }
    let (n, d) = (name.clone(), body.description.clone());
    let id = state
        .db
        .run(move |c| {
            let now = chrono::Utc::now().naive_utc();
            let exists: i64 = host_groups::table
                .filter(host_groups::name.eq(&n))
                .count()
                .get_result(c)?;
            if exists > 0 {
                return Ok(None);
            }
            Ok(Some(
                diesel::insert_into(host_groups::table)
                    .values((
                        host_groups::name.eq(&n),
                        host_groups::description.eq(&d),
                        host_groups::created_at.eq(now),
                        host_groups::updated_at.eq(now),
                    ))
                    .returning(host_groups::id)
                    .get_result::<i64>(c)?,
            ))
        })
        .await?
        .ok_or_else(|| AppError::Conflict(format!("a group named {name} exists")))?;
    crate::api::audit_action(
        &state,
        &req,
        who.actor(),
        "group.created",
        format!("group:{id}"),
        serde_json::json!({ "name": name }),
    )
    .await;
    Ok(HttpResponse::Created().json(GroupInfo {
        id,
        name,
        description: body.description,
        hosts: 0,
    }))
}
