//! Access control, decided in one place.
//!
//! Every JSON route is declared in [`crate::api::ROUTES`] with an [`Access`] rule, and
//! [`crate::api::configure`] wraps each resource in [`gate`], which applies the rule before any
//! handler or body extractor runs. Handlers receive the outcome as a [`Caller`]: who is calling
//! and the [`Scope`] of hosts they may see. Database queries that list or touch hosts take that
//! `Scope`, and only this module can make one, so an Operator's view is limited to their groups
//! by construction rather than by each handler remembering to filter.
//!
//! Hosts outside an Operator's groups answer 404, like hosts that do not exist, so their
//! existence is not revealed.

use crate::api::AppError;
use crate::auth::identity::Identity;
use crate::db::schema::{host_group_members, user_groups};
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use diesel::prelude::*;
use std::future::{ready, Ready};
use std::sync::Arc;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, root CA, sign-in, token-protected first-run and enrollment).
    Public,
    /// Any signed-in user, even one who still has to enrol the second factor their account
    /// requires (who am I, sign out, MFA enrolment).
    Session,
    /// Any signed-in user; what they see is limited to their [`Scope`].
    Operator,
    /// Any signed-in user whose scope contains the host named by the `{host_id}` path segment.
    Host,
    /// Admins only.
    Admin,
}

/// The hosts a caller may see and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(ScopeInner);

#[derive(Debug, Clone, PartialEq, Eq)]
enum ScopeInner {
    All,
    Groups(Arc<[i64]>),
}

impl Scope {
    /// Every host (Admins).
    pub fn is_all(&self) -> bool {
        matches!(self.0, ScopeInner::All)
    }

    /// The groups an Operator belongs to; `None` for Admins (all groups).
    pub fn groups(&self) -> Option<&[i64]> {
        match &self.0 {
            ScopeInner::All => None,
            ScopeInner::Groups(g) => Some(g),
        }
    }

    /// Whether the group is visible.
    pub fn allows_group(&self, group_id: i64) -> bool {
        self.groups().is_none_or(|g| g.contains(&group_id))
    }

    /// Whether the host is visible: Admins see every host, Operators the members of their groups.
    pub fn allows_host(
        &self,
        c: &mut crate::db::DbConnection,
        host_id: i64,
    ) -> Result<bool, crate::db::DbError> {
        let Some(groups) = self.groups() else {
            return Ok(true);
        };
        let n: i64 = host_group_members::table
            .filter(host_group_members::host_id.eq(host_id))
            .filter(host_group_members::group_id.eq_any(groups.to_vec()))
            .count()
            .get_result(c)?;
        Ok(n > 0)
    }

    /// Ids of the visible hosts among all hosts, for list queries (`None`: no restriction).
    pub fn host_ids(
        &self,
        c: &mut crate::db::DbConnection,
    ) -> Result<Option<Vec<i64>>, crate::db::DbError> {
        let Some(groups) = self.groups() else {
            return Ok(None);
        };
        let mut ids: Vec<i64> = host_group_members::table
            .filter(host_group_members::group_id.eq_any(groups.to_vec()))
            .select(host_group_members::host_id)
            .load(c)?;
        ids.sort_unstable();
        ids.dedup();
        Ok(Some(ids))
    }
}

/// The caller of a route that passed its [`Access`] rule. Only [`gate`] makes one; a handler
/// asking for it on a route the gate does not cover gets a 500, never access.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who is signed in.
    pub identity: Identity,
    /// What they may see.
    pub scope: Scope,
}

impl Caller {
    /// Audit actor name: `user:<id>`.
    pub fn actor(&self) -> String {
        format!("user:{}", self.identity.user_id)
    }
}

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

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

/// The access rules of one resource (one path), by method.
pub type Rules = Arc<[(Method, Access)]>;

/// Applies the resource's rule for the request's method. Methods without a rule fall through to
/// the resource, which answers 405.
pub async fn gate(
    rules: Rules,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let access = rules
        .iter()
        .find(|(m, _)| m == req.method())
        .map(|(_, a)| *a);
    let Some(access) = access else {
        return next.call(req).await;
    };
    if access == Access::Public {
        return next.call(req).await;
    }
    let identity = Identity::from_request(req.request(), &mut Payload::None).await?;
    if identity.mfa_enrolment_pending && access != Access::Session {
        return Err(AppError::Forbidden(
            "your account requires a second factor: enrol one before going on".into(),
        )
        .into());
    }
    if access == Access::Admin && !identity.is_admin() {
        return Err(AppError::Forbidden("this needs the Admin role".into()).into());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::Internal("application state missing".into()))?;
    let scope = if identity.is_admin() {
        Scope(ScopeInner::All)
    } else {
        let uid = identity.user_id;
        let groups: Vec<i64> = state
            .db
            .run(move |c| {
                Ok(user_groups::table
                    .filter(user_groups::user_id.eq(uid))
                    .select(user_groups::group_id)
                    .load(c)?)
            })
            .await
            .map_err(AppError::from)?;
        Scope(ScopeInner::Groups(groups.into()))
    };
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
    req.extensions_mut().insert(Caller { identity, scope });
    next.call(req).await
}
