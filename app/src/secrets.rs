//! Encryption of secrets the manager must be able to read back (TOTP seeds): AES-256-GCM with a
//! key kept in `<data>/secrets.key` (0600, made on first start). A database dump alone then reveals
//! no second factor. Each sealed value is bound to its purpose and owner through the associated
//! data, so a ciphertext copied into another user's row does not open.
//!
//! The same key, through a derived HMAC-SHA256 key, makes keyed digests ([`SecretBox::digest`]):
//! values the manager only ever compares (recovery codes, names typed at failed sign-ins) are
//! stored as digests that a database dump alone cannot test guesses against.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

/// File name of the key in the data directory.
pub const KEY_FILE: &str = "secrets.key";
const VERSION: &str = "v1";

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file is missing, malformed or readable by others.
    #[error("secrets key {path}: {reason}")]
    Key {
        /// Path of the key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The value was not sealed by this key for this purpose, or was altered.
    #[error("sealed value cannot be opened (wrong key, wrong owner or altered)")]
    Open,
    /// The random generator failed.
    #[error("random generator failed")]
    Random,
}

/// The manager's secrets key.
pub struct SecretBox {
    key: LessSafeKey,
    mac: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Loads `<dir>/secrets.key`, creating it (0600) when absent. Refuses a key file that group
    /// or others can read.
    pub fn load_or_create(dir: &Path) -> Result<Self, SecretError> {
        let path = dir.join(KEY_FILE);
        let err = |reason: String| SecretError::Key {
            path: path.display().to_string(),
            reason,
        };
        let rng = SystemRandom::new();
        let bytes = shared::files::load_or_create_secret(&path, || {
            let mut k = [0u8; 32];
            rng.fill(&mut k)
                .map_err(|_| "random generator failed".to_owned())?;
            Ok(k.to_vec())
        })
        .map_err(err)?;
        let unbound =
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| err("not a 256-bit key".into()))?;
        // A separate key for digests, derived so that sealing and digests never share a key.
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            b"patch-manager keyed digests v1",
        );
        Ok(Self {
            key: LessSafeKey::new(unbound),
            mac: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            rng,
        })
    }

    /// Keyed digest (HMAC-SHA256, hex) of `data` for `context` (for example `recovery-code`):
    /// equal inputs give equal digests under this installation's key only.
    pub fn digest(&self, context: &str, data: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.mac);
        ctx.update(context.as_bytes());
        ctx.update(&[0]);
        ctx.update(data);
        hex::encode(ctx.sign().as_ref())
    }

    /// Encrypts `plain` for `context` (for example `totp:user:7`).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Open)?;
        Ok(format!(
            "{VERSION}.{}.{}",
            hex::encode(nonce),
            hex::encode(buf)
        ))
    }

    /// Decrypts a value sealed for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(n), Some(c), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Open);
        };
        let nonce: [u8; NONCE_LEN] = hex::decode(n)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SecretError::Open)?;
        let mut buf = hex::decode(c).map_err(|_| SecretError::Open)?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seals_opens_and_binds_to_context() {
        let dir = tempfile::tempdir().unwrap();
        let b = SecretBox::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let s = b.seal("totp:user:1", b"seed").unwrap();
        assert_eq!(b.open("totp:user:1", &s).unwrap(), b"seed");
        assert!(b.open("totp:user:2", &s).is_err(), "other owner");
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push(if s.ends_with('0') { '1' } else { '0' });
        assert!(b.open("totp:user:1", &tampered).is_err(), "altered");
        // The same key is read back on the next start.
        let again = SecretBox::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open("totp:user:1", &s).unwrap(), b"seed");
        // A key others can read is refused.
        std::fs::set_permissions(
            dir.path().join(KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(SecretBox::load_or_create(dir.path()).is_err());
    }
}
