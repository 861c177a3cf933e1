//! The manager's JSON endpoints, one module per resource; handlers stay thin.

pub mod auth;
pub mod ca;
pub mod enroll;
pub mod setup;
pub mod status;

pub use crate::error::AppError;
use actix_web::web;

/// Registers every JSON endpoint and the extractor configuration that envelopes their errors.
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
    )
    .service(web::resource("/status/health").route(web::get().to(status::health)))
    .service(web::resource("/api/v1/ca/root.crt").route(web::get().to(ca::root_certificate)))
    .service(web::resource("/api/v1/enroll").route(web::post().to(enroll::enroll)))
    .service(web::resource("/api/v1/auth/login").route(web::post().to(auth::login)))
    .service(web::resource("/api/v1/auth/refresh").route(web::post().to(auth::refresh)))
    .service(web::resource("/api/v1/auth/logout").route(web::post().to(auth::logout)))
    .service(web::resource("/api/v1/auth/me").route(web::get().to(auth::me)))
    .service(
        web::resource("/api/v1/setup")
            .route(web::get().to(setup::status))
            .route(web::post().to(setup::complete)),
    );
}

/// Answer for any path no route matches.
pub async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound("no such resource".into()))
}
