//! Password hashing with Argon2id (m = 64 MiB, t = 3, p = 1). The parameters are stored in the
//! PHC string with each hash, so a hash made with older parameters still verifies and is upgraded
//! at the next successful sign-in ([`needs_rehash`]). Hashing is slow on purpose: run it through
//! [`in_line`], which takes it off the event loop and lets at most [`MAX_CONCURRENT`] hashes run
//! at once — each holds 64 MiB, so a burst of sign-in attempts queues (every attempt still gets
//! its answer) instead of growing memory by 64 MiB per attempt.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory cost in KiB.
pub const M_COST_KIB: u32 = 64 * 1024;
/// Iterations.
pub const T_COST: u32 = 3;
/// Lanes.
pub const P_COST: u32 = 1;
/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 12;
/// Longest accepted password, in bytes (bounds the hashing work an attacker can ask for).
pub const MAX_BYTES: usize = 1024;

/// Most Argon2 computations running at once (each holds [`M_COST_KIB`] of memory: 256 MiB in
/// all). More would not finish sooner on a few cores; they only cost memory.
pub const MAX_CONCURRENT: usize = 4;

static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT);

/// Runs hashing work `f` on the blocking pool once one of the [`MAX_CONCURRENT`] places is free.
pub async fn in_line<T, F>(f: F) -> Result<T, HashError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _place = PERMITS
        .acquire()
        .await
        .map_err(|e| HashError(e.to_string()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HashError(e.to_string()))
}

/// Hashing failure (bad parameters or the random generator).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn hasher(m: u32, t: u32, p: u32) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(m, t, p, None).map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes with the current parameters; answers the PHC string.
pub fn hash(password: &str) -> Result<String, HashError> {
    hash_with(password, M_COST_KIB, T_COST, P_COST)
}

/// Hashes with explicit parameters (tests of the upgrade path use cheaper ones).
pub fn hash_with(password: &str, m: u32, t: u32, p: u32) -> Result<String, HashError> {
    hasher(m, t, p)?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    // The parameters come from the PHC string itself.
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// Whether `phc` was made with other parameters or another algorithm than the current ones.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(phc) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(&parsed) {
        Ok(p) => (p.m_cost(), p.t_cost(), p.p_cost()) != (M_COST_KIB, T_COST, P_COST),
        Err(_) => true,
    }
}

/// Checks the password policy; answers what is wrong.
pub fn check_policy(password: &str, username: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LEN {
        return Err(format!(
            "the password must have at least {MIN_LEN} characters"
        ));
    }
    if password.len() > MAX_BYTES {
        return Err(format!("the password must be at most {MAX_BYTES} bytes"));
    }
    let distinct: std::collections::BTreeSet<char> = password.chars().collect();
    if distinct.len() < 5 {
        return Err("the password repeats too few different characters".into());
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err("the password must not contain the user name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_parameters() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterz", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert!(!needs_rehash(&h));
        let old = hash_with("correct horse battery", 8 * 1024, 1, 1).unwrap();
        assert!(
            verify("correct horse battery", &old),
            "old parameters still verify"
        );
        assert!(needs_rehash(&old), "and are upgraded");
        assert!(needs_rehash("garbage"));
    }

    #[test]
    fn policy() {
        assert!(check_policy("short", "admin").is_err());
        assert!(check_policy("aaaaaaaaaaaaaaaa", "admin").is_err());
        assert!(check_policy("my-admin-password-1", "admin").is_err());
        assert!(check_policy(&"ab1-".repeat(300), "admin").is_err());
        assert!(check_policy("tangerine-Orbit-42", "admin").is_ok());
    }
}
