//! Short-lived access tokens: JWTs signed with Ed25519 (EdDSA), 15 minutes, with key rotation.
//!
//! A signing key signs for [`KEY_SIGNING_LIFETIME`]; a new one is made when the current one runs
//! out, and retired keys stay valid for verification for one more [`ACCESS_TTL`], so no token is
//! cut short by a rotation. Keys live in `signing_keys` so every manager process and restart
//! shares them. Verification accepts EdDSA only (the algorithm in the header is never trusted),
//! requires a known `kid`, and checks issuer, audience and expiry.

use crate::db::signing_keys::{self as keys, NewSigningKey};
use crate::db::{DbConnection, DbError};
use crate::secrets::SecretBox;
use chrono::{Duration, NaiveDateTime};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Lifetime of an access token.
pub const ACCESS_TTL: Duration = Duration::minutes(15);
/// How long one key signs new tokens.
pub const KEY_SIGNING_LIFETIME: Duration = Duration::hours(24);
/// `iss` and `aud` of every token.
pub const ISSUER: &str = "patch-manager";

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// User id, as a string (JWT's `sub` is a string).
    pub sub: String,
    /// `admin` or `operator`.
    pub role: String,
    /// Session (refresh-token family) id, so a revoked session's tokens can be refused.
    pub sid: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expires at (seconds).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
}

impl AccessClaims {
    /// The user id in `sub`.
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token we issued or can check (format, algorithm, key, signature, claims).
    #[error("invalid token")]
    Invalid,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// The keys in force: one to sign with, all that may verify.
pub struct TokenKeys {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

/// Associated data of a sealed signing key.
fn seal_context(kid: &str) -> String {
    format!("signing_key:{kid}")
}

/// The private key as stored: sealed with the manager's secrets key (`v1.…`). A key stored in
/// the clear by an earlier version (PKCS#8 DER, starting with 0x30) is accepted and sealed in
/// place.
fn unseal(
    conn: &mut DbConnection,
    secrets: &SecretBox,
    kid: &str,
    stored: Vec<u8>,
) -> Result<Vec<u8>, DbError> {
    if stored.starts_with(b"v1.") {
        let text = String::from_utf8(stored)
            .map_err(|_| DbError::Inconsistent(format!("signing key {kid} is malformed")))?;
        return secrets
            .open(&seal_context(kid), &text)
            .map_err(|e| DbError::Inconsistent(format!("signing key {kid}: {e}")));
    }
    let sealed = secrets
        .seal(&seal_context(kid), &stored)
        .map_err(|e| DbError::Inconsistent(e.to_string()))?;
    keys::set_private(conn, kid, sealed.as_bytes())?;
    Ok(stored)
}

/// Loads the keys, making a new signing key when none may sign at `now`. Private keys are
/// sealed with `secrets` in the database.
pub fn load_keys(
    conn: &mut DbConnection,
    secrets: &SecretBox,
    now: NaiveDateTime,
) -> Result<TokenKeys, DbError> {
    crate::db::transaction(conn, |conn| {
        let (signing_kid, private) = match keys::current(conn, now)? {
            Some(key) => {
                let private = unseal(conn, secrets, &key.kid, key.private_key)?;
                (key.kid, private)
            }
            None => {
                use ring::rand::SystemRandom;
                use ring::signature::{Ed25519KeyPair, KeyPair};
                let rng = SystemRandom::new();
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| DbError::Inconsistent("Ed25519 key generation failed".into()))?;
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                    .map_err(|_| DbError::Inconsistent("Ed25519 key unreadable".into()))?;
                let kid = ulid::Ulid::new().to_string();
                let sealed = secrets
                    .seal(&seal_context(&kid), pkcs8.as_ref())
                    .map_err(|e| DbError::Inconsistent(e.to_string()))?;
                keys::insert(
                    conn,
                    &NewSigningKey {
                        kid: &kid,
                        algorithm: "EdDSA",
                        private_key: sealed.as_bytes(),
                        public_key: pair.public_key().as_ref(),
                        created_at: now,
                        not_after: now + KEY_SIGNING_LIFETIME,
                    },
                )?;
                (kid, pkcs8.as_ref().to_vec())
            }
        };
        // Every key whose tokens may still be alive.
        let verifying = keys::verifying(conn, now - ACCESS_TTL)?;
        Ok(TokenKeys {
            signing: EncodingKey::from_ed_der(&private),
            signing_kid,
            verifying: verifying
                .into_iter()
                .map(|key| (key.kid, DecodingKey::from_ed_der(&key.public_key)))
                .collect(),
        })
    })
}

impl TokenKeys {
    /// Id of the key that signs new tokens.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// Signs an access token for `user` valid from `now` for [`ACCESS_TTL`].
    pub fn issue(
        &self,
        user: i64,
        role: &str,
        session: &str,
        now: NaiveDateTime,
    ) -> Result<String, TokenError> {
        let iat = now.and_utc().timestamp();
        let claims = AccessClaims {
            sub: user.to_string(),
            role: role.to_owned(),
            sid: session.to_owned(),
            iat,
            exp: iat + ACCESS_TTL.num_seconds(),
            iss: ISSUER.into(),
            aud: ISSUER.into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing).map_err(|_| TokenError::Invalid)
    }

    /// Checks a token at `now`.
    pub fn verify(&self, token: &str, now: NaiveDateTime) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let key = header
            .kid
            .as_ref()
            .and_then(|kid| self.verifying.get(kid))
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        // Expiry is checked below against the caller's clock, without leeway.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iss", "aud", "sub"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|_| TokenError::Invalid)?;
        data.claims.user_id().ok_or(TokenError::Invalid)?;
        if data.claims.exp <= now.and_utc().timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}

/// The keys, cached for a minute so verifying a request costs no database round trip.
#[derive(Debug)]
pub struct KeyCache {
    secrets: std::sync::Arc<SecretBox>,
    inner: std::sync::RwLock<Option<(NaiveDateTime, std::sync::Arc<TokenKeys>)>>,
}

/// How long cached keys are used before they are read again.
const KEY_CACHE_TTL: Duration = Duration::seconds(60);

impl KeyCache {
    /// An empty cache whose keys are sealed with `secrets`.
    pub fn new(secrets: std::sync::Arc<SecretBox>) -> Self {
        Self {
            secrets,
            inner: std::sync::RwLock::new(None),
        }
    }

    /// The keys at `now`, reloaded (and rotated if due) when the cache is older than a minute.
    pub async fn get(
        &self,
        db: &crate::db::Database,
        now: NaiveDateTime,
    ) -> Result<std::sync::Arc<TokenKeys>, DbError> {
        if let Ok(guard) = self.inner.read() {
            if let Some((at, keys)) = guard.as_ref() {
                if *at + KEY_CACHE_TTL > now && *at <= now {
                    return Ok(keys.clone());
                }
            }
        }
        let secrets = self.secrets.clone();
        let keys = std::sync::Arc::new(db.run(move |c| load_keys(c, &secrets, now)).await?);
        if let Ok(mut guard) = self.inner.write() {
            *guard = Some((now, keys.clone()));
        }
        Ok(keys)
    }
}
