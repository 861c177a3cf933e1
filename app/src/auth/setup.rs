//! First run: no default password, ever. On a database without users the manager makes a
//! one-time setup token, prints it once in the log and writes it to `<data>/setup-token` (0600).
//! `POST /api/v1/setup` with that token creates the first Admin; the token is then dead and the
//! file removed. A restart before setup reuses the file (and does not print the token again).

use crate::db::{Database, DbError};
use chrono::NaiveDateTime;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Mutex;

/// File name of the token in the data directory.
pub const TOKEN_FILE: &str = "setup-token";

/// Why setup was refused.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Setup is done (or was never needed).
    #[error("setup is already complete")]
    Completed,
    /// Wrong token.
    #[error("invalid setup token")]
    BadToken,
    /// Input rejected.
    #[error("{0}")]
    Invalid(String),
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Hashing or file system.
    #[error("{0}")]
    Internal(String),
}

/// The pending first-run setup, if any.
#[derive(Debug)]
pub struct SetupGate {
    token_hash: Mutex<Option<String>>,
    file: PathBuf,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

impl SetupGate {
    /// Opens the gate on a database without users; closes (and cleans up) otherwise.
    pub async fn prepare(db: &Database, data_dir: &std::path::Path) -> Result<Self, SetupError> {
        let file = data_dir.join(TOKEN_FILE);
        let users: i64 = db.run(crate::db::users::count).await?;
        if users > 0 {
            let _ = std::fs::remove_file(&file);
            return Ok(Self {
                token_hash: Mutex::new(None),
                file,
            });
        }
        let token = match std::fs::read_to_string(&file) {
            Ok(t) if !t.trim().is_empty() => {
                tracing::warn!(file = %file.display(), "first-run setup pending: the setup token is in this file");
                t.trim().to_owned()
            }
            _ => {
                use ring::rand::SecureRandom;
                let mut bytes = [0u8; 24];
                ring::rand::SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| {
                        SetupError::Internal("the system random generator failed".into())
                    })?;
                let token = hex::encode(bytes);
                shared::files::write_atomic(&file, format!("{token}\n").as_bytes(), 0o600)
                    .map_err(|e| SetupError::Internal(format!("{}: {e}", file.display())))?;
                tracing::warn!(file = %file.display(),
                    "first run: open the web UI and create the first administrator with the one-time token in this file");
                token
            }
        };
        Ok(Self {
            token_hash: Mutex::new(Some(digest(&token))),
            file,
        })
    }

    /// Whether setup is still pending.
    pub fn required(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        match self.token_hash.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Creates the first Admin with `token`. Concurrent attempts: one wins, the rest see
    /// `Completed`.
    pub async fn complete(
        &self,
        db: &Database,
        token: &str,
        username: &str,
        display_name: &str,
        password: &str,
        now: NaiveDateTime,
    ) -> Result<i64, SetupError> {
        let taken = {
            let mut slot = self.lock();
            match slot.as_ref() {
                None => return Err(SetupError::Completed),
                Some(h) if *h != digest(token) => return Err(SetupError::BadToken),
                Some(_) => slot.take(),
            }
        };
        let result = self
            .create_admin(db, username, display_name, password, now)
            .await;
        match &result {
            Ok(_) => {
                let _ = std::fs::remove_file(&self.file);
            }
            // Not consumed: the operator can fix the input and try again.
            Err(_) => *self.lock() = taken,
        }
        result
    }

    async fn create_admin(
        &self,
        db: &Database,
        username: &str,
        display_name: &str,
        password: &str,
        now: NaiveDateTime,
    ) -> Result<i64, SetupError> {
        let username = username.trim().to_owned();
        if !valid_username(&username) {
            return Err(SetupError::Invalid(
                "user names are 3 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter".into(),
            ));
        }
        super::password::check_policy(password, &username).map_err(SetupError::Invalid)?;
        let display = display_name.trim();
        if display.chars().count() > 128 {
            return Err(SetupError::Invalid(
                "the display name is longer than 128 characters".into(),
            ));
        }
        let display = if display.is_empty() {
            username.clone()
        } else {
            display.to_owned()
        };
        let pw = password.to_owned();
        let phc = super::password::in_line(move || super::password::hash(&pw))
            .await
            .map_err(|e| SetupError::Internal(e.to_string()))?
            .map_err(|e| SetupError::Internal(e.to_string()))?;
        let id = db
            .run(move |c| {
                crate::db::transaction(c, |c| {
                    if crate::db::users::count(c)? > 0 {
                        return Ok(None);
                    }
                    let new =
                        crate::db::users::NewUser::local(&username, &display, &phc, "admin", now);
                    Ok(Some(super::users::insert_account(c, &new)?))
                })
            })
            .await?;
        id.ok_or(SetupError::Completed)
    }
}

/// 3 to 64 characters of `a-z 0-9 . _ -`, starting with a letter.
pub fn valid_username(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=64).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}
