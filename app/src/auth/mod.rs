//! Accounts and sign-in. So far: password hashing ([`password`]), the first-run bootstrap of the
//! first Admin ([`setup`]) and signed access tokens with key rotation ([`tokens`]); sessions with
//! refresh tokens, MFA, RBAC and single sign-on build on these.

pub mod identity;
pub mod password;
pub mod setup;
pub mod tokens;
