//! Everything about certificates, by capability.
//!
//! - [`ca`]: the manager's internal certificate authority (rcgen): the root, issuing from CSRs or
//!   with new keys, CRLs. Its items are re-exported here (`crate::pki::Ca`, …).
//! - [`manager`]: the manager's own certificates, prepared at start (client certificate for
//!   agents, web TLS certificate) and the rustls configuration of the web listener.
//! - [`renewal`]: renewal of agent certificates through the agents (on request and by the
//!   periodic check).
//! - [`rotation`]: rotation of the manager's client certificate, revocation with a CRL pushed to
//!   every agent, and the mutual-TLS client the manager uses to reach agents.
//! - [`enrollment`]: one-time enrollment tokens (created in one place for the API and the CLI)
//!   and the enrollment of a new host behind `POST /api/v1/enroll`.
//! - [`crl`]: the CRL in force (issued on revocation and daily) and its delivery to every agent
//!   by a background courier, with per-agent progress.
//! - [`certificates`]: the certificate service of the API: listing with expiry state, renewal of
//!   a host's certificate, revocation by id.
//!
//! Rows live in `crate::db::{certificates, enrollment}`; this module holds the rules, the HTTP
//! handlers in `crate::api::{certificates, enroll, ca}` only parse and respond.

pub mod ca;
pub mod certificates;
pub mod crl;
pub mod enrollment;
pub mod manager;
pub mod renewal;
pub mod rotation;

pub use ca::{
    crl_number, describe, fingerprint_of_pem, not_after, sans_of, valid_dns_name, Ca, CertKind,
    Issued, PkiError, San, SignedCrl, MAX_VALIDITY_DAYS, ROOT_VALIDITY_DAYS,
};
