//! The managed fleet: hosts and their groups, always seen through the caller's
//! [`Scope`](crate::auth::access::Scope). Host actors will live here too.
//!
//! - [`hosts`]: the host list and detail, the certificate bundle of a host, groups and their
//!   creation.

pub mod hosts;
