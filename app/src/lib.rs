//! patch-manager: the central manager of Linux Patch Manager.
//!
//! An actix-based monolith. [`server::start`] opens the database ([`db`], SQLite embedded or
//! PostgreSQL), starts the single audit-chain writer ([`audit`]) and serves the JSON API ([`api`])
//! and the server-rendered Leptos UI (crate `frontend-leptos`) behind one HTTP edge ([`http`]:
//! request ids, allow-list, access gate, the JSON envelope for every failure). Configuration is
//! layered and validated in [`config`].
//!
//! `main.rs` only parses the command line and calls into this library, so integration tests start
//! the very same server on `127.0.0.1:0`.

pub mod agent_client;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod clock;
pub mod config;
pub mod db;
pub mod deploy;
pub mod error;
pub mod fleet;
pub mod http;
pub mod metrics;
pub mod pki;
pub mod secrets;
pub mod server;
pub mod settings;
pub mod state;
pub mod telemetry;
