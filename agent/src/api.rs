//! The agent's HTTP API under `/api/v1`. Handlers are thin: validate, ask the backend, answer.
//! Every request is audited (client certificate, address, method, path, status) by [`audited`],
//! which also assigns the request id and turns bare framework errors into the JSON envelope.

use crate::audit::AuditLog;
use crate::backend::{valid_debian_name, BackendError, PackageBackend};
use crate::tls::{ClientIdentity, ReloadableTls};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Deserialize;
use shared::agent::{AgentHealth, PackageList};
use shared::ErrorEnvelope;
use std::sync::Arc;
use std::time::Instant;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Everything handlers need.
#[derive(Clone)]
pub struct AgentState {
    /// Package manager.
    pub backend: Arc<dyn PackageBackend>,
    /// TLS material (for the certificate expiry in `/health`).
    pub tls: Arc<ReloadableTls>,
    /// Audit log.
    pub audit: AuditLog,
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// Malformed input.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The package manager failed.
    #[error("package manager error: {0}")]
    Backend(#[from] BackendError),
    /// A blocking task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Backend(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            Self::NotFound(_) => "not_found",
            Self::BadRequest { code, .. } => code,
            Self::Backend(_) => "backend_error",
            Self::Internal(_) => "internal_error",
        };
        // Callers are authenticated by certificate, so backend messages are shown in full
        // (the spec asks for detailed messages to authenticated clients).
        let body = ErrorEnvelope::new(
            code,
            self.to_string(),
            REQUEST_ID.try_with(Clone::clone).ok(),
        );
        HttpResponse::build(self.status_code()).json(body)
    }
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::BadRequest {
            code: "invalid_query",
            message: e.to_string(),
        }
        .into()
    }))
    .app_data(web::PathConfig::default().error_handler(|e, _| {
        ApiError::BadRequest {
            code: "invalid_path",
            message: e.to_string(),
        }
        .into()
    }))
    .service(
        web::scope("/api/v1")
            .route("/health", web::get().to(health))
            .route("/system/info", web::get().to(system_info))
            .route("/packages", web::get().to(list_packages))
            .route("/packages/{name}", web::get().to(get_package)),
    );
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

async fn health(state: web::Data<AgentState>) -> Result<HttpResponse, ApiError> {
    let backend = state.backend.clone();
    let interrupted = blocking(move || Ok(backend.interrupted())).await?;
    let (status, db_interrupted) = match interrupted {
        Ok(i) => ("ok", i),
        Err(e) => {
            tracing::warn!(error = %e, "package database unreadable");
            ("degraded", false)
        }
    };
    Ok(HttpResponse::Ok().json(AgentHealth {
        status: status.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        backend: state.backend.name().into(),
        jobs_running: 0,
        jobs_queued: 0,
        exclusive_mode: false,
        cert_not_after: state.tls.not_after().to_rfc3339(),
        interrupted_jobs: Vec::new(),
        package_db_interrupted: db_interrupted,
    }))
}

async fn system_info(state: web::Data<AgentState>) -> Result<HttpResponse, ApiError> {
    let backend = state.backend.clone();
    let info =
        blocking(move || Ok(crate::sysinfo::read(backend.name(), backend.last_update()))).await?;
    Ok(HttpResponse::Ok().json(info))
}

/// Filters of `GET /packages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageFilter {
    /// Substring of the name.
    name: Option<String>,
    /// Exact version.
    version: Option<String>,
    /// Exact package-manager state (`installed`, `config-files`, …).
    status: Option<String>,
}

async fn list_packages(
    state: web::Data<AgentState>,
    filter: web::Query<PackageFilter>,
) -> Result<HttpResponse, ApiError> {
    let filter = filter.into_inner();
    for (key, value) in [
        ("name", &filter.name),
        ("version", &filter.version),
        ("status", &filter.status),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > 256) {
            return Err(ApiError::BadRequest {
                code: "invalid_query",
                message: format!("filter `{key}` is longer than 256 characters"),
            });
        }
    }
    let backend = state.backend.clone();
    let all = blocking(move || Ok(backend.installed()?)).await?;
    let packages: Vec<_> = all
        .iter()
        .filter(|p| {
            filter
                .name
                .as_ref()
                .is_none_or(|n| p.name.contains(n.as_str()))
        })
        .filter(|p| filter.version.as_ref().is_none_or(|v| &p.version == v))
        .filter(|p| filter.status.as_ref().is_none_or(|s| &p.status == s))
        .cloned()
        .collect();
    Ok(HttpResponse::Ok().json(PackageList {
        total: packages.len(),
        packages,
    }))
}

async fn get_package(
    state: web::Data<AgentState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    if !valid_debian_name(&name) {
        return Err(ApiError::BadRequest {
            code: "invalid_package_name",
            message: "package names are 2 to 128 characters of a-z, 0-9, '+', '-' and '.', \
                      starting with a letter or digit"
                .into(),
        });
    }
    let backend = state.backend.clone();
    let all = blocking(move || Ok(backend.installed()?)).await?;
    let found: Vec<_> = all.iter().filter(|p| p.name == name).cloned().collect();
    if found.is_empty() {
        return Err(ApiError::NotFound(format!(
            "package {name} is not known to the package database"
        )));
    }
    Ok(HttpResponse::Ok().json(PackageList {
        total: found.len(),
        packages: found,
    }))
}

/// Answer for unknown paths.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}

/// Request id, audit record and envelope for every request.
pub async fn audited(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = ulid::Ulid::new().to_string();
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let peer = req.peer_addr().map(|a| a.to_string());
    let client = req.conn_data::<ClientIdentity>().cloned();
    let audit = req
        .app_data::<web::Data<AgentState>>()
        .map(|s| s.audit.clone());
    let mut res = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .await?
        .map_into_boxed_body();
    let status = res.status();
    if (status.is_client_error() || status.is_server_error())
        && !res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    {
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            s if s.is_server_error() => "internal_error",
            _ => "bad_request",
        };
        let reason = status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_ascii_lowercase();
        let (http_req, _) = res.into_parts();
        res = ServiceResponse::new(
            http_req,
            HttpResponse::build(status).json(ErrorEnvelope::new(code, reason, Some(id.clone()))),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(audit) = audit {
        audit.record(
            "request",
            serde_json::json!({
                "request_id": id,
                "client_subject": client.as_ref().map(|c| c.subject.clone()),
                "client_serial": client.as_ref().map(|c| c.serial.clone()),
                "client_fingerprint": client.as_ref().map(|c| c.fingerprint.clone()),
                "peer": peer,
                "method": method,
                "path": path,
                "status": status.as_u16(),
                "ms": started.elapsed().as_millis() as u64,
            }),
        );
    }
    Ok(res)
}
