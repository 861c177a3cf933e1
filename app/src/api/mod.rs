//! The manager's JSON endpoints, one module per resource; handlers stay thin.

pub mod audit;
pub mod auth;
pub mod ca;
pub mod certificates;
pub mod discovery;
pub mod enroll;
pub mod events;
pub mod hosts;
pub mod jobs;
pub mod mfa;
pub mod openapi;
pub mod passkeys;
pub mod settings;
pub mod setup;
pub mod sso;
pub mod status;
pub mod users;
pub mod windows;

use crate::auth::access::Access;
pub use crate::error::AppError;
use crate::http::gate::{gate, Rules};
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::web;
use shared::api::{self as ep, Endpoint};

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

/// One route: the endpoint's declaration in `shared::api` gives method and path.
macro_rules! route {
    ($endpoint:ty, $access:ident, $handler:path) => {
        ApiRoute {
            method: method_of(<$endpoint as Endpoint>::METHOD),
            path: <$endpoint as Endpoint>::PATH,
            access: Access::$access,
            route: || {
                web::route()
                    .method(method_of(<$endpoint as Endpoint>::METHOD))
                    .to($handler)
            },
        }
    };
}

/// The HTTP method of a declared endpoint.
pub const fn method_of(m: shared::api::Method) -> Method {
    match m {
        shared::api::Method::Get => Method::GET,
        shared::api::Method::Post => Method::POST,
        shared::api::Method::Put => Method::PUT,
        shared::api::Method::Patch => Method::PATCH,
        shared::api::Method::Delete => Method::DELETE,
    }
}

/// Every JSON endpoint of the manager.
pub static ROUTES: &[ApiRoute] = &[
    route!(ep::Health, Public, status::health),
    route!(ep::OpenApiDocument, Public, openapi::serve),
    route!(ep::RootCertificate, Public, ca::root_certificate),
    route!(ep::FleetCertificate, Public, ca::fleet_certificate),
    route!(ep::CurrentCrl, Public, ca::current_crl),
    route!(ep::Metrics, Admin, crate::metrics::serve),
    route!(ep::Overview, Operator, status::overview),
    route!(ep::Enroll, Public, enroll::enroll),
    route!(ep::GetSetup, Public, setup::status),
    route!(ep::CompleteSetup, Public, setup::complete),
    route!(ep::Login, Public, auth::login),
    route!(ep::LoginMfa, Public, auth::login_mfa),
    route!(ep::LoginPending, Public, sso::pending),
    route!(ep::LoginWebauthnStart, Public, passkeys::login_start),
    route!(ep::LoginWebauthnFinish, Public, passkeys::login_finish),
    route!(ep::Refresh, Public, auth::refresh),
    route!(ep::OidcStatusGet, Public, sso::status),
    route!(ep::OidcStart, Public, sso::start),
    route!(ep::OidcCallback, Public, sso::callback),
    route!(ep::Logout, Session, auth::logout),
    route!(ep::GetMe, Session, auth::me),
    route!(ep::GetMfa, Session, mfa::status),
    route!(ep::TotpStart, Session, mfa::totp_start),
    route!(ep::TotpConfirm, Session, mfa::totp_confirm),
    route!(ep::RenewRecoveryCodes, Session, mfa::renew_recovery_codes),
    route!(ep::WebauthnRegisterStart, Session, passkeys::register_start),
    route!(
        ep::WebauthnRegisterFinish,
        Session,
        passkeys::register_finish
    ),
    route!(ep::RemoveFactor, Session, mfa::remove),
    route!(ep::ListHosts, Operator, hosts::list),
    route!(ep::GetHost, Host, hosts::detail),
    route!(ep::HostBundle, Host, hosts::certificate_bundle),
    route!(ep::RefreshHost, Host, hosts::refresh),
    route!(ep::DeleteHost, Admin, hosts::remove),
    route!(ep::HostPackages, Host, hosts::packages),
    route!(ep::HostPatches, Host, hosts::patches),
    route!(ep::IssueEventTicket, Session, events::ticket),
    route!(ep::EventStream, Public, events::stream),
    route!(ep::RenewHostCertificate, Admin, certificates::renew_host),
    route!(ep::StartDiscovery, Admin, discovery::start),
    route!(ep::ListDiscoveries, Admin, discovery::list),
    route!(ep::GetDiscovery, Admin, discovery::get),
    route!(ep::CancelDiscovery, Admin, discovery::cancel),
    route!(ep::AdoptDiscovered, Admin, discovery::adopt),
    route!(ep::ListJobs, Operator, jobs::list),
    route!(ep::CreateJob, Operator, jobs::create),
    route!(ep::GetJob, Operator, jobs::get),
    route!(ep::CancelJob, Operator, jobs::cancel),
    route!(ep::RollbackJob, Operator, jobs::rollback),
    route!(ep::ListWindows, Operator, windows::list),
    route!(ep::CreateWindow, Operator, windows::create),
    route!(ep::DeleteWindow, Operator, windows::delete),
    route!(ep::ListGroups, Operator, hosts::groups),
    route!(ep::CreateGroup, Admin, hosts::create_group),
    route!(ep::UpdateGroup, Admin, hosts::update_group),
    route!(ep::DeleteGroup, Admin, hosts::delete_group),
    route!(ep::SetHostGroups, Admin, hosts::set_groups),
    route!(ep::ListAudit, Admin, audit::list),
    route!(ep::ListUsers, Admin, users::list),
    route!(ep::CreateUser, Admin, users::create),
    route!(ep::UpdateUser, Admin, users::update),
    route!(ep::DeleteUser, Admin, users::delete),
    route!(ep::ResetUserMfa, Admin, users::reset_mfa),
    route!(ep::LogoutUser, Admin, users::force_logout),
    route!(ep::ListCertificates, Admin, certificates::list),
    route!(ep::RotateManagerClient, Admin, certificates::rotate_client),
    route!(ep::RevokeCertificate, Admin, certificates::revoke),
    route!(ep::GetCrlStatus, Admin, certificates::crl_status),
    route!(ep::RetryCrlDelivery, Admin, certificates::retry_crl),
    route!(ep::GetAllowList, Admin, settings::allow_list),
    route!(ep::GetPolling, Admin, settings::polling),
    route!(ep::PutPolling, Admin, settings::set_polling),
    route!(ep::PutAllowList, Admin, settings::set_allow_list),
    route!(ep::GetOidcSettings, Admin, sso::get_settings),
    route!(ep::PutOidcSettings, Admin, sso::put_settings),
    route!(ep::TestOidc, Admin, sso::test_connection),
    route!(ep::ListEnrollmentTokens, Admin, certificates::list_tokens),
    route!(ep::CreateEnrollmentToken, Admin, certificates::create_token),
    route!(ep::DeleteEnrollmentToken, Admin, certificates::delete_token),
];

/// Registers every JSON endpoint behind its access rule, and the extractor configuration that
/// envelopes their errors.
pub fn configure(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.app_data(crate::http::extract::BodyLimit(body_limit))
        .app_data(
            web::JsonConfig::default()
                .limit(body_limit)
                .error_handler(move |err, _req| AppError::from_json(&err, body_limit).into()),
        )
        .app_data(web::PayloadConfig::default().limit(body_limit))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _req| AppError::from_query(&err).into()),
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
