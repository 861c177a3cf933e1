//! Accounts and sign-in. So far: password hashing ([`password`]) and the first-run bootstrap of
//! the first Admin ([`setup`]); sessions, MFA, RBAC and single sign-on build on these.

pub mod password;
pub mod setup;
