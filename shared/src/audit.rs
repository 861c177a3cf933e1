//! The audit log as the API shows it: `GET /api/v1/audit` (Admins), filtered and paged, with the
//! hash chain's verification state.

use crate::ids::HostId;
use crate::status::AuditChainState;
use serde::{Deserialize, Serialize};

/// Largest page the API answers.
pub const MAX_PER_PAGE: u32 = 200;
/// Records per page when none is asked for.
pub const DEFAULT_PER_PAGE: u32 = 50;

/// `GET /api/v1/audit?…`: every field optional; the filters combine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Who acted: a user name, or an actor exactly as recorded (`user:3`, `system`, `cli`).
    #[serde(default)]
    pub actor: Option<String>,
    /// What was done: an action (`user.login`) or a family of them ending in a dot
    /// (`user.` for every user action).
    #[serde(default)]
    pub action: Option<String>,
    /// Records about this host (target `host:<id>`).
    #[serde(default)]
    pub host: Option<HostId>,
    /// From this time on (RFC 3339, or a date `2026-11-30` meaning its start, UTC).
    #[serde(default)]
    pub since: Option<String>,
    /// Before this time (RFC 3339, or a date meaning the end of that day, UTC).
    #[serde(default)]
    pub until: Option<String>,
    /// Page, from 1 (newest records first).
    #[serde(default)]
    pub page: Option<u32>,
    /// Records per page (1 to 200; 50 when absent).
    #[serde(default)]
    pub per_page: Option<u32>,
}

impl AuditQuery {
    /// The query string (`?…`, empty when nothing is set), values percent-encoded.
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        let text = [
            ("actor", &self.actor),
            ("action", &self.action),
            ("since", &self.since),
            ("until", &self.until),
        ];
        for (key, value) in text {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{key}={}", crate::api::encode_component(v)));
            }
        }
        if let Some(h) = self.host {
            parts.push(format!("host={h}"));
        }
        if let Some(p) = self.page {
            parts.push(format!("page={p}"));
        }
        if let Some(p) = self.per_page {
            parts.push(format!("per_page={p}"));
        }
        crate::api::join_query(&parts)
    }
}

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who: `user:<id>`, `system`, `cli`, `enrollment`, `anonymous`, an agent.
    pub actor: String,
    /// The user name behind a `user:<id>` actor, while the account exists.
    pub actor_name: Option<String>,
    /// What (`config.changed`, `user.login`).
    pub action: String,
    /// On what (`host:12`, `user:3`), if anything.
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Structured details.
    pub details: serde_json::Value,
    /// Client address, when a request caused it.
    pub source_ip: Option<String>,
    /// Request id, when a request caused it (matches the server's log lines).
    pub request_id: Option<String>,
}

/// One page of the audit log and the chain's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditPage {
    /// Matching records, newest first.
    pub entries: Vec<AuditEntry>,
    /// How many records match the filters.
    pub total: i64,
    /// This page, from 1.
    pub page: u32,
    /// Records per page.
    pub per_page: u32,
    /// Records in the whole log.
    pub records: i64,
    /// The chain's state, verified up to the newest record when this page was read.
    pub chain: AuditChainState,
}
