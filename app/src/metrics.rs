//! The manager's Prometheus metrics (`GET /metrics`): counted as things happen (requests and their
//! latency, sign-in outcomes, health-poll latency) or read at scrape time from the state that
//! already holds them (hosts and jobs by state from the database, the audit chain's last verdict,
//! certificate expiry). Served to Admins on the main listener and, without sign-in, on a separate
//! plain-HTTP listener bound to loopback by default (`metrics.listen`).

use crate::db::audit::Outcome;
use crate::error::AppError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use shared::metrics::{self, Exposition, Histogram, HttpMetrics, Kind};
use shared::status::AuditChainState;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

/// Bounds of the health-poll latency buckets (seconds): 5 ms to the 5 s poll deadline and past.
const POLL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What the manager counts while it runs.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by route.
    pub http: HttpMetrics,
    sign_ins: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    polls: Mutex<BTreeMap<&'static str, Histogram>>,
    started: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            http: HttpMetrics::default(),
            sign_ins: Mutex::default(),
            polls: Mutex::default(),
            started: unix_now(),
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Denied => "denied",
    }
}

impl Metrics {
    /// Notes an audit record as it is appended; the sign-in steps (`auth.login`: password or
    /// passkey, `auth.mfa`: the second factor, `auth.sso`: single sign-on) are counted by outcome.
    pub fn audited(&self, action: &str, outcome: Outcome) {
        let step = match action {
            "auth.login" => "login",
            "auth.mfa" => "mfa",
            "auth.sso" => "sso",
            _ => return,
        };
        if let Ok(mut m) = self.sign_ins.lock() {
            *m.entry((step, outcome_word(outcome))).or_default() += 1;
        }
    }

    /// Notes one health poll's round trip; `answered` is false when the agent did not answer.
    pub fn polled(&self, latency: Duration, answered: bool) {
        let outcome = if answered { "answered" } else { "failed" };
        if let Ok(mut m) = self.polls.lock() {
            m.entry(outcome)
                .or_insert_with(|| Histogram::new(POLL_BUCKETS))
                .observe(latency.as_secs_f64());
        }
    }

    fn write_counted(&self, page: &mut Exposition) {
        page.family(
            "lpm_sign_ins_total",
            "Sign-in steps by outcome: login (password or passkey), mfa (second factor), sso.",
            Kind::Counter,
        );
        if let Ok(m) = self.sign_ins.lock() {
            for step in ["login", "mfa", "sso"] {
                for outcome in ["success", "failure", "denied"] {
                    let n = m.get(&(step, outcome)).copied().unwrap_or(0);
                    page.sample(
                        "lpm_sign_ins_total",
                        &[("step", step), ("outcome", outcome)],
                        n as f64,
                    );
                }
            }
        }
        page.family(
            "lpm_health_poll_duration_seconds",
            "Round trip of the host actors' health polls, by whether the agent answered.",
            Kind::Histogram,
        );
        if let Ok(m) = self.polls.lock() {
            for (outcome, h) in m.iter() {
                page.histogram(
                    "lpm_health_poll_duration_seconds",
                    &[("outcome", outcome)],
                    h,
                );
            }
        }
    }
}

/// The whole page, read now.
pub async fn render(state: &AppState) -> Result<String, AppError> {
    let counts = state.db.run(crate::db::stats::metric_counts).await?;
    let m = &state.metrics;
    let mut page = Exposition::new();
    page.family(
        "lpm_build_info",
        "The manager's version and database engine.",
        Kind::Gauge,
    )
    .sample(
        "lpm_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            (
                "database",
                match state.db.backend() {
                    shared::status::DatabaseBackend::Sqlite => "sqlite",
                    shared::status::DatabaseBackend::Postgres => "postgresql",
                },
            ),
        ],
        1.0,
    );
    page.single(
        "lpm_process_start_time_seconds",
        "When the manager started (Unix time).",
        Kind::Gauge,
        m.started,
    );
    m.http.write("lpm", &mut page);
    m.write_counted(&mut page);

    let by_state = |rows: &[(String, i64)]| -> BTreeMap<String, u64> {
        rows.iter()
            .map(|(s, n)| (s.clone(), u64::try_from(*n).unwrap_or(0)))
            .collect()
    };
    let host_states: Vec<&str> = shared::vocab::HostStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let job_states: Vec<&str> = shared::jobs::JobState::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    for (name, help, states, rows) in [
        (
            "lpm_hosts",
            "Managed hosts by state.",
            &host_states,
            &counts.hosts,
        ),
        (
            "lpm_patch_jobs",
            "Patch jobs by state.",
            &job_states,
            &counts.jobs,
        ),
    ] {
        metrics::write_counts(&mut page, name, help, "state", states, &by_state(rows));
    }

    match state.audit.last_verdict() {
        Some(AuditChainState::Intact { records }) => {
            page.single(
                "lpm_audit_chain_intact",
                "1 when the latest verification found the audit chain intact, 0 when broken.",
                Kind::Gauge,
                1.0,
            );
            page.single(
                "lpm_audit_chain_verified_records",
                "Records the latest verification checked.",
                Kind::Gauge,
                records as f64,
            );
        }
        Some(AuditChainState::Broken { .. }) => {
            page.single(
                "lpm_audit_chain_intact",
                "1 when the latest verification found the audit chain intact, 0 when broken.",
                Kind::Gauge,
                0.0,
            );
        }
        // Not verified yet (the first verification runs at start): no sample rather than a guess.
        None => {}
    }

    page.family(
        "lpm_certificate_expiry_timestamp_seconds",
        "When the manager's own certificates expire (Unix time).",
        Kind::Gauge,
    );
    let client_pem = tokio::fs::read_to_string(&state.pki.client_cert)
        .await
        .unwrap_or_default();
    for (name, pem) in [
        ("fleet_ca", state.pki.ca.cert_pem()),
        ("web_ca", state.pki.web_ca.cert_pem()),
        ("manager_client", client_pem.as_str()),
    ] {
        if let Ok(not_after) = crate::pki::ca::not_after(pem) {
            page.sample(
                "lpm_certificate_expiry_timestamp_seconds",
                &[("certificate", name)],
                not_after.and_utc().timestamp() as f64,
            );
        }
    }
    if let Some(first) = counts.host_cert_expiry.iter().min() {
        page.single(
            "lpm_host_certificate_earliest_expiry_timestamp_seconds",
            "Earliest expiry among the hosts' current certificates (Unix time).",
            Kind::Gauge,
            first.and_utc().timestamp() as f64,
        );
    }
    let soon = state.clock.now() + chrono::Duration::days(state.config.pki.renew_before_days);
    page.single(
        "lpm_host_certificates_expiring",
        "Hosts whose current certificate expires within pki.renew_before_days.",
        Kind::Gauge,
        counts
            .host_cert_expiry
            .iter()
            .filter(|t| **t <= soon)
            .count() as f64,
    );
    Ok(page.finish())
}

fn answer(text: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .insert_header(("cache-control", "no-store"))
        .body(text)
}

/// `GET /metrics` on the main listener (Admins, by the route table's rule).
pub async fn serve(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(answer(render(&state).await?))
}

/// Starts the separate metrics listener on `listener`: `GET /metrics` only, no sign-in, no
/// pages. Its requests are not counted in the request metrics (a scrape every 15 s would be most
/// of them).
pub fn serve_listener(
    state: AppState,
    listener: TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(web::Data::new(state.clone()))
            .route(
                "/metrics",
                web::get().to(|state: web::Data<AppState>| async move {
                    match render(&state).await {
                        Ok(text) => answer(text),
                        Err(e) => {
                            tracing::warn!(error = %e, "metrics could not be read");
                            HttpResponse::ServiceUnavailable()
                                .content_type("text/plain; charset=utf-8")
                                .body(format!("metrics unavailable: {e}\n"))
                        }
                    }
                }),
            )
            .default_service(web::to(|| async {
                HttpResponse::NotFound()
                    .content_type("text/plain; charset=utf-8")
                    .body("only /metrics is served here\n")
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .listen(listener)?;
    Ok(server.run())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sign_in_steps_are_counted_by_outcome_and_other_actions_ignored() {
        let m = Metrics::default();
        m.audited("auth.login", Outcome::Denied);
        m.audited("auth.login", Outcome::Denied);
        m.audited("auth.mfa", Outcome::Success);
        m.audited("host.deleted", Outcome::Success);
        let mut page = Exposition::new();
        m.write_counted(&mut page);
        let text = page.finish();
        assert!(text.contains("lpm_sign_ins_total{step=\"login\",outcome=\"denied\"} 2\n"));
        assert!(text.contains("lpm_sign_ins_total{step=\"mfa\",outcome=\"success\"} 1\n"));
        assert!(text.contains("lpm_sign_ins_total{step=\"sso\",outcome=\"success\"} 0\n"));
    }
}
