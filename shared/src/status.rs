//! Service status as reported by `GET /status/health` and shown on the manager's front page.

use serde::{Deserialize, Serialize};

/// Overall state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Everything the service depends on answered.
    Ok,
    /// The service runs but a dependency (for instance the database) failed its check.
    Degraded,
}

/// Which database engine the manager runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DatabaseBackend {
    /// Embedded SQLite file in the data directory (the default).
    Sqlite,
    /// PostgreSQL server (production).
    Postgres,
}

impl DatabaseBackend {
    /// Human-readable name.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite (embedded)",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// Result of verifying the audit log's hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AuditChainState {
    /// Every record links to its predecessor and its hash matches its content.
    Intact {
        /// Number of records checked.
        records: u64,
    },
    /// The first record that does not verify.
    Broken {
        /// Id of that record (or of the first missing id).
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Answer of `GET /status/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HealthReport {
    /// Overall state.
    pub status: ServiceState,
    /// Manager version (crate version).
    pub version: String,
    /// Database engine in use.
    pub database: DatabaseBackend,
    /// Whether a `SELECT 1` round trip to the database succeeded.
    pub database_ok: bool,
    /// Seconds since the manager process started.
    pub uptime_seconds: u64,
}

/// What the manager's front page shows about the installation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SystemOverview {
    /// Health as in `/status/health`.
    pub health: HealthReport,
    /// Managed hosts registered.
    pub hosts: i64,
    /// Host groups defined.
    pub groups: i64,
    /// User accounts.
    pub users: i64,
    /// Records in the audit log.
    pub audit_records: i64,
    /// State of the audit chain at the last verification.
    pub audit_chain: AuditChainState,
    /// The hosts the caller may see, summed up.
    pub fleet: FleetSummary,
    /// Patch jobs of the caller's hosts that are queued or running.
    pub active_jobs: i64,
    /// The caller's maintenance windows open now or opening next (at most five, soonest first).
    pub upcoming_windows: Vec<crate::windows::WindowInfo>,
}

/// Health and patch state of the hosts a user may see (the dashboard).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FleetSummary {
    /// Hosts whose agent answers with no problem.
    pub healthy: i64,
    /// Hosts whose agent answers and reports a problem.
    pub degraded: i64,
    /// Hosts whose agent does not answer.
    pub unreachable: i64,
    /// Hosts not polled yet.
    pub unknown: i64,
    /// Compliant hosts: inventoried, and no security update pending.
    pub compliant: i64,
    /// Hosts with at least one security update pending.
    pub with_security_updates: i64,
    /// Pending updates, all hosts together.
    pub pending_updates: i64,
    /// Pending security updates, all hosts together.
    pub pending_security_updates: i64,
    /// Hosts that need a reboot.
    pub reboot_required: i64,
    /// The same per group the user may see, by name.
    pub groups: Vec<GroupSummary>,
}

/// One group's line of the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupSummary {
    /// Group name.
    pub name: String,
    /// Its hosts.
    pub hosts: i64,
    /// Compliant hosts among them.
    pub compliant: i64,
    /// Unreachable hosts among them.
    pub unreachable: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_state_is_tagged() {
        let s = AuditChainState::Broken {
            id: 4,
            reason: "row hash mismatch".into(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "broken");
        assert_eq!(v["id"], 4);
    }
}
