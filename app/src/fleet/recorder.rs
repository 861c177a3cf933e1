//! Writes down what the host actors learn, in the order they learn it, off their threads: health
//! and state changes to the host rows, inventories in one transaction each (an unchanged package
//! list, recognised by its hash, is not rewritten), state changes published on the event hub. A
//! host that answers again also gets any CRL it is missing without waiting for its backoff
//! (checked in the same database trip as its health).

use super::actor::{TargetReport, Update};
use super::connector::Inventory;
use crate::db::host_state::{
    self, HealthRecord, HealthRow, HostFacts, InventoryWrite, PackageRow, PatchRow,
};
use crate::db::DbError;
use crate::state::AppState;
use sha2::{Digest, Sha256};
use shared::fleet::HostStateEvent;
use tokio::sync::mpsc::UnboundedReceiver;

/// SHA-256 (hex) of a package list, independent of its order.
pub fn packages_hash(packages: &[PackageRow]) -> String {
    let mut lines: Vec<String> = packages
        .iter()
        .map(|p| format!("{}\t{}\t{}\t{}\n", p.name, p.arch, p.version, p.status))
        .collect();
    lines.sort_unstable();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn rfc3339_to_naive(text: &str) -> Option<chrono::NaiveDateTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.naive_utc())
}

/// Most updates taken from the queue at once; their health records are written in one
/// transaction (at 10,000 hosts polled every minute, one transaction per update kept the recorder
/// busy most of the time and delayed what it recorded).
const BATCH: usize = 256;

/// One health poll as the recorder writes it.
struct Health {
    host_id: i64,
    outcome: Result<shared::agent::AgentHealth, String>,
    status: shared::vocab::HostStatus,
    reason: Option<String>,
    changed: bool,
    latency: std::time::Duration,
}

impl Health {
    /// The health poll in `update` and when the next is due, or the update itself if it is not
    /// a health poll.
    fn of(update: Update) -> Result<(Self, std::time::Duration), Box<Update>> {
        match update {
            Update::Health {
                host_id,
                outcome,
                status,
                reason,
                changed,
                latency,
                next_poll_in,
            } => Ok((
                Self {
                    host_id,
                    outcome,
                    status,
                    reason,
                    changed,
                    latency,
                },
                next_poll_in,
            )),
            other => Err(Box::new(other)),
        }
    }
}

/// Writes health polls in one transaction, then publishes the state changes.
async fn record_health(state: &AppState, batch: Vec<Health>) -> Result<(), DbError> {
    let now = state.clock.now();
    for h in &batch {
        state.metrics.polled(h.latency, h.outcome.is_ok());
    }
    let details = batch
        .iter()
        .map(|h| {
            h.outcome
                .as_ref()
                .ok()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| DbError::Inconsistent(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (batch, written) = state
        .db
        .run(move |c| {
            let written = crate::db::transaction::transaction(c, |c| {
                batch
                    .iter()
                    .zip(&details)
                    .map(|(h, details)| {
                        let row = h
                            .outcome
                            .as_ref()
                            .ok()
                            .zip(details.as_deref())
                            .map(|(r, d)| HealthRow {
                                host_id: h.host_id,
                                checked_at: now,
                                agent_status: &r.status,
                                backend: Some(&r.backend),
                                jobs_running: i64::from(r.jobs_running),
                                jobs_queued: i64::from(r.jobs_queued),
                                exclusive_mode: r.exclusive_mode,
                                cert_expires_at: rfc3339_to_naive(&r.cert_not_after),
                                uptime_seconds: None,
                                latency_ms: i64::try_from(h.latency.as_millis()).ok(),
                                details_json: d,
                            });
                        let reachable = h.outcome.is_ok();
                        let exists = host_state::record_health(
                            c,
                            &HealthRecord {
                                host_id: h.host_id,
                                status: h.status.as_str(),
                                reason: h.reason.as_deref(),
                                changed: h.changed,
                                reachable,
                                at: now,
                                report: row,
                            },
                        )?;
                        // In the same trip: an agent that answers gets a CRL it is missing
                        // without waiting for its backoff.
                        let crl_due =
                            exists && reachable && crate::db::crls::retry_host_now(c, h.host_id)?;
                        Ok::<_, DbError>((exists, crl_due))
                    })
                    .collect::<Result<Vec<_>, DbError>>()
            })?;
            Ok((batch, written))
        })
        .await?;
    if written.iter().any(|(_, crl_due)| *crl_due) {
        state.crl.kick();
    }
    for (h, (exists, _)) in batch.into_iter().zip(written) {
        if !exists || !h.changed {
            continue;
        }
        tracing::info!(host_id = h.host_id, status = h.status.as_str(), reason = ?h.reason, "host state changed");
        // Nobody listening is fine: the state is in the database.
        let _ = state.fleet.events.send(HostStateEvent {
            host_id: h.host_id.into(),
            status: h.status,
            reason: h.reason,
            at: crate::clock::rfc3339(now),
        });
    }
    Ok(())
}

/// Records one update.
pub async fn record(state: &AppState, update: Update) -> Result<(), DbError> {
    let now = state.clock.now();
    match update {
        health @ Update::Health { .. } => match Health::of(health) {
            Ok((h, _)) => record_health(state, vec![h]).await,
            Err(_) => Ok(()),
        },
        Update::Inventory {
            host_id,
            outcome: Ok(inventory),
            slot: _slot,
        } => {
            // `_slot` is released once the inventory is written.
            let stored = store(state, host_id, *inventory, now).await;
            if let Err(e) = &stored {
                let _ = state.fleet.inventories.send((host_id, Err(e.to_string())));
            }
            stored
        }
        Update::Inventory {
            host_id,
            outcome: Err(e),
            ..
        } => {
            tracing::warn!(host_id, error = %e, "inventory poll failed; retried after the next health poll");
            let _ = state.fleet.inventories.send((host_id, Err(e)));
            Ok(())
        }
        Update::Target(report) => record_target(state, *report).await,
    }
}

/// A host's row of a job: written when its state changed (output lines and package results
/// only go live; the row's log and results are written with the next state), announced live,
/// and told to the deployer once written.
async fn record_target(state: &AppState, r: TargetReport) -> Result<(), DbError> {
    let p = &r.progress;
    if r.changed {
        let (job, host, update) = (r.job_id, r.host_id, crate::deploy::target_update(p));
        state
            .db
            .run(move |c| crate::db::jobs::update_target(c, job, host, &update))
            .await?;
        audit_target(state, &r).await;
    }
    let _ = state.fleet.live.send(shared::fleet::LiveEvent::JobTarget(
        shared::jobs::JobTargetEvent {
            job_id: shared::ids::JobId(r.job_id),
            host_id: shared::ids::HostId(r.host_id),
            state: p.state,
            progress: None,
            line: r.line.clone(),
            package: r.package.clone(),
            error: if r.changed { p.error.clone() } else { None },
            at: crate::clock::rfc3339(state.clock.now()),
        },
    ));
    if r.changed {
        state
            .fleet
            .deployer
            .do_send(crate::deploy::deployer::TargetChanged {
                job_id: r.job_id,
                host_id: r.host_id,
                state: p.state,
                agent_job_id: p.agent_job_id.clone(),
                halt: r.halt,
            });
    }
    Ok(())
}

/// The audit records of a host's row: each attempt started, each retry scheduled, the end, and
/// rollbacks.
async fn audit_target(state: &AppState, r: &TargetReport) {
    use shared::jobs::TargetState as S;
    let p = &r.progress;
    let action = match p.state {
        S::Dispatching => "job.host_started",
        S::RetryWait => "job.retry_scheduled",
        S::Succeeded | S::Partial | S::Failed => "job.host_finished",
        S::RollingBack if p.rollback_agent_job_id.is_none() => "job.rollback_started",
        S::RolledBack | S::RollbackFailed => "job.rollback_finished",
        S::Cancelled => "job.host_cancelled",
        _ => return,
    };
    let outcome = if matches!(
        p.state,
        S::Failed | S::Partial | S::RollbackFailed | S::RetryWait
    ) {
        crate::db::audit::Outcome::Failure
    } else {
        crate::db::audit::Outcome::Success
    };
    state
        .audit
        .note(
            crate::audit::Requester::named("deployer", None)
                .entry(action, outcome)
                .target(format!("job:{}", r.job_id))
                .details(serde_json::json!({
                    "host_id": r.host_id,
                    "state": p.state,
                    "attempt": p.attempt,
                    "agent_job_id": p.agent_job_id,
                    "rollback_agent_job_id": p.rollback_agent_job_id,
                    "error": p.error,
                })),
        )
        .await;
}

async fn store(
    state: &AppState,
    host_id: i64,
    inventory: Inventory,
    now: chrono::NaiveDateTime,
) -> Result<(), DbError> {
    let Inventory {
        info,
        packages,
        patches,
    } = inventory;
    let packages: Vec<PackageRow> = packages
        .packages
        .into_iter()
        .map(|p| PackageRow {
            host_id,
            name: p.name,
            arch: p.arch,
            version: p.version,
            status: p.status,
            source: p.source,
        })
        .collect();
    let security = patches.patches.iter().filter(|p| p.security).count();
    let patch_rows = patches
        .patches
        .into_iter()
        .map(|p| {
            Ok(PatchRow {
                host_id,
                name: p.name,
                arch: p.arch,
                installed_version: Some(p.installed_version),
                candidate_version: p.candidate_version,
                origin: Some(p.origin),
                is_security: p.security,
                severity: p.severity,
                cves_json: serde_json::to_string(&p.cves)
                    .map_err(|e| DbError::Inconsistent(e.to_string()))?,
                reboot_likely: p.reboot_likely,
                detected_at: now,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let hash = packages_hash(&packages);
    let total = i64::try_from(patch_rows.len()).unwrap_or(i64::MAX);
    let security = i64::try_from(security).unwrap_or(i64::MAX);
    let written = state
        .db
        .run(move |c| {
            let facts = HostFacts {
                os_id: Some(&info.os_id),
                os_version: Some(&info.os_version),
                kernel: Some(&info.kernel),
                arch: Some(&info.arch),
                agent_version: Some(&info.agent_version),
                reboot_required: info.reboot_required,
                pending_patches: total,
                pending_security_patches: security,
                last_patch_scan_at: Some(now),
                updated_at: now,
            };
            host_state::store_inventory(c, host_id, &facts, &hash, &packages, &patch_rows)
        })
        .await?;
    tracing::debug!(host_id, ?written, "inventory recorded");
    if written != InventoryWrite::NoSuchHost {
        let _ = state.fleet.inventories.send((host_id, Ok(written)));
    }
    Ok(())
}

/// Spawns the recorder on the current runtime; it ends when every actor is gone. What has queued
/// up meanwhile is taken at once (up to [`BATCH`]): health polls written in one transaction, then
/// inventories one by one.
pub fn spawn(state: AppState, mut updates: UnboundedReceiver<Update>) {
    actix_web::rt::spawn(async move {
        let mut stats = PollStats::new(std::time::Instant::now());
        while let Some(first) = updates.recv().await {
            let mut healths = Vec::new();
            let mut inventories = Vec::new();
            let mut next = Some(first);
            while let Some(update) = next.take() {
                match Health::of(update) {
                    Ok((health, next_poll_in)) => {
                        let now = std::time::Instant::now();
                        stats.health(
                            health.host_id,
                            health.outcome.is_ok(),
                            health.latency,
                            next_poll_in,
                            now,
                        );
                        if let Some(report) = stats.report(now) {
                            tracing::info!(
                                target: "fleet.polls",
                                polls = report.polls,
                                failed = report.failed,
                                late = report.late,
                                p50_ms = report.p50_ms,
                                p99_ms = report.p99_ms,
                                max_ms = report.max_ms,
                                "health polls in the last minute"
                            );
                        }
                        healths.push(health);
                    }
                    Err(inventory) => inventories.push(*inventory),
                }
                if healths.len() + inventories.len() < BATCH {
                    next = updates.try_recv().ok();
                }
            }
            if !healths.is_empty() {
                let n = healths.len();
                if let Err(e) = record_health(&state, healths).await {
                    tracing::warn!(error = %e, polls = n, "recording health polls failed; the next polls write them again");
                }
            }
            for update in inventories {
                if let Err(e) = record(&state, update).await {
                    tracing::warn!(error = %e, "recording a host poll failed");
                }
            }
        }
    });
}

/// A poll counts as late when it starts this long after it was due.
const LATE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);
/// How often [`PollStats`] reports.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Health polls over the last minute, for the operator's log (and the fleet benchmark): how
/// many, how many failed, how many came late, and the round-trip percentiles.
#[derive(Debug)]
pub struct PollStats {
    since: std::time::Instant,
    latencies_ms: Vec<u64>,
    failed: u64,
    late: u64,
    due: std::collections::HashMap<i64, std::time::Instant>,
}

/// One minute of [`PollStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollReport {
    /// Health polls finished.
    pub polls: usize,
    /// Of which failed.
    pub failed: u64,
    /// Polls that finished later than [`LATE_AFTER`] past their due time plus their round trip.
    pub late: u64,
    /// Median round trip.
    pub p50_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Slowest.
    pub max_ms: u64,
}

impl PollStats {
    /// Empty, counting from `now`.
    pub fn new(now: std::time::Instant) -> Self {
        Self {
            since: now,
            latencies_ms: Vec::new(),
            failed: 0,
            late: 0,
            due: std::collections::HashMap::new(),
        }
    }

    /// A health poll of `host` finished at `now` after `latency`; the next is due in `next`.
    pub fn health(
        &mut self,
        host: i64,
        ok: bool,
        latency: std::time::Duration,
        next: std::time::Duration,
        now: std::time::Instant,
    ) {
        self.latencies_ms
            .push(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX));
        if !ok {
            self.failed += 1;
        }
        if let Some(due) = self.due.get(&host) {
            if now > *due + latency + LATE_AFTER {
                self.late += 1;
            }
        }
        self.due.insert(host, now + next);
    }

    /// The report of the minute that ended, once a minute.
    pub fn report(&mut self, now: std::time::Instant) -> Option<PollReport> {
        if now.duration_since(self.since) < REPORT_EVERY {
            return None;
        }
        let mut l = std::mem::take(&mut self.latencies_ms);
        l.sort_unstable();
        let pick = |q: usize| {
            l.get((l.len() * q / 100).min(l.len().saturating_sub(1)))
                .copied()
        };
        let report = PollReport {
            polls: l.len(),
            failed: std::mem::take(&mut self.failed),
            late: std::mem::take(&mut self.late),
            p50_ms: pick(50).unwrap_or(0),
            p99_ms: pick(99).unwrap_or(0),
            max_ms: l.last().copied().unwrap_or(0),
        };
        self.since = now;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_stats_count_late_and_failed_polls_and_report_once_a_minute() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut s = PollStats::new(t0);
        let ms = Duration::from_millis;
        for i in 0..100u64 {
            s.health(1, i != 7, ms(i + 1), Duration::from_secs(60), t0 + ms(i));
        }
        assert_eq!(
            s.report(t0 + Duration::from_secs(59)),
            None,
            "not a minute yet"
        );
        // Host 2: due at 60 s, polled at 60 s (on time), then at 200 s (late).
        s.health(2, true, ms(3), Duration::from_secs(60), t0);
        s.health(
            2,
            true,
            ms(3),
            Duration::from_secs(60),
            t0 + Duration::from_secs(60),
        );
        s.health(
            2,
            true,
            ms(3),
            Duration::from_secs(60),
            t0 + Duration::from_secs(200),
        );
        let r = s.report(t0 + Duration::from_secs(200)).unwrap();
        assert_eq!((r.polls, r.failed, r.late), (103, 1, 1));
        assert_eq!((r.p99_ms, r.max_ms), (99, 100));
        assert_eq!(s.report(t0 + Duration::from_secs(201)), None);
    }

    fn row(name: &str, version: &str) -> PackageRow {
        PackageRow {
            host_id: 1,
            name: name.into(),
            arch: "amd64".into(),
            version: version.into(),
            status: "installed".into(),
            source: None,
        }
    }

    #[test]
    fn the_hash_ignores_order_and_sees_a_version_change() {
        let a = [row("bash", "5.2"), row("curl", "8.0")];
        let b = [row("curl", "8.0"), row("bash", "5.2")];
        assert_eq!(packages_hash(&a), packages_hash(&b));
        assert_ne!(
            packages_hash(&a),
            packages_hash(&[row("bash", "5.2"), row("curl", "8.1")])
        );
    }
}
