//! Writes down what the host actors learn, in the order they learn it, off their threads: health
//! and state changes to the host rows, inventories in one transaction each (an unchanged package
//! list, recognised by its hash, is not rewritten), state changes published on the event hub. A
//! host that answers again also gets any CRL it is missing without waiting for its backoff
//! (checked in the same database trip as its health).

use super::actor::Update;
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

/// Records one update.
pub async fn record(state: &AppState, update: Update) -> Result<(), DbError> {
    let now = state.clock.now();
    match update {
        Update::Health {
            host_id,
            outcome,
            status,
            reason,
            changed,
            latency,
            ..
        } => {
            let details = outcome
                .as_ref()
                .ok()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| DbError::Inconsistent(e.to_string()))?;
            let (status_c, reason_c, reachable) = (status, reason.clone(), outcome.is_ok());
            let report = outcome.ok();
            let written = state
                .db
                .run(move |c| {
                    let row = report
                        .as_ref()
                        .zip(details.as_deref())
                        .map(|(r, d)| HealthRow {
                            host_id,
                            checked_at: now,
                            agent_status: &r.status,
                            backend: Some(&r.backend),
                            jobs_running: i64::from(r.jobs_running),
                            jobs_queued: i64::from(r.jobs_queued),
                            exclusive_mode: r.exclusive_mode,
                            cert_expires_at: rfc3339_to_naive(&r.cert_not_after),
                            uptime_seconds: None,
                            latency_ms: i64::try_from(latency.as_millis()).ok(),
                            details_json: d,
                        });
                    let exists = host_state::record_health(
                        c,
                        &HealthRecord {
                            host_id,
                            status: status_c.as_str(),
                            reason: reason_c.as_deref(),
                            changed,
                            reachable,
                            at: now,
                            report: row,
                        },
                    )?;
                    // In the same trip: an agent that answers gets a CRL it is missing without
                    // waiting for its backoff.
                    let crl_due =
                        exists && reachable && crate::db::crls::retry_host_now(c, host_id)?;
                    Ok((exists, crl_due))
                })
                .await?;
            let (exists, crl_due) = written;
            if !exists {
                return Ok(());
            }
            if crl_due {
                state.crl.kick();
            }
            if changed {
                tracing::info!(host_id, status = status.as_str(), reason = ?reason, "host state changed");
                // Nobody listening is fine: the state is in the database.
                let _ = state.fleet.events.send(HostStateEvent {
                    host_id: host_id.into(),
                    status,
                    reason,
                    at: crate::clock::rfc3339(now),
                });
            }
            Ok(())
        }
        Update::Inventory {
            host_id,
            outcome: Ok(inventory),
        } => {
            let stored = store(state, host_id, *inventory, now).await;
            if let Err(e) = &stored {
                let _ = state.fleet.inventories.send((host_id, Err(e.to_string())));
            }
            stored
        }
        Update::Inventory {
            host_id,
            outcome: Err(e),
        } => {
            tracing::warn!(host_id, error = %e, "inventory poll failed; retried after the next health poll");
            let _ = state.fleet.inventories.send((host_id, Err(e)));
            Ok(())
        }
    }
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

/// Spawns the recorder on the current runtime; it ends when every actor is gone.
pub fn spawn(state: AppState, mut updates: UnboundedReceiver<Update>) {
    actix_web::rt::spawn(async move {
        while let Some(update) = updates.recv().await {
            if let Err(e) = record(&state, update).await {
                tracing::warn!(error = %e, "recording a host poll failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
