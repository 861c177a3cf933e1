//! Change detection for files the agent caches or watches.

use std::path::Path;
use std::time::SystemTime;

/// Modification time and size of a file; `None` if it cannot be read. Two equal stamps mean
/// "unchanged" for files that are replaced or rewritten as a whole (dpkg's status file, apt's
/// lists directory, certificates, the config file).
pub type Stamp = Option<(SystemTime, u64)>;

/// The stamp of `path`.
pub fn of(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}
