//! Types that cross a process boundary in Linux Patch Manager.
//!
//! The manager's backend, its Leptos/WebAssembly frontend and the patch-agent all depend on this
//! crate so that a field renamed on one side fails to compile on the other instead of failing at
//! run time. It has no I/O and compiles to `wasm32-unknown-unknown` with default features.

pub mod agent;
pub mod api;
pub mod audit;
pub mod auth;
#[cfg(feature = "config")]
pub mod config;
pub mod csp;
pub mod enroll;
pub mod error;
#[cfg(feature = "config")]
pub mod files;
pub mod fleet;
pub mod ids;
pub mod jobs;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod netfilter;
#[cfg(feature = "schema")]
pub mod openapi;
pub mod status;
pub mod vocab;
pub mod windows;

pub use error::{ErrorBody, ErrorEnvelope};
