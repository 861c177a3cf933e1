//! The agent's HTTP API under `/api/v1`. Handlers are thin: validate, ask the backend, answer.
//! Every request is audited (client certificate, address, method, path, status) by [`audited`],
//! which also assigns the request id and turns bare framework errors into the JSON envelope.

use crate::audit::AuditLog;
use crate::backend::{BackendError, PackageBackend};
use crate::jobs::{Jobs, Plan, SubmitError};
use crate::tls::{ClientIdentity, ReloadableTls};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;
use shared::agent::{
    AgentHealth, ApplyRequest, CertificateInstall, CertificateInstalled, CrlInstall, CrlInstalled,
    CsrResponse, InstallRequest, Job, JobAccepted, JobEvent, JobList, JobStatus, PackageList,
    PatchList, PatchSelection, SystemInfo, UpdateRequest,
};
use shared::openapi::{schema_of, SchemaFn};
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
    /// Package jobs.
    pub jobs: Jobs,
    /// Where the TLS files live (for rotation pushed by the manager).
    pub tls_files: crate::config::TlsConfig,
    /// The agent's state directory.
    pub state_dir: std::path::PathBuf,
    /// The audit log's file (verified for `/metrics`).
    pub audit_path: std::path::PathBuf,
    /// What `/metrics` counts.
    pub metrics: Arc<crate::metrics::AgentMetrics>,
}

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Most packages one request may name.
pub const MAX_PACKAGES: usize = 200;

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
    /// A rollback holds the agent in exclusive mode.
    #[error("{0}")]
    Exclusive(String),
    /// The body is too large.
    #[error("request body is larger than {BODY_LIMIT} bytes")]
    TooLarge,
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Exclusive(_) => Self::Exclusive(e.to_string()),
            SubmitError::UnknownJob(id) => Self::NotFound(format!("no job {id}")),
            SubmitError::NotRollbackable(m) => Self::BadRequest {
                code: "not_rollbackable",
                message: m,
            },
            SubmitError::KeyReused(..) => Self::BadRequest {
                code: "idempotency_key_reused",
                message: e.to_string(),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Backend(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Exclusive(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            Self::NotFound(_) => "not_found",
            Self::BadRequest { code, .. } => code,
            Self::Backend(_) => "backend_error",
            Self::Internal(_) => "internal_error",
            Self::Exclusive(_) => "exclusive_mode",
            Self::TooLarge => "payload_too_large",
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
    cfg.app_data(
        web::JsonConfig::default()
            .limit(BODY_LIMIT)
            .error_handler(|e, _| json_error(&e).into()),
    )
    .app_data(web::PayloadConfig::default().limit(BODY_LIMIT))
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
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
    .route("/metrics", web::get().to(crate::metrics::serve))
    .service(ROUTES.iter().fold(web::scope("/api/v1"), |scope, r| {
        scope.route(r.path, (r.route)())
    }));
}

/// One endpoint: how it is routed and how it is documented. `configure` registers exactly these
/// and the OpenAPI document is generated from them, so the two cannot drift apart.
pub struct RouteDoc {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path below `/api/v1`, with `{param}` segments.
    pub path: &'static str,
    /// One line for the document.
    pub summary: &'static str,
    /// Request body type, if the route takes a body.
    pub request: Option<SchemaFn>,
    /// Query parameters (name, description).
    pub query: &'static [(&'static str, &'static str)],
    /// Success status.
    pub ok: u16,
    /// Success body type (for the WebSocket: its messages).
    pub response: SchemaFn,
    route: fn() -> actix_web::Route,
}

/// Every endpoint of the agent.
pub static ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "GET",
        path: "/health",
        summary: "Service status, backend, job counts, exclusive mode, certificate expiry",
        request: None,
        query: &[],
        ok: 200,
        response: schema_of::<AgentHealth>,
        route: || web::get().to(health),
    },
    RouteDoc {
        method: "GET",
        path: "/system/info",
        summary: "Host name, OS, kernel, uptime, package manager, reboot-required flag",
        request: None,
        query: &[],
        ok: 200,
        response: schema_of::<SystemInfo>,
        route: || web::get().to(system_info),
    },
    RouteDoc {
        method: "GET",
        path: "/packages",
        summary: "Installed packages",
        request: None,
        query: &[
            ("name", "substring of the name"),
            ("version", "exact version"),
            ("status", "exact package state"),
        ],
        ok: 200,
        response: schema_of::<PackageList>,
        route: || web::get().to(list_packages),
    },
    RouteDoc {
        method: "POST",
        path: "/packages",
        summary: "Install packages, optionally pinned (async)",
        request: Some(schema_of::<InstallRequest>),
        query: &[],
        ok: 202,
        response: schema_of::<JobAccepted>,
        route: || web::post().to(install),
    },
    RouteDoc {
        method: "GET",
        path: "/packages/{name}",
        summary: "One package",
        request: None,
        query: &[],
        ok: 200,
        response: schema_of::<PackageList>,
        route: || web::get().to(get_package),
    },
    RouteDoc {
        method: "PUT",
        path: "/packages/{name}",
        summary: "Update a package to its candidate or a pinned version (async)",
        request: Some(schema_of::<UpdateRequest>),
        query: &[],
        ok: 202,
        response: schema_of::<JobAccepted>,
        route: || web::put().to(update),
    },
    RouteDoc {
        method: "DELETE",
        path: "/packages/{name}",
        summary: "Remove a package (async)",
        request: None,
        query: &[("purge", "also remove configuration files")],
        ok: 202,
        response: schema_of::<JobAccepted>,
        route: || web::delete().to(remove),
    },
    RouteDoc {
        method: "GET",
        path: "/patches",
        summary: "Available updates, security first",
        request: None,
        query: &[],
        ok: 200,
        response: schema_of::<PatchList>,
        route: || web::get().to(list_patches),
    },
    RouteDoc {
        method: "POST",
        path: "/patches/apply",
        summary: "Apply all, security-only or listed updates (async)",
        request: Some(schema_of::<ApplyRequest>),
        query: &[],
        ok: 202,
        response: schema_of::<JobAccepted>,
        route: || web::post().to(apply_patches),
    },
    RouteDoc {
        method: "GET",
        path: "/jobs",
        summary: "Jobs, newest first",
        request: None,
        query: &[("status", "only jobs with this status")],
        ok: 200,
        response: schema_of::<JobList>,
        route: || web::get().to(list_jobs),
    },
    RouteDoc {
        method: "GET",
        path: "/jobs/{id}",
        summary: "One job with per-package results and log tail",
        request: None,
        query: &[],
        ok: 200,
        response: schema_of::<Job>,
        route: || web::get().to(get_job),
    },
    RouteDoc {
        method: "POST",
        path: "/jobs/{id}/rollback",
        summary: "Undo what a finished job changed (async, exclusive)",
        request: None,
        query: &[],
        ok: 202,
        response: schema_of::<JobAccepted>,
        route: || web::post().to(rollback),
    },
    RouteDoc {
        method: "POST",
        path: "/tls/csr",
        summary:
            "Make a new key on the host and answer a CSR for the current names (rotation, step 1)",
        request: None,
        query: &[],
        ok: 200,
        response: schema_of::<CsrResponse>,
        route: || web::post().to(tls_csr),
    },
    RouteDoc {
        method: "PUT",
        path: "/tls/certificate",
        summary: "Install the signed certificate for the pending key (rotation, step 2)",
        request: Some(schema_of::<CertificateInstall>),
        query: &[],
        ok: 200,
        response: schema_of::<CertificateInstalled>,
        route: || web::put().to(tls_certificate),
    },
    RouteDoc {
        method: "PUT",
        path: "/tls/crl",
        summary: "Install a revocation list signed by the fleet CA",
        request: Some(schema_of::<CrlInstall>),
        query: &[],
        ok: 200,
        response: schema_of::<CrlInstalled>,
        route: || web::put().to(tls_crl),
    },
    RouteDoc {
        method: "GET",
        path: "/ws/jobs",
        summary: "WebSocket of live job events",
        request: None,
        query: &[],
        ok: 101,
        response: schema_of::<JobEvent>,
        route: || web::get().to(crate::ws::job_events),
    },
    RouteDoc {
        method: "GET",
        path: "/openapi.json",
        summary: "This document",
        request: None,
        query: &[],
        ok: 200,
        response: schema_of::<shared::openapi::OpenApi>,
        route: || web::get().to(openapi),
    },
];

fn json_error(e: &actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as J;
    match e {
        J::Overflow { .. } | J::OverflowKnownLength { .. } => ApiError::TooLarge,
        J::ContentType => ApiError::BadRequest {
            code: "unsupported_media_type",
            message: "expected Content-Type: application/json".into(),
        },
        other => ApiError::BadRequest {
            code: "invalid_json",
            message: other.to_string(),
        },
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        code,
        message: message.into(),
    }
}

fn check_name(backend: &dyn PackageBackend, name: &str) -> Result<(), ApiError> {
    if backend.valid_name(name) {
        Ok(())
    } else {
        Err(bad(
            "invalid_package_name",
            format!(
                "`{}` is not a valid {} package name: {}",
                name.chars().take(64).collect::<String>().escape_default(),
                backend.name(),
                backend.grammar().name_rule
            ),
        ))
    }
}

fn check_version(backend: &dyn PackageBackend, version: &str) -> Result<(), ApiError> {
    if backend.valid_version(version) {
        Ok(())
    } else {
        Err(bad(
            "invalid_version",
            format!(
                "`{}` is not a valid {} version: {}",
                version
                    .chars()
                    .take(64)
                    .collect::<String>()
                    .escape_default(),
                backend.name(),
                backend.grammar().version_rule
            ),
        ))
    }
}

/// Longest `Idempotency-Key` accepted.
const MAX_KEY: usize = 64;

/// The request's `Idempotency-Key` header, if any: 1 to 64 of `A-Z a-z 0-9 - _ . :`.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty()
        || key.len() > MAX_KEY
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(bad(
            "invalid_idempotency_key",
            format!("Idempotency-Key is 1 to {MAX_KEY} characters of A-Z, a-z, 0-9, -, _, . and :"),
        ));
    }
    Ok(Some(key.to_owned()))
}

fn accepted(job_id: String) -> HttpResponse {
    HttpResponse::Accepted().json(JobAccepted {
        job_id,
        status: JobStatus::Queued,
    })
}

async fn install(
    state: web::Data<AgentState>,
    http: HttpRequest,
    body: web::Json<InstallRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&http)?;
    let req = body.into_inner();
    if req.packages.is_empty() || req.packages.len() > MAX_PACKAGES {
        return Err(bad(
            "validation_failed",
            format!("name 1 to {MAX_PACKAGES} packages"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &req.packages {
        check_name(state.backend.as_ref(), &p.name)?;
        if let Some(v) = &p.version {
            check_version(state.backend.as_ref(), v)?;
        }
        if !seen.insert(p.name.as_str()) {
            return Err(bad(
                "validation_failed",
                format!("{} is named twice", p.name),
            ));
        }
    }
    let request = serde_json::to_value(&req).unwrap_or_default();
    Ok(accepted(state.jobs.submit(
        Plan::Install(req.packages),
        request,
        key,
    )?))
}

async fn update(
    state: web::Data<AgentState>,
    http: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&http)?;
    let name = name.into_inner();
    check_name(state.backend.as_ref(), &name)?;
    // The body is optional; when present it must be valid JSON of the right shape.
    let req: UpdateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        UpdateRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad("invalid_json", e.to_string()))?
    };
    if let Some(v) = &req.version {
        check_version(state.backend.as_ref(), v)?;
    }
    let request = json!({ "name": name, "version": req.version });
    Ok(accepted(state.jobs.submit(
        Plan::Update {
            name,
            version: req.version,
        },
        request,
        key,
    )?))
}

/// Query of `DELETE /packages/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    purge: bool,
}

async fn remove(
    state: web::Data<AgentState>,
    http: HttpRequest,
    name: web::Path<String>,
    query: web::Query<RemoveQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&http)?;
    let name = name.into_inner();
    check_name(state.backend.as_ref(), &name)?;
    let purge = query.purge;
    let request = json!({ "name": name, "purge": purge });
    Ok(accepted(state.jobs.submit(
        Plan::Remove { name, purge },
        request,
        key,
    )?))
}

async fn list_patches(state: web::Data<AgentState>) -> Result<HttpResponse, ApiError> {
    let backend = state.backend.clone();
    let patches = blocking(move || Ok(backend.upgradable()?)).await?;
    let security = patches.iter().filter(|p| p.security).count();
    Ok(HttpResponse::Ok().json(PatchList {
        total: patches.len(),
        security,
        patches: patches.to_vec(),
    }))
}

async fn apply_patches(
    state: web::Data<AgentState>,
    http: HttpRequest,
    body: web::Json<ApplyRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&http)?;
    let req = body.into_inner();
    match req.selection {
        PatchSelection::List => {
            if req.packages.is_empty() || req.packages.len() > MAX_PACKAGES {
                return Err(bad(
                    "validation_failed",
                    format!("selection list needs 1 to {MAX_PACKAGES} packages"),
                ));
            }
            for n in &req.packages {
                check_name(state.backend.as_ref(), n)?;
            }
        }
        PatchSelection::All | PatchSelection::Security if !req.packages.is_empty() => {
            return Err(bad(
                "validation_failed",
                "packages may only be given with selection = list",
            ));
        }
        _ => {}
    }
    let request = serde_json::to_value(&req).unwrap_or_default();
    let plan = Plan::Apply {
        selection: req.selection,
        names: req.packages,
    };
    Ok(accepted(state.jobs.submit(plan, request, key)?))
}

/// Query of `GET /jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobQuery {
    status: Option<JobStatus>,
}

async fn list_jobs(state: web::Data<AgentState>, q: web::Query<JobQuery>) -> HttpResponse {
    let jobs = state.jobs.list(q.status);
    HttpResponse::Ok().json(JobList {
        total: jobs.len(),
        jobs,
    })
}

fn check_job_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 26 && id.bytes().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(bad("invalid_job_id", "job ids are 26-character ULIDs"))
    }
}

async fn get_job(
    state: web::Data<AgentState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_job_id(&id)?;
    let job = state
        .jobs
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    Ok(HttpResponse::Ok().json(job))
}

async fn rollback(
    state: web::Data<AgentState>,
    http: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&http)?;
    let of = id.into_inner();
    check_job_id(&of)?;
    let request = json!({ "rollback_of": of });
    Ok(accepted(state.jobs.submit(
        Plan::Rollback { of },
        request,
        key,
    )?))
}

fn rotate_error(e: crate::rotate::RotateError) -> ApiError {
    match e {
        crate::rotate::RotateError::Invalid(m) => bad("invalid_certificate", m),
        crate::rotate::RotateError::NoPendingKey => bad("no_pending_key", e.to_string()),
        crate::rotate::RotateError::Io(m) => ApiError::Internal(m),
    }
}

fn tls_audit(state: &AgentState, event: &str, fields: serde_json::Value) {
    state.audit.record(event, fields);
}

async fn tls_csr(state: web::Data<AgentState>) -> Result<HttpResponse, ApiError> {
    let (files, dir) = (state.tls_files.clone(), state.state_dir.clone());
    let csr = blocking(move || crate::rotate::new_csr(&files, &dir).map_err(rotate_error)).await?;
    tls_audit(&state, "tls.csr_created", json!({}));
    Ok(HttpResponse::Ok().json(shared::agent::CsrResponse { csr_pem: csr }))
}

async fn tls_certificate(
    state: web::Data<AgentState>,
    body: web::Json<shared::agent::CertificateInstall>,
) -> Result<HttpResponse, ApiError> {
    let (files, dir, tls) = (
        state.tls_files.clone(),
        state.state_dir.clone(),
        state.tls.clone(),
    );
    let pem = body.into_inner().certificate_pem;
    let result = blocking(move || {
        crate::rotate::install_certificate(&files, &dir, &tls, &pem).map_err(rotate_error)
    })
    .await;
    match &result {
        Ok(not_after) => tls_audit(
            &state,
            "tls.certificate_installed",
            json!({ "not_after": not_after }),
        ),
        Err(e) => tls_audit(
            &state,
            "tls.certificate_refused",
            json!({ "reason": e.to_string() }),
        ),
    }
    Ok(HttpResponse::Ok().json(shared::agent::CertificateInstalled { not_after: result? }))
}

async fn tls_crl(
    state: web::Data<AgentState>,
    body: web::Json<shared::agent::CrlInstall>,
) -> Result<HttpResponse, ApiError> {
    let (files, tls) = (state.tls_files.clone(), state.tls.clone());
    let pem = body.into_inner().crl_pem;
    let result =
        blocking(move || crate::rotate::install_crl(&files, &tls, &pem).map_err(rotate_error))
            .await;
    match &result {
        Ok(n) => tls_audit(&state, "tls.crl_installed", json!({ "revoked": n })),
        Err(e) => tls_audit(
            &state,
            "tls.crl_refused",
            json!({ "reason": e.to_string() }),
        ),
    }
    Ok(HttpResponse::Ok().json(shared::agent::CrlInstalled { revoked: result? }))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
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
    let (jobs_running, jobs_queued) = state.jobs.counts();
    Ok(HttpResponse::Ok().json(AgentHealth {
        status: status.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        backend: state.backend.name().into(),
        jobs_running,
        jobs_queued,
        exclusive_mode: state.jobs.exclusive().is_some(),
        cert_not_after: state.tls.not_after().to_rfc3339(),
        interrupted_jobs: state.jobs.interrupted().to_vec(),
        job_file_problem: state.jobs.file_problem().map(str::to_owned),
        package_db_interrupted: db_interrupted,
    }))
}

async fn system_info(state: web::Data<AgentState>) -> Result<HttpResponse, ApiError> {
    let backend = state.backend.clone();
    let info = blocking(move || {
        Ok(crate::sysinfo::read(
            backend.name(),
            backend.last_update(),
            backend.reboot_required(),
        ))
    })
    .await?;
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
    check_name(state.backend.as_ref(), &name)?;
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
    let state = req.app_data::<web::Data<AgentState>>().cloned();
    let audit = state.as_ref().map(|s| s.audit.clone());
    let mut res = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .await?
        .map_into_boxed_body();
    let status = res.status();
    if let Some(state) = &state {
        let route = res.request().match_pattern();
        state.metrics.http.observe(
            &method,
            route.as_deref().unwrap_or("unmatched"),
            status.as_u16(),
            started.elapsed(),
        );
    }
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
