//! Package managers behind one trait. The API layer only talks to [`PackageBackend`]; apt/dpkg is
//! the first implementation, and dnf/yum, apk and pacman slot in beside it.

pub mod apt;
pub mod dpkg_status;

use shared::agent::InstalledPackage;
use std::sync::Arc;

/// Failure of the package manager or of reading its database.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The package database could not be read.
    #[error("cannot read the package database {path}: {source}")]
    Database {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A package-manager command failed to run or answered unexpectedly.
    #[error("{command}: {message}")]
    Command {
        /// Program run.
        command: String,
        /// What happened.
        message: String,
    },
}

/// What the agent needs from a package manager.
pub trait PackageBackend: Send + Sync + 'static {
    /// Short name (`apt`, `dnf`, `apk`, `pacman`).
    fn name(&self) -> &'static str;

    /// Every package the package database knows of, sorted by name then architecture. Cheap to
    /// call repeatedly: implementations cache by the database's modification time.
    fn installed(&self) -> Result<Arc<Vec<InstalledPackage>>, BackendError>;

    /// Whether the package database reports an interrupted transaction.
    fn interrupted(&self) -> Result<bool, BackendError> {
        Ok(self.installed()?.iter().any(|p| {
            matches!(
                p.status.as_str(),
                "half-installed" | "half-configured" | "unpacked" | "triggers-awaited"
            )
        }))
    }

    /// When the package lists were last refreshed, if known (RFC 3339).
    fn last_update(&self) -> Option<String>;
}

/// Checks a Debian package name against policy §5.6.1: lower-case letters, digits, `+`, `-`, `.`,
/// at least two characters, starting with a letter or digit. At most 128 characters here, and
/// never anything an option parser could mistake for a flag.
pub fn valid_debian_name(name: &str) -> bool {
    let b = name.as_bytes();
    (2..=128).contains(&b.len())
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::valid_debian_name;

    #[test]
    fn debian_names() {
        for ok in [
            "bash",
            "libc6",
            "g++",
            "lpm-test-hello",
            "python3.11",
            "0ad",
        ] {
            assert!(valid_debian_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "-oAPT::Get",
            "Bash",
            "bash;rm -rf /",
            "a b",
            "foo$(id)",
            "x`id`",
            "pkg/sid",
            "pkg=1.0",
            "../etc",
            "name\n",
            &"a".repeat(129),
        ] {
            assert!(!valid_debian_name(bad), "{bad:?}");
        }
    }
}
