//! The agent's Prometheus metrics (`GET /metrics`, behind the same mTLS wall as every route):
//! requests and latency by route, jobs by state, exclusive mode, the certificate's expiry and
//! the audit chain's state (verified at most every [`AUDIT_RECHECK`], off the request thread).

use crate::api::AgentState;
use actix_web::{web, HttpResponse};
use shared::agent::JobStatus;
use shared::metrics::{self, Exposition, HttpMetrics, Kind};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an audit-chain verdict is reused before the files are read again.
pub const AUDIT_RECHECK: Duration = Duration::from_secs(300);

/// What the agent counts while it runs.
#[derive(Debug)]
pub struct AgentMetrics {
    /// Requests by route.
    pub http: HttpMetrics,
    audit: Mutex<Option<(Instant, AuditVerdict)>>,
    started: f64,
}

#[derive(Debug, Clone, Copy)]
enum AuditVerdict {
    Intact(u64),
    Broken,
    Unreadable,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self {
            http: HttpMetrics::default(),
            audit: Mutex::new(None),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

impl AgentMetrics {
    async fn audit_verdict(&self, path: std::path::PathBuf) -> AuditVerdict {
        if let Ok(cached) = self.audit.lock() {
            if let Some((at, v)) = *cached {
                if at.elapsed() < AUDIT_RECHECK {
                    return v;
                }
            }
        }
        let verdict = match tokio::task::spawn_blocking(move || crate::audit::verify_file(&path))
            .await
        {
            Ok(Ok(crate::audit::Verdict::Intact { records, .. })) => AuditVerdict::Intact(records),
            Ok(Ok(crate::audit::Verdict::Broken { .. })) => AuditVerdict::Broken,
            _ => AuditVerdict::Unreadable,
        };
        if let Ok(mut cached) = self.audit.lock() {
            *cached = Some((Instant::now(), verdict));
        }
        verdict
    }
}

fn job_word(s: JobStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The whole page, read now.
pub async fn render(state: &AgentState) -> String {
    let m = &state.metrics;
    let mut page = Exposition::new();
    page.family(
        "patch_agent_build_info",
        "The agent's version and package backend.",
        Kind::Gauge,
    )
    .sample(
        "patch_agent_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("backend", state.backend.name()),
        ],
        1.0,
    );
    page.single(
        "patch_agent_process_start_time_seconds",
        "When the agent started (Unix time).",
        Kind::Gauge,
        m.started,
    );
    m.http.write("patch_agent", &mut page);

    let mut jobs: BTreeMap<String, u64> = BTreeMap::new();
    for job in state.jobs.list(None) {
        *jobs.entry(job_word(job.status)).or_default() += 1;
    }
    let all: Vec<String> = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Partial,
        JobStatus::Failed,
        JobStatus::TimedOut,
        JobStatus::Interrupted,
    ]
    .into_iter()
    .map(job_word)
    .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    metrics::write_counts(
        &mut page,
        "patch_agent_jobs",
        "Package jobs the agent holds (running and retained), by state.",
        "state",
        &all,
        &jobs,
    );
    page.single(
        "patch_agent_exclusive_mode",
        "1 while a rollback holds the agent in exclusive mode.",
        Kind::Gauge,
        if state.jobs.exclusive().is_some() {
            1.0
        } else {
            0.0
        },
    );
    page.single(
        "patch_agent_certificate_expiry_timestamp_seconds",
        "When the agent's server certificate expires (Unix time).",
        Kind::Gauge,
        state.tls.not_after().timestamp() as f64,
    );
    let verdict = m.audit_verdict(state.audit_path.clone()).await;
    page.single(
        "patch_agent_audit_chain_intact",
        "1 when the audit log's hash chain verifies, 0 when it is broken or unreadable.",
        Kind::Gauge,
        if matches!(verdict, AuditVerdict::Intact(_)) {
            1.0
        } else {
            0.0
        },
    );
    if let AuditVerdict::Intact(records) = verdict {
        page.single(
            "patch_agent_audit_records",
            "Records in the audit chain at its latest verification.",
            Kind::Gauge,
            records as f64,
        );
    }
    page.finish()
}

/// `GET /metrics`.
pub async fn serve(state: web::Data<AgentState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .insert_header(("cache-control", "no-store"))
        .body(render(&state).await)
}
