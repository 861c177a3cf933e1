//! The manager's vocabulary: the closed sets of values that cross the API — roles, certificate
//! kinds and states, host states and error codes — as enums, so that the backend and the UI
//! compare variants, never strings. Each serialises to the same lower-case word the API has
//! always used and parses back from it ([`std::str::FromStr`]).

use serde::{Deserialize, Serialize};

macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The word used on the wire and in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownWord;

            fn try_from(s: String) -> Result<Self, UnknownWord> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> Self {
                v.as_str().to_owned()
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok(Self::$variant),)+
                    other => Err(UnknownWord {
                        kind: stringify!($name),
                        word: other.chars().take(64).collect(),
                    }),
                }
            }
        }
    };
}

/// A word that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    /// Which vocabulary (`Role`, `CertKind`, …).
    pub kind: &'static str,
    /// The word (at most 64 characters of it).
    pub word: String,
}

impl std::fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a {}", self.word, self.kind)
    }
}

impl std::error::Error for UnknownWord {}

word_enum!(
    /// What a user may do: an Admin everything, an Operator the hosts of their groups.
    Role {
        /// Manages everything.
        Admin = "admin",
        /// Sees and acts on the hosts of their groups only.
        Operator = "operator",
    }
);

word_enum!(
    /// What an issued certificate is for.
    CertKind {
        /// The root certificate itself.
        Ca = "ca",
        /// An agent's TLS server certificate.
        Agent = "agent",
        /// The manager's client certificate for agents.
        ManagerClient = "manager_client",
        /// The web UI's server certificate (issued by the web CA).
        Web = "web",
        /// The root of the web CA, which browsers are told to trust; it signs only the web UI's
        /// certificate.
        WebCa = "web_ca",
        /// The manager's server certificate for enrolling agents (issued by the fleet CA, shown
        /// only to clients that ask for it by ALPN).
        Enrollment = "enrollment",
    }
);

word_enum!(
    /// Where a certificate stands today.
    CertState {
        /// In force, far from expiry.
        Valid = "valid",
        /// In force, within the renewal window.
        Expiring = "expiring",
        /// Past its end of validity.
        Expired = "expired",
        /// Revoked (on the CRL).
        Revoked = "revoked",
        /// Replaced by a newer certificate for the same holder.
        Superseded = "superseded",
    }
);

word_enum!(
    /// A managed host's state as the manager last saw it.
    HostStatus {
        /// Not polled yet.
        Unknown = "unknown",
        /// The agent answers and reports no problem.
        Healthy = "healthy",
        /// The agent answers but reports a problem.
        Degraded = "degraded",
        /// The agent does not answer.
        Unreachable = "unreachable",
    }
);

word_enum!(
    /// A kind of second factor.
    FactorKind {
        /// An authenticator app (TOTP).
        Totp = "totp",
        /// A security key or passkey (WebAuthn).
        Webauthn = "webauthn",
    }
);

word_enum!(
    /// The stable `code` of an error envelope: what went wrong, for programs (the message is for
    /// people).
    ErrorCode {
        /// No such resource (or not visible to the caller).
        NotFound = "not_found",
        /// A field failed validation; `details.field` names it.
        ValidationFailed = "validation_failed",
        /// The body is not valid JSON for the endpoint.
        InvalidJson = "invalid_json",
        /// The body could not be read.
        InvalidBody = "invalid_body",
        /// The query string is invalid.
        InvalidQuery = "invalid_query",
        /// A path parameter is invalid.
        InvalidPath = "invalid_path",
        /// The request could not be understood.
        BadRequest = "bad_request",
        /// A certificate signing request that does not parse or is not self-signed.
        InvalidCsr = "invalid_csr",
        /// A second-factor credential that does not parse.
        InvalidCredential = "invalid_credential",
        /// A security key's answer was rejected.
        WebauthnRejected = "webauthn_rejected",
        /// A wrong one-time code.
        WrongCode = "wrong_code",
        /// The body is larger than the limit.
        PayloadTooLarge = "payload_too_large",
        /// The body is not JSON.
        UnsupportedMediaType = "unsupported_media_type",
        /// The method is not allowed on the resource.
        MethodNotAllowed = "method_not_allowed",
        /// Sign-in required, or credentials refused.
        Unauthorized = "unauthorized",
        /// Signed in but not allowed.
        Forbidden = "forbidden",
        /// The source address is not on the manager's allow-list.
        AddressNotAllowed = "address_not_allowed",
        /// Too many attempts; `details.retry_after_secs` says how long to wait.
        TooManyRequests = "too_many_requests",
        /// Conflicts with existing data.
        Conflict = "conflict",
        /// A one-time step that is already complete.
        Gone = "gone",
        /// An agent could not be reached or refused.
        AgentError = "agent_error",
        /// The identity provider could not be reached or answered badly.
        IdentityProviderError = "identity_provider_error",
        /// The database is unavailable; nothing was applied.
        DatabaseUnavailable = "database_unavailable",
        /// A stored setting cannot be read; `details.key` names it.
        SettingUnreadable = "setting_unreadable",
        /// Something failed on the server.
        InternalError = "internal_error",
        /// Any other failed request.
        RequestFailed = "request_failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_on_the_wire_and_as_text() {
        for r in Role::ALL {
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), *r);
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
        }
        for c in ErrorCode::ALL {
            assert_eq!(c.as_str().parse::<ErrorCode>().unwrap(), *c);
        }
        assert_eq!(CertKind::ManagerClient.as_str(), "manager_client");
        let e = "root".parse::<Role>().unwrap_err();
        assert_eq!(e.to_string(), "\"root\" is not a Role");
        assert!(serde_json::from_str::<HostStatus>("\"online\"").is_err());
    }
}
