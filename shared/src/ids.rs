//! Identifier newtypes, so a host id can never be passed where a job id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    )*};
}

id_type!(
    /// A managed host (row of `hosts`).
    HostId,
    /// A host group (row of `host_groups`).
    GroupId,
    /// A user account (row of `users`).
    UserId,
    /// A patch job (row of `patch_jobs`).
    JobId,
    /// A maintenance window (row of `maintenance_windows`).
    WindowId,
    /// An issued certificate (row of `certificates`).
    CertificateId,
    /// A record of the hash-chained audit log (row of `audit_log`); ids are contiguous from 1.
    AuditId,
    /// A CIDR discovery run (row of `discovery_runs`).
    DiscoveryRunId,
    /// A one-time enrollment token (row of `enrollment_tokens`).
    EnrollmentTokenId,
    /// A second factor of a user (row of `mfa_credentials`).
    CredentialId,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialise_as_bare_numbers() {
        assert_eq!(serde_json::to_string(&HostId(42)).unwrap(), "42");
        let j: JobId = serde_json::from_str("7").unwrap();
        assert_eq!(j, JobId(7));
        assert_eq!(AuditId(3).to_string(), "3");
    }
}
