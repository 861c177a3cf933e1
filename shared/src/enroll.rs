//! Agent enrollment: the one-time token and the request/answer of `POST /api/v1/enroll`.
//!
//! The token an operator copies to a new host is `lpm1.<id>.<secret>.<ca fingerprint>`: the
//! manager stores only a hash of the secret; the agent uses the fingerprint (SHA-256 of the root
//! CA certificate) to verify the manager's TLS certificate, so nothing is trusted on first use.

use serde::{Deserialize, Serialize};

/// The ALPN protocol id an enrolling agent offers (before `http/1.1`). The manager's web listener
/// then presents its enrollment certificate, issued by the fleet CA that the token's fingerprint
/// names, instead of the web UI's certificate, which comes from a separate web CA so that the root
/// browsers are told to trust never vouches for an agent. HTTP/1.1 is still what is negotiated.
pub const ENROLL_ALPN: &[u8] = b"lpm-enroll/1";

/// Prefix and version of the token format.
pub const TOKEN_PREFIX: &str = "lpm1";

/// An enrollment token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// Token id (row of `enrollment_tokens`).
    pub id: i64,
    /// 32 random bytes, lower-case hex.
    pub secret: String,
    /// SHA-256 of the manager's root CA certificate, lower-case hex.
    pub ca_fingerprint: String,
}

impl EnrollmentToken {
    /// Text form.
    pub fn encode(&self) -> String {
        format!(
            "{TOKEN_PREFIX}.{}.{}.{}",
            self.id, self.secret, self.ca_fingerprint
        )
    }

    /// Parses the text form strictly (`None` for anything else).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        if parts.next()? != TOKEN_PREFIX {
            return None;
        }
        let id = parts.next()?.parse().ok()?;
        let secret = parts.next()?;
        let fp = parts.next()?;
        let hex64 = |s: &str| {
            s.len() == 64
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        (parts.next().is_none() && hex64(secret) && hex64(fp)).then(|| Self {
            id,
            secret: secret.to_owned(),
            ca_fingerprint: fp.to_owned(),
        })
    }
}

/// `POST /api/v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time token.
    pub token: String,
    /// PEM certificate signing request made on the host (its key never leaves it).
    pub csr_pem: String,
    /// The host's fully qualified name.
    pub hostname: String,
    /// Addresses the manager reaches the agent at (the first is the primary one).
    pub addresses: Vec<String>,
    /// Port of the agent's API.
    pub port: u16,
}

/// Answer of a successful enrollment (`201 Created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnrollResponse {
    /// The new host's id.
    pub host_id: crate::ids::HostId,
    /// The agent's server certificate (PEM).
    pub certificate_pem: String,
    /// The root CA certificate (PEM): client certificates must chain to it.
    pub ca_pem: String,
    /// The CA's current revocation list (PEM).
    pub crl_pem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_strictness() {
        let t = EnrollmentToken {
            id: 7,
            secret: "ab".repeat(32),
            ca_fingerprint: "0f".repeat(32),
        };
        assert_eq!(EnrollmentToken::parse(&t.encode()), Some(t.clone()));
        let text = t.encode();
        for bad in [
            String::new(),
            "lpm1".into(),
            text.replace("lpm1.", "lpm2."),
            text.replace("lpm1.7.", "lpm1.x."),
            format!("{text}.extra"),
            text.to_uppercase(),
            text.replacen(&"ab".repeat(32), &"ab".repeat(31), 1),
        ] {
            assert_eq!(EnrollmentToken::parse(&bad), None, "{bad}");
        }
    }
}
