//! Package managers behind one trait. The API layer only talks to [`PackageBackend`]; apt/dpkg is
//! the first implementation, and dnf/yum, apk and pacman slot in beside it.

pub mod apt;
pub mod dpkg_status;

use shared::agent::{InstalledPackage, Patch};
use std::collections::BTreeMap;
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

    /// Available updates, security first. Cached until the package database or lists change.
    fn upgradable(&self) -> Result<Arc<Vec<Patch>>, BackendError>;

    /// Whether `name` is a valid package name for this package manager.
    fn valid_name(&self, name: &str) -> bool;

    /// Whether `version` is a valid version string for this package manager.
    fn valid_version(&self, version: &str) -> bool;

    /// The command that carries out `tx`: no shell, fixed environment, user values after `--`.
    fn command(&self, tx: &Transaction) -> tokio::process::Command;

    /// Versions by package name of every package present on the system (installed, or unpacked
    /// but not fully configured); packages that are absent or left only as config files are not
    /// included.
    fn versions(&self) -> Result<BTreeMap<String, String>, BackendError> {
        Ok(self
            .installed()?
            .iter()
            .filter(|p| !matches!(p.status.as_str(), "not-installed" | "config-files"))
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect())
    }

    /// State word of every known package (`installed`, `half-configured`, …).
    fn states(&self) -> Result<BTreeMap<String, String>, BackendError> {
        Ok(self
            .installed()?
            .iter()
            .map(|p| (p.name.clone(), p.status.clone()))
            .collect())
    }
}

/// One package-manager transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transaction {
    /// Install (or move to) the given versions; the candidate where none is given.
    Install {
        /// Name and optional exact version.
        packages: Vec<(String, Option<String>)>,
        /// Only upgrade installed packages, never install new ones.
        only_upgrade: bool,
    },
    /// Remove packages.
    Remove {
        /// Names.
        names: Vec<String>,
        /// Also remove configuration files.
        purge: bool,
    },
    /// Put packages back to recorded versions and remove ones that were newly installed.
    Restore {
        /// Name and version to (re)install, downgrading if needed.
        install: Vec<(String, String)>,
        /// Names to remove.
        remove: Vec<String>,
    },
}

/// Checks a Debian version: `[epoch:]upstream[-revision]`, upstream starting with a digit,
/// characters from `A-Za-z0-9.+~-` (and `:` after the epoch), at most 128 characters.
pub fn valid_debian_version(v: &str) -> bool {
    if v.is_empty() || v.len() > 128 {
        return false;
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) => (Some(e), r),
        None => (None, v),
    };
    if epoch.is_some_and(|e| e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    rest.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~-:".contains(&c))
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
    fn debian_versions() {
        use super::valid_debian_version as ok;
        for v in [
            "1.0",
            "1.0-1",
            "2:1.2.3-4ubuntu1~22.04",
            "3.0.15-1~deb12u1+b1",
            "0.9+git20240101",
        ] {
            assert!(ok(v), "{v}");
        }
        for v in [
            "", "a1.0", "1.0;id", "-1", ":1.0", "x:1.0", "1.0 2", "1.0$(id)", "1.0/x",
        ] {
            assert!(!ok(v), "{v:?}");
        }
    }

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
