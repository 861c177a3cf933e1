//! Accounts and sign-in: password hashing ([`password`]), the first-run bootstrap of the first
//! Admin ([`setup`]), signed access tokens with key rotation ([`tokens`]), who is calling
//! ([`identity`]) and what they may do ([`access`]), second factors ([`mfa`] for TOTP and
//! recovery codes, [`passkeys`] for WebAuthn) and Azure AD single sign-on ([`sso`]).

pub mod access;
pub mod identity;
pub mod login;
pub mod mfa;
pub mod passkeys;
pub mod password;
pub mod setup;
pub mod sso;
pub mod tokens;
pub mod users;

/// Constant-time comparison of two secrets.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
