//! patch-agent: the per-host agent of Linux Patch Manager.
//!
//! One small binary per managed host, running as root under systemd, exposing the host's package
//! manager over an HTTPS API that only holders of a client certificate from the fleet's CA, coming
//! from an allowed address, can reach.
//!
//! - [`server`]: the listener pipeline (allow-list before TLS, TLS 1.3 with client certificates).
//! - [`tls`]: certificate loading, validity rules, CRL.
//! - [`reload`]: live reload of the configuration and TLS files.
//! - [`api`]: the `/api/v1` handlers and the per-request audit record.
//! - [`jobs`]: asynchronous package jobs, rollback, exclusive mode; [`ws`]: their live events;
//!   [`jobstore`]: the job file that keeps them across restarts.
//! - [`backend`]: the `PackageBackend` trait and its apt/dpkg implementation.
//! - [`audit`]: the hash-chained JSON-lines audit log.
//! - [`config`]: layered, validated configuration.

pub mod api;
pub mod audit;
pub mod backend;
pub mod config;
pub mod csr;
pub mod enroll;
pub mod ipfilter;
pub mod jobs;
pub mod jobstore;
pub mod metrics;
pub mod openapi;
pub mod refusals;
pub mod reload;
pub mod rotate;
pub mod server;
pub mod sim;
pub mod stamp;
pub mod sysinfo;
pub mod tls;
pub mod ws;
