//! The source-address allow-list, checked on the raw TCP connection before any TLS byte is read
//! or written: a refused peer learns nothing, not even that a TLS server listens here. The matcher
//! itself is shared with the manager.

pub use shared::netfilter::AllowList;
