//! Package managers behind one trait. The API layer and the job engine only talk to
//! [`PackageBackend`]: apt/dpkg ([`apt`]), dnf/yum ([`dnf`]), zypper ([`zypper`]), pacman
//! ([`pacman`]) and apk ([`apk`]); [`open`] picks one from the configuration or, with `auto`,
//! from /etc/os-release and the tools present.

pub mod apk;
pub mod apt;
pub mod dnf;
pub mod dpkg_status;
pub mod pacman;
pub mod rpm;
pub mod select;
pub mod zypper;

pub use select::open;

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

    /// This package manager's name and version grammar.
    fn grammar(&self) -> &'static Grammar;

    /// Whether `name` is a valid package name for this package manager.
    fn valid_name(&self, name: &str) -> bool {
        (self.grammar().valid_name)(name)
    }

    /// Whether `version` is a valid version string for this package manager.
    fn valid_version(&self, version: &str) -> bool {
        (self.grammar().valid_version)(version)
    }

    /// The commands that carry out `tx`, run in order until one fails (most package managers
    /// need one): no shell, fixed environment, user values after `--` where the tool has it.
    fn steps(&self, tx: &Transaction) -> Result<Vec<Step>, BackendError>;

    /// Whether the host needs a reboot for installed updates to take effect.
    fn reboot_required(&self) -> bool {
        std::path::Path::new("/run/reboot-required").exists()
    }

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

/// A value cached until the stamps of the files it was read from change.
pub type Cached<T> = std::sync::Mutex<Option<(Vec<crate::stamp::Stamp>, Arc<T>)>>;

/// The value in `cell` if it was read under `key`, else `read()` stored under `key`.
pub fn cached<T>(
    cell: &Cached<T>,
    key: Vec<crate::stamp::Stamp>,
    read: impl FnOnce() -> Result<T, BackendError>,
) -> Result<Arc<T>, BackendError> {
    let mut slot = lock(cell);
    if let Some((k, value)) = slot.as_ref() {
        if *k == key {
            return Ok(value.clone());
        }
    }
    let value = Arc::new(read()?);
    *slot = Some((key, value.clone()));
    Ok(value)
}

/// A mutex's guard, also after a panic elsewhere poisoned it (the data is a cache).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The running kernel's release (`uname -r`).
pub(crate) fn running_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Whether the running kernel's module directory under `modules` is gone while others exist:
/// what Arch and Alpine leave once a new kernel package replaced the running one.
pub(crate) fn running_kernel_modules_gone(modules: &std::path::Path) -> bool {
    modules.is_dir() && !modules.join(running_kernel()).is_dir()
}

/// One process a transaction runs, with what it reads on its standard input (a script of
/// validated names and versions, for tools that take a transaction that way).
#[derive(Debug)]
pub struct Step {
    /// The process.
    pub command: tokio::process::Command,
    /// Its standard input; `None` = nothing (`/dev/null`).
    pub stdin: Option<String>,
    /// Exit statuses that mean success (zypper answers 102 for "done, reboot needed").
    pub success: &'static [i32],
}

impl Step {
    /// A step with nothing on its standard input, successful on exit status 0.
    pub fn new(command: impl Into<tokio::process::Command>) -> Self {
        Self {
            command: command.into(),
            stdin: None,
            success: &[0],
        }
    }
}

/// A command with a fixed environment: `PATH` of the system directories, the C locale, nothing
/// inherited from the agent's own environment, `/` as working directory.
pub fn clean_command(program: &str) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        // Tools take an argument naming a file in the working directory as that file
        // (`x.rpm`, `x.apk`): there is none of the agent's there.
        .current_dir("/");
    c
}

/// Runs `c` to completion and answers its standard output; a failure names the command.
pub fn output_of(mut c: std::process::Command, what: &str) -> Result<String, BackendError> {
    let out = c.output().map_err(|e| BackendError::Command {
        command: what.to_owned(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(BackendError::Command {
            command: what.to_owned(),
            message: format!(
                "exited with {}: {}",
                out.status
                    .code()
                    .map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A family's package-name and version grammar, with the rules as the 400 answer states them.
#[derive(Debug)]
pub struct Grammar {
    /// Whether a name is valid.
    pub valid_name: fn(&str) -> bool,
    /// Whether a version is valid.
    pub valid_version: fn(&str) -> bool,
    /// What `valid_name` accepts, in words.
    pub name_rule: &'static str,
    /// What `valid_version` accepts, in words.
    pub version_rule: &'static str,
}

/// Debian's grammar (apt/dpkg).
pub const DEBIAN: Grammar = Grammar {
    valid_name: valid_debian_name,
    valid_version: valid_debian_version,
    name_rule: DEBIAN_NAME_RULE,
    version_rule: DEBIAN_VERSION_RULE,
};

/// `[epoch:]rest` split at the epoch, which must be digits when present; `None` if it is not.
pub(crate) fn split_epoch(v: &str) -> Option<(Option<&str>, &str)> {
    match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
            Some((Some(e), rest))
        }
        Some(_) => None,
        None => Some((None, v)),
    }
}

/// `rel` under an isolated `root`, or under `/`.
pub(crate) fn under(root: Option<&std::path::Path>, rel: &str) -> std::path::PathBuf {
    root.unwrap_or(std::path::Path::new("/")).join(rel)
}

/// What the Debian name check accepts.
pub const DEBIAN_NAME_RULE: &str =
    "2 to 128 characters of a-z, 0-9, '+', '-' and '.', starting with a letter or digit";
/// What the Debian version check accepts.
pub const DEBIAN_VERSION_RULE: &str = "[epoch:]upstream[-revision], upstream starting with a digit";

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
    let Some((_, rest)) = split_epoch(v) else {
        return false;
    };
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
