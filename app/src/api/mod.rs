//! The manager's JSON endpoints, one module per resource; handlers stay thin.

pub mod auth;
pub mod ca;
pub mod certificates;
pub mod enroll;
pub mod hosts;
pub mod mfa;
pub mod passkeys;
pub mod settings;
pub mod setup;
pub mod sso;
pub mod status;
pub mod users;

use crate::auth::access::Access;
pub use crate::error::AppError;
use crate::http::gate::{gate, Rules};
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::web;

/// One endpoint and who may call it. [`configure`] registers exactly these, each behind
/// [`gate`], so a route cannot exist without an access rule; the RBAC matrix test walks this
/// table.
pub struct ApiRoute {
    /// HTTP method.
    pub method: Method,
    /// Full path, with `{param}` segments.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    route: fn() -> actix_web::Route,
}

macro_rules! route {
    ($m:ident $path:literal, $access:ident, $handler:path) => {
        ApiRoute {
            method: Method::$m,
            path: $path,
            access: Access::$access,
            route: || web::route().method(Method::$m).to($handler),
        }
    };
}

/// Every JSON endpoint of the manager.
pub static ROUTES: &[ApiRoute] = &[
    route!(GET "/status/health", Public, status::health),
    route!(GET "/api/v1/ca/root.crt", Public, ca::root_certificate),
    route!(GET "/api/v1/overview", Operator, status::overview),
    route!(POST "/api/v1/enroll", Public, enroll::enroll),
    route!(GET "/api/v1/setup", Public, setup::status),
    route!(POST "/api/v1/setup", Public, setup::complete),
    route!(POST "/api/v1/auth/login", Public, auth::login),
    route!(POST "/api/v1/auth/login/mfa", Public, auth::login_mfa),
    route!(GET "/api/v1/auth/login/pending", Public, sso::pending),
    route!(POST "/api/v1/auth/login/webauthn/start", Public, passkeys::login_start),
    route!(POST "/api/v1/auth/login/webauthn/finish", Public, passkeys::login_finish),
    route!(POST "/api/v1/auth/refresh", Public, auth::refresh),
    route!(GET "/api/v1/auth/oidc/status", Public, sso::status),
    route!(GET "/api/v1/auth/oidc/start", Public, sso::start),
    route!(GET "/api/v1/auth/oidc/callback", Public, sso::callback),
    route!(POST "/api/v1/auth/logout", Session, auth::logout),
    route!(GET "/api/v1/auth/me", Session, auth::me),
    route!(GET "/api/v1/auth/mfa", Session, mfa::status),
    route!(POST "/api/v1/auth/mfa/totp", Session, mfa::totp_start),
    route!(POST "/api/v1/auth/mfa/totp/{credential_id}/confirm", Session, mfa::totp_confirm),
    route!(POST "/api/v1/auth/mfa/recovery-codes", Session, mfa::renew_recovery_codes),
    route!(POST "/api/v1/auth/mfa/webauthn/register/start", Session, passkeys::register_start),
    route!(POST "/api/v1/auth/mfa/webauthn/register/finish", Session, passkeys::register_finish),
    route!(DELETE "/api/v1/auth/mfa/{credential_id}", Session, mfa::remove),
    route!(GET "/api/v1/hosts", Operator, hosts::list),
    route!(GET "/api/v1/hosts/{host_id}", Host, hosts::detail),
    route!(GET "/api/v1/hosts/{host_id}/certificate-bundle", Host, hosts::certificate_bundle),
    route!(POST "/api/v1/hosts/{host_id}/certificate/renew", Admin, certificates::renew_host),
    route!(GET "/api/v1/groups", Operator, hosts::groups),
    route!(POST "/api/v1/groups", Admin, hosts::create_group),
    route!(GET "/api/v1/users", Admin, users::list),
    route!(POST "/api/v1/users", Admin, users::create),
    route!(PATCH "/api/v1/users/{user_id}", Admin, users::update),
    route!(DELETE "/api/v1/users/{user_id}", Admin, users::delete),
    route!(POST "/api/v1/users/{user_id}/reset-mfa", Admin, users::reset_mfa),
    route!(POST "/api/v1/users/{user_id}/logout", Admin, users::force_logout),
    route!(GET "/api/v1/certificates", Admin, certificates::list),
    route!(POST "/api/v1/certificates/manager-client/rotate", Admin, certificates::rotate_client),
    route!(POST "/api/v1/certificates/{certificate_id}/revoke", Admin, certificates::revoke),
    route!(GET "/api/v1/settings/allow-list", Admin, settings::allow_list),
    route!(PUT "/api/v1/settings/allow-list", Admin, settings::set_allow_list),
    route!(GET "/api/v1/settings/oidc", Admin, sso::get_settings),
    route!(PUT "/api/v1/settings/oidc", Admin, sso::put_settings),
    route!(POST "/api/v1/settings/oidc/test", Admin, sso::test_connection),
    route!(GET "/api/v1/enrollment-tokens", Admin, certificates::list_tokens),
    route!(POST "/api/v1/enrollment-tokens", Admin, certificates::create_token),
    route!(DELETE "/api/v1/enrollment-tokens/{token_id}", Admin, certificates::delete_token),
];

/// Registers every JSON endpoint behind its access rule, and the extractor configuration that
/// envelopes their errors.
pub fn configure(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(body_limit)
            .error_handler(move |err, _req| AppError::from_json(&err, body_limit).into()),
    )
    .app_data(web::PayloadConfig::default().limit(body_limit))
    .app_data(
        web::QueryConfig::default().error_handler(|err, _req| AppError::from_query(&err).into()),
    )
    .app_data(
        web::PathConfig::default().error_handler(|err, _req| AppError::from_path(&err).into()),
    );
    let mut paths: Vec<&'static str> = Vec::new();
    for r in ROUTES {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    for path in paths {
        let here = || ROUTES.iter().filter(move |r| r.path == path);
        let rules: Rules = here().map(|r| (r.method.clone(), r.access)).collect();
        let resource = here()
            .fold(web::resource(path), |res, r| res.route((r.route)()))
            .wrap(from_fn(move |req, next| gate(rules.clone(), req, next)));
        cfg.service(resource);
    }
}

/// Answer for any path no route matches.
pub async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound("no such resource".into()))
}
