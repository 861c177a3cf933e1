//! patch-agent: the per-host agent of Linux Patch Manager.
//!
//! This crate currently holds the agent's configuration ([`config`]), shared with the manager's
//! layered loader; the HTTPS API, package backends, jobs and audit log are built on it (see
//! `shared/spec/agent.md` in the project's specifications).

pub mod config;
