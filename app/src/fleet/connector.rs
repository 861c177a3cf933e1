//! How a host actor reaches its agent: the [`Connector`] trait, so the actor's timers, backoff
//! and state machine are tested with a paused clock and a scripted agent, and [`Mtls`], the real
//! one over mutual TLS with the host's pinned certificate.
//!
//! Connection policy: one TLS connection per poll, closed after it (a full TLS 1.3 handshake,
//! checked against the agent's CRL, since agents refuse session resumption). Polls are minutes
//! apart, so a kept-alive connection would mostly sit idle holding memory on both sides.

use crate::agent_client::AgentClient;
use crate::pki::manager::ManagerPki;
use futures_util::future::LocalBoxFuture;
use shared::agent::{AgentHealth, PackageList, PatchList, SystemInfo};
use std::net::SocketAddr;

/// Where a host's agent is and which certificate it must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host id.
    pub host_id: i64,
    /// Agent address.
    pub addr: SocketAddr,
    /// SHA-256 (hex) of the certificate pinned for the host.
    pub pin: Option<String>,
}

/// What one inventory poll brings back.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// System information.
    pub info: SystemInfo,
    /// Installed packages.
    pub packages: PackageList,
    /// Available updates.
    pub patches: PatchList,
}

/// Reaches agents. Errors are the text shown to people as the reason.
pub trait Connector: Send + Sync + 'static {
    /// `GET /health`.
    fn health(&self, target: &Target) -> LocalBoxFuture<'static, Result<AgentHealth, String>>;
    /// `GET /system/info`, `/packages` and `/patches`.
    fn inventory(&self, target: &Target) -> LocalBoxFuture<'static, Result<Inventory, String>>;
}

/// The real connector: the manager's current client certificate (read per connection, so a
/// rotation applies to the next poll), the fleet CA and the host's pin.
#[derive(Debug, Clone)]
pub struct Mtls {
    /// The manager's certificates.
    pub pki: ManagerPki,
}

impl Mtls {
    fn client(&self, target: &Target) -> Result<AgentClient, String> {
        AgentClient::new(
            self.pki.ca.cert_pem(),
            &self.pki.client_cert,
            &self.pki.client_key,
            target.addr,
            target.pin.as_deref(),
        )
        .map_err(|e| e.to_string())
    }
}

impl Connector for Mtls {
    fn health(&self, target: &Target) -> LocalBoxFuture<'static, Result<AgentHealth, String>> {
        let client = self.client(target);
        Box::pin(async move { client?.health().await.map_err(|e| e.to_string()) })
    }

    fn inventory(&self, target: &Target) -> LocalBoxFuture<'static, Result<Inventory, String>> {
        let client = self.client(target);
        Box::pin(async move {
            let client = client?;
            let info = client.system_info().await.map_err(|e| e.to_string())?;
            let packages = client.packages().await.map_err(|e| e.to_string())?;
            let patches = client.patches().await.map_err(|e| e.to_string())?;
            Ok(Inventory {
                info,
                packages,
                patches,
            })
        })
    }
}
