//! Accounts and sign-in. So far: password hashing ([`password`]), the first-run bootstrap of the
//! first Admin ([`setup`]) and signed access tokens with key rotation ([`tokens`]); sessions with
//! refresh tokens, MFA, RBAC and single sign-on build on these.

pub mod access;
pub mod identity;
pub mod mfa;
pub mod passkeys;
pub mod password;
pub mod setup;
pub mod sso;
pub mod tokens;

/// Constant-time comparison of two secrets.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
