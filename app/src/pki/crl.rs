//! The certificate revocation list and its delivery to every agent.
//!
//! Revocation only bites where the CRL has arrived, and an agent refuses every client once its
//! CRL's nextUpdate has passed (so a revoked manager key cannot live on at an agent that missed
//! updates). Both halves are kept here:
//!
//! - **Issue.** The CRL in force is the newest row of `crls`; one is issued on first need, on
//!   every revocation or rotation, and a day after the last one ([`needs_refresh`]), each valid
//!   for `pki.crl_validity_hours` (a week by default). An agent therefore has six days of
//!   unreachability before its CRL expires.
//! - **Deliver.** The [`Courier`] task keeps pushing the current CRL to every agent that has not
//!   acknowledged it (`crl_deliveries`), at most [`MAX_CONCURRENT`] at once, retrying with
//!   exponential backoff ([`backoff`]) until each has. A revocation returns at once; the
//!   Certificates page shows the delivery per agent ([`status`]). An Admin's "retry now" clears
//!   every backoff.
//!
//! CRL contents use the system time (agents check them against their own clocks); the courier's
//! bookkeeping uses the application clock.

use crate::audit::Requester;
use crate::clock::rfc3339;
use crate::db::audit::Outcome;
use crate::db::crls::{self as store, CrlRow, NewCrl};
use crate::db::{certificates, DbError};
use crate::pki::rotation::{client, RotationError};
use crate::state::AppState;
use chrono::{Duration, NaiveDateTime};
use futures_util::StreamExt;
use shared::fleet::{CrlDelivery, CrlStatus};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Agents pushed to at once.
pub const MAX_CONCURRENT: usize = 16;
/// Longest wait between two rounds when nothing asks for one sooner.
pub const ROUND_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest backoff between two attempts at one agent.
pub const MAX_BACKOFF_SECS: i64 = 15 * 60;
/// How long after issue a CRL is replaced (or half its validity, if that is shorter).
pub const REFRESH_AFTER_HOURS: i64 = 24;

/// The delivery task's handle, kept in the application state.
#[derive(Debug, Default)]
pub struct Courier {
    kick: tokio::sync::Notify,
    /// Serialises issuing, so two revocations cannot compute the same CRL number.
    issuing: tokio::sync::Mutex<()>,
    rounds: tokio::sync::watch::Sender<u64>,
}

impl Courier {
    /// Asks for a delivery round now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Completed delivery rounds (tests and the status page wait on it).
    pub fn rounds(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rounds.subscribe()
    }
}

/// Wait before attempt `failures + 1` after `failures` failed ones: 30 s, doubling, at most
/// [`MAX_BACKOFF_SECS`].
pub fn backoff(failures: i64) -> Duration {
    let exp = u32::try_from(failures.clamp(1, 16) - 1).unwrap_or(0);
    Duration::seconds((30_i64 << exp).min(MAX_BACKOFF_SECS))
}

/// Whether the CRL issued at `this_update` is due for replacement at `now` (system time): after
/// a day, or after half its validity if that is shorter.
pub fn needs_refresh(this_update: NaiveDateTime, now: NaiveDateTime, validity_hours: i64) -> bool {
    let after = Duration::hours(REFRESH_AFTER_HOURS).min(Duration::minutes(validity_hours * 30));
    now - this_update >= after
}

fn system_now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn db_inconsistent(e: impl ToString) -> RotationError {
    RotationError::Db(DbError::Inconsistent(e.to_string()))
}

/// Issues a new CRL listing every revoked, unexpired certificate, stores it, clears the backoffs
/// and wakes the courier.
pub async fn issue(state: &AppState, reason: &str) -> Result<CrlRow, RotationError> {
    let _one_at_a_time = state.crl.issuing.lock().await;
    let now = state.clock.now();
    let (revoked, previous) = state
        .db
        .run(move |c| Ok((certificates::revoked(c, now)?, store::current(c)?)))
        .await?;
    let wanted = i64::try_from(crate::pki::crl_number(system_now())).unwrap_or(i64::MAX);
    let number = previous.map_or(wanted, |p| wanted.max(p.number + 1));
    let signed = state.pki.ca.crl(
        u64::try_from(number).map_err(db_inconsistent)?,
        &revoked,
        Duration::hours(state.config.pki.crl_validity_hours),
    )?;
    let count = i64::try_from(revoked.len()).map_err(db_inconsistent)?;
    let reason_owned = reason.to_owned();
    let row = state
        .db
        .run(move |c| {
            let row = store::insert(
                c,
                &NewCrl {
                    number,
                    pem: &signed.pem,
                    this_update: signed.this_update,
                    next_update: signed.next_update,
                    revoked_count: count,
                    reason: &reason_owned,
                    created_at: now,
                },
            )?;
            store::add_missing(c)?;
            store::retry_all_now(c)?;
            Ok(row)
        })
        .await?;
    let entry = Requester::named("system", None)
        .success("crl.issued")
        .target(format!("crl:{number}"))
        .details(serde_json::json!({
            "number": number, "revoked": count, "reason": reason,
            "next_update": rfc3339(row.next_update),
        }));
    state.audit.note(entry).await;
    state.crl.kick();
    Ok(row)
}

/// The CRL in force, issuing the first one if none exists.
pub async fn current(state: &AppState) -> Result<CrlRow, RotationError> {
    match state.db.run(store::current).await? {
        Some(row) => Ok(row),
        None => issue(state, "first").await,
    }
}

/// Issues a new CRL if the one in force is due for replacement, predates a revocation (its
/// issue failed after the revocation was stored), or none exists.
pub async fn refresh_if_due(state: &AppState) -> Result<Option<CrlRow>, RotationError> {
    let validity = state.config.pki.crl_validity_hours;
    let (current, latest) = state
        .db
        .run(|c| Ok((store::current(c)?, certificates::latest_revocation(c)?)))
        .await?;
    match current {
        Some(row) if latest.is_some_and(|t| t > row.created_at) => {
            issue(state, "revocation").await.map(Some)
        }
        Some(row) if !needs_refresh(row.this_update, system_now(), validity) => Ok(None),
        Some(_) => issue(state, "refresh").await.map(Some),
        None => issue(state, "first").await.map(Some),
    }
}

/// Pushes the current CRL to one agent.
async fn push(
    state: &AppState,
    agent: &crate::db::hosts::AgentAddressRow,
    pem: &str,
) -> Result<(), String> {
    let ip: IpAddr = agent
        .ip_address
        .parse()
        .map_err(|_| "the host's address is not an IP address".to_owned())?;
    let port = u16::try_from(agent.agent_port).map_err(|_| "bad agent port".to_owned())?;
    let agent_client = client(
        state,
        SocketAddr::new(ip, port),
        agent.cert_fingerprint.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    agent_client
        .push_crl(pem)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One agent's push: its host id and whether it took the CRL.
type PushOutcome = (i64, Result<(), String>);

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Agents that acknowledged the current CRL in this round.
    pub delivered: Vec<i64>,
    /// Agents that did not, with the reason.
    pub failed: Vec<(i64, String)>,
}

/// One delivery round: every agent that lacks the current CRL and is not backing off gets it,
/// [`MAX_CONCURRENT`] at a time. Successes and first failures per CRL are audited (later
/// failures of the same agent only update its row, so a dead host does not flood the log).
pub async fn deliver_round(state: &AppState) -> Result<Round, RotationError> {
    let crl = current(state).await?;
    let number = crl.number;
    let now = state.clock.now();
    let due = state
        .db
        .run(move |c| {
            store::add_missing(c)?;
            store::due(c, number, now)
        })
        .await?;
    let pem: Arc<str> = crl.pem.into();
    // Each outcome is written as soon as it is known, so the Certificates page follows a long
    // round agent by agent.
    let outcomes: Vec<Result<PushOutcome, RotationError>> = futures_util::stream::iter(due)
        .map(|(delivery, agent)| {
            let pem = pem.clone();
            async move {
                let result = push(state, &agent, &pem).await;
                record(state, &delivery, agent.id, number, &result).await?;
                Ok((agent.id, result))
            }
        })
        .buffer_unordered(MAX_CONCURRENT)
        .collect()
        .await;
    let mut round = Round::default();
    for outcome in outcomes {
        match outcome? {
            (host_id, Ok(())) => round.delivered.push(host_id),
            (host_id, Err(error)) => round.failed.push((host_id, error)),
        }
    }
    if !round.delivered.is_empty() {
        let entry = Requester::named("system", None)
            .success("crl.delivered")
            .target(format!("crl:{number}"))
            .details(serde_json::json!({
                "number": number, "agents": round.delivered.len(),
                "hosts": round.delivered.iter().take(50).collect::<Vec<_>>(),
            }));
        state.audit.note(entry).await;
    }
    Ok(round)
}

/// Writes one push's outcome: acknowledged, or failed with the next attempt after the backoff
/// (the first failure per CRL and agent is audited; later ones only update the row).
async fn record(
    state: &AppState,
    delivery: &store::DeliveryRow,
    host_id: i64,
    number: i64,
    result: &Result<(), String>,
) -> Result<(), RotationError> {
    let now = state.clock.now();
    match result {
        Ok(()) => {
            state
                .db
                .run(move |c| store::acknowledge(c, host_id, number, now))
                .await?;
        }
        Err(error) => {
            let next = now + backoff(delivery.attempts + 1);
            let e = error.clone();
            state
                .db
                .run(move |c| store::failed(c, host_id, &e, next, now))
                .await?;
            if delivery.attempts == 0 {
                let entry = Requester::named("system", None)
                    .entry("crl.delivery_failed", Outcome::Failure)
                    .target(format!("host:{host_id}"))
                    .details(serde_json::json!({
                        "number": number, "error": error,
                        "next_attempt_at": rfc3339(next),
                    }));
                state.audit.note(entry).await;
            }
        }
    }
    Ok(())
}

/// The CRL in force and its delivery, for the Certificates page.
pub async fn status(state: &AppState) -> Result<CrlStatus, RotationError> {
    let crl = current(state).await?;
    let rows = state
        .db
        .run(|c| {
            store::add_missing(c)?;
            store::all(c)
        })
        .await?;
    let agents = rows.len();
    let pending: Vec<CrlDelivery> = rows
        .into_iter()
        .filter(|(d, _)| d.acked_number.is_none_or(|n| n < crl.number))
        .map(|(d, a)| CrlDelivery {
            host_id: a.id.into(),
            host: a.fqdn.unwrap_or(a.display_name),
            acked_number: d.acked_number,
            attempts: d.attempts,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at.map(rfc3339),
        })
        .collect();
    Ok(CrlStatus {
        number: crl.number,
        this_update: rfc3339(crl.this_update),
        next_update: rfc3339(crl.next_update),
        revoked: crl.revoked_count,
        reason: crl.reason,
        agents,
        delivered: agents - pending.len(),
        pending,
    })
}

/// Clears every backoff and wakes the courier; answers the status.
pub async fn retry_now(state: &AppState) -> Result<CrlStatus, RotationError> {
    state.db.run(store::retry_all_now).await?;
    state.crl.kick();
    status(state).await
}

/// Called when an agent has just answered the manager (a renewal now; every poll once host
/// actors supervise the fleet): if it was backing off a CRL delivery, it is tried in the next
/// round instead of at the end of its backoff.
pub async fn contact_succeeded(state: &AppState, host_id: i64) -> Result<(), RotationError> {
    if state
        .db
        .run(move |c| store::retry_host_now(c, host_id))
        .await?
    {
        state.crl.kick();
    }
    Ok(())
}

/// Spawns the courier on the current runtime: a round at start, after every kick, and at least
/// every [`ROUND_INTERVAL`]; before each, a new CRL if the one in force is a day old.
pub fn spawn(state: AppState) {
    actix_web::rt::spawn(async move {
        loop {
            if let Err(e) = refresh_if_due(&state).await {
                tracing::warn!(error = %e, "issuing the CRL failed; will retry");
            }
            match deliver_round(&state).await {
                Ok(round) if !round.failed.is_empty() => {
                    tracing::warn!(
                        delivered = round.delivered.len(),
                        failed = round.failed.len(),
                        "some agents did not take the CRL; retrying with backoff"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "CRL delivery round failed"),
            }
            state.crl.rounds.send_modify(|n| *n += 1);
            tokio::select! {
                () = state.crl.kick.notified() => {}
                () = tokio::time::sleep(ROUND_INTERVAL) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 30)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            + Duration::hours(h)
    }

    #[test]
    fn a_crl_is_replaced_after_a_day_or_half_its_validity() {
        assert!(!needs_refresh(at(0), at(23), 168));
        assert!(needs_refresh(at(0), at(24), 168));
        // A short validity is refreshed at half-life, long before agents would refuse it.
        assert!(!needs_refresh(at(0), at(5), 12));
        assert!(needs_refresh(at(0), at(6), 12));
    }

    #[test]
    fn backoff_doubles_from_30_seconds_to_15_minutes() {
        let secs: Vec<i64> = (1..=8).map(|n| backoff(n).num_seconds()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(backoff(0).num_seconds(), 30);
        assert_eq!(backoff(i64::MAX).num_seconds(), 900);
    }
}
