//! apt/dpkg (Debian, Ubuntu). Reads come straight from dpkg's status file; the file's
//! modification time and size key a cache, and dpkg replaces the file on every change, so the
//! cache is never stale. An `APT_CONFIG` file from the configuration points every path at an
//! isolated package root (used by the tests); by default the real system is used.

use super::{dpkg_status, lock, BackendError, Grammar, PackageBackend, Step, Transaction, DEBIAN};
use shared::agent::{InstalledPackage, Patch};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The apt/dpkg backend.
pub struct AptBackend {
    apt_config: Option<PathBuf>,
    status_path: PathBuf,
    lists_dir: PathBuf,
    cache: Mutex<Option<Cached>>,
    patches: Mutex<Option<CachedPatches>>,
    cves: Mutex<std::collections::HashMap<(String, String), Vec<String>>>,
    lock_timeout_secs: u64,
}

/// Seconds a job waits for the dpkg lock held by another package manager.
pub const DEFAULT_LOCK_TIMEOUT_SECS: u64 = 120;

struct CachedPatches {
    key: Vec<crate::stamp::Stamp>,
    patches: Arc<Vec<Patch>>,
}

/// Packages whose update usually needs a reboot to take effect.
const REBOOT_PACKAGES: &[&str] = &[
    "libc6",
    "systemd",
    "dbus",
    "udev",
    "libssl3",
    "openssl",
    "lpm-test-reboot",
];
const REBOOT_PREFIXES: &[&str] = &[
    "linux-image-",
    "linux-modules-",
    "linux-firmware",
    "intel-microcode",
    "amd64-microcode",
];

struct Cached {
    key: (SystemTime, u64),
    packages: Arc<Vec<InstalledPackage>>,
}

impl std::fmt::Debug for AptBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AptBackend")
            .field("status_path", &self.status_path)
            .finish_non_exhaustive()
    }
}

impl AptBackend {
    /// Resolves the dpkg status file and the apt lists directory (through `apt-config` when an
    /// `APT_CONFIG` file is given).
    pub fn new(apt_config: Option<PathBuf>) -> Result<Self, BackendError> {
        Self::with_lock_timeout(apt_config, DEFAULT_LOCK_TIMEOUT_SECS)
    }

    /// Like [`new`](Self::new), waiting at most `lock_timeout_secs` for another package manager
    /// to release the dpkg lock before a job fails with a clear message.
    pub fn with_lock_timeout(
        apt_config: Option<PathBuf>,
        lock_timeout_secs: u64,
    ) -> Result<Self, BackendError> {
        let (status_path, lists_dir) = match &apt_config {
            None => (
                PathBuf::from("/var/lib/dpkg/status"),
                PathBuf::from("/var/lib/apt/lists"),
            ),
            Some(cfg) => resolve_paths(cfg)?,
        };
        Ok(Self {
            apt_config,
            status_path,
            lists_dir,
            cache: Mutex::new(None),
            patches: Mutex::new(None),
            cves: Mutex::new(std::collections::HashMap::new()),
            lock_timeout_secs,
        })
    }

    /// The `APT_CONFIG` file in use, if any.
    pub fn apt_config(&self) -> Option<&Path> {
        self.apt_config.as_deref()
    }

    /// A command with the fixed environment every apt/dpkg call gets.
    fn base_command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("APT_LISTCHANGES_FRONTEND", "none");
        if let Some(cfg) = &self.apt_config {
            c.env("APT_CONFIG", cfg);
        }
        c
    }

    /// What invalidates the patch list: the dpkg status file and the lists directory.
    fn patches_key(&self) -> Vec<crate::stamp::Stamp> {
        vec![
            crate::stamp::of(&self.status_path),
            crate::stamp::of(&self.lists_dir),
        ]
    }

    fn compute_patches(&self) -> Result<Vec<Patch>, BackendError> {
        let out = self
            .base_command("apt")
            .args(["list", "--upgradable"])
            .output()
            .map_err(|e| BackendError::Command {
                command: "apt list".into(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(BackendError::Command {
                command: "apt list --upgradable".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let mut patches = parse_apt_list(&String::from_utf8_lossy(&out.stdout));
        for p in patches.iter_mut().filter(|p| p.security) {
            p.cves = self.security_cves(&p.name, &p.candidate_version, &p.installed_version);
        }
        patches.sort_by(|a, b| {
            b.security
                .cmp(&a.security)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(patches)
    }

    /// CVE ids named by the changelog entries between the installed and the candidate version,
    /// read from the candidate's .deb (fetched into a private temporary directory, never run).
    /// Cached per (package, candidate); a failure leaves the list empty and is logged.
    fn security_cves(&self, name: &str, candidate: &str, installed: &str) -> Vec<String> {
        let key = (name.to_owned(), candidate.to_owned());
        if let Some(hit) = lock(&self.cves).get(&key) {
            return hit.clone();
        }
        match self.read_changelog(name, candidate) {
            Ok(text) => {
                let ids = cves_since(&text, name, installed);
                lock(&self.cves).insert(key, ids.clone());
                ids
            }
            Err(e) => {
                tracing::warn!(package = name, version = candidate, error = %e, "no changelog for CVE ids");
                Vec::new()
            }
        }
    }

    fn read_changelog(&self, name: &str, version: &str) -> Result<String, BackendError> {
        let err = |message: String| BackendError::Command {
            command: "changelog".into(),
            message,
        };
        let dir = std::env::temp_dir().join(format!("patch-agent-deb-{}", ulid::Ulid::new()));
        std::fs::create_dir(&dir).map_err(|e| err(e.to_string()))?;
        let result = (|| {
            let out = self
                .base_command("apt-get")
                .current_dir(&dir)
                .args(["-q", "download", "--", &format!("{name}={version}")])
                .output()
                .map_err(|e| err(e.to_string()))?;
            if !out.status.success() {
                return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
            }
            let deb = std::fs::read_dir(&dir)
                .map_err(|e| err(e.to_string()))?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .ok_or_else(|| err("apt-get download produced no .deb".into()))?;
            let mut child = self
                .base_command("dpkg-deb")
                .arg("--fsys-tarfile")
                .arg(&deb)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| err(e.to_string()))?;
            let stdout = child.stdout.take().ok_or_else(|| err("no output".into()))?;
            let wanted = format!("usr/share/doc/{name}/changelog.Debian.gz");
            let mut text = None;
            let mut archive = tar::Archive::new(stdout);
            for entry in archive.entries().map_err(|e| err(e.to_string()))? {
                let mut entry = entry.map_err(|e| err(e.to_string()))?;
                let path = entry
                    .path()
                    .map_err(|e| err(e.to_string()))?
                    .to_string_lossy()
                    .into_owned();
                if path.trim_start_matches("./") == wanted {
                    let mut s = String::new();
                    use std::io::Read;
                    // Cap what a hostile package could make us inflate.
                    flate2::read::GzDecoder::new(&mut entry)
                        .take(8 * 1024 * 1024)
                        .read_to_string(&mut s)
                        .map_err(|e| err(e.to_string()))?;
                    text = Some(s);
                    break;
                }
            }
            drop(archive);
            let _ = child.kill();
            let _ = child.wait();
            text.ok_or_else(|| err(format!("{wanted} not in the package")))
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn read_status(&self) -> Result<Vec<InstalledPackage>, BackendError> {
        let entries =
            dpkg_status::read(&self.status_path).map_err(|source| BackendError::Database {
                path: self.status_path.display().to_string(),
                source,
            })?;
        let mut out: Vec<InstalledPackage> = entries
            .into_iter()
            .map(|e| InstalledPackage {
                name: e.name,
                version: e.version,
                arch: e.arch,
                status: e.state,
                summary: e.summary,
                installed_size_kib: e.installed_size_kib,
                source: e.source,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch)));
        Ok(out)
    }
}

/// CVE ids in the changelog entries newer than `installed` (entries are newest first; the scan
/// stops at the installed version's header).
fn cves_since(changelog: &str, name: &str, installed: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for line in changelog.lines() {
        if let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(" (")) {
            if rest.split(')').next() == Some(installed) {
                break;
            }
        }
        let mut text = line;
        while let Some(at) = text.find("CVE-") {
            let cand: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let mut parts = cand.split('-').skip(1);
            let ok = matches!((parts.next(), parts.next()), (Some(y), Some(n))
                if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()) && n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit()));
            if ok && !ids.contains(&cand) {
                ids.push(cand.clone());
            }
            text = &text[at + 4..];
        }
    }
    ids
}

/// Parses `apt list --upgradable`: `name/suite[,suite] version arch [upgradable from: old]`.
fn parse_apt_list(text: &str) -> Vec<Patch> {
    text.lines()
        .filter_map(|line| {
            let (name_suites, rest) = line.split_once(' ')?;
            let (name, suites) = name_suites.split_once('/')?;
            let mut words = rest.split_whitespace();
            let candidate = words.next()?;
            let arch = words.next()?;
            let installed = rest
                .split("[upgradable from: ")
                .nth(1)?
                .trim_end_matches(']')
                .trim();
            let security = suites
                .split(',')
                .any(|s| s.contains("security") || s.ends_with("/updates"));
            let reboot_likely = REBOOT_PACKAGES.contains(&name)
                || REBOOT_PREFIXES.iter().any(|p| name.starts_with(p));
            Some(Patch {
                name: name.to_owned(),
                arch: arch.to_owned(),
                installed_version: installed.to_owned(),
                candidate_version: candidate.to_owned(),
                origin: suites.to_owned(),
                security,
                severity: None,
                cves: Vec::new(),
                reboot_likely,
            })
        })
        .collect()
}

/// Asks `apt-config` (no shell, fixed environment) where the status file and lists live.
fn resolve_paths(cfg: &Path) -> Result<(PathBuf, PathBuf), BackendError> {
    let out = Command::new("apt-config")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env("APT_CONFIG", cfg)
        .args([
            "shell",
            "S",
            "Dir::State::status/f",
            "L",
            "Dir::State::lists/d",
        ])
        .output()
        .map_err(|e| BackendError::Command {
            command: "apt-config".into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BackendError::Command {
            command: "apt-config".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |var: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{var}='")))
            .and_then(|v| v.strip_suffix('\''))
            .map(PathBuf::from)
    };
    match (value("S"), value("L")) {
        (Some(s), Some(l)) => Ok((s, l)),
        _ => Err(BackendError::Command {
            command: "apt-config".into(),
            message: format!("unexpected output: {text}"),
        }),
    }
}

impl PackageBackend for AptBackend {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn installed(&self) -> Result<Arc<Vec<InstalledPackage>>, BackendError> {
        let meta =
            std::fs::metadata(&self.status_path).map_err(|source| BackendError::Database {
                path: self.status_path.display().to_string(),
                source,
            })?;
        let key = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = cache.as_ref().filter(|c| c.key == key) {
            return Ok(c.packages.clone());
        }
        let packages = Arc::new(self.read_status()?);
        *cache = Some(Cached {
            key,
            packages: packages.clone(),
        });
        Ok(packages)
    }

    fn upgradable(&self) -> Result<Arc<Vec<Patch>>, BackendError> {
        let key = self.patches_key();
        let mut cache = match self.patches.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(c) = cache.as_ref().filter(|c| c.key == key) {
            return Ok(c.patches.clone());
        }
        let patches = Arc::new(self.compute_patches()?);
        *cache = Some(CachedPatches {
            key,
            patches: patches.clone(),
        });
        Ok(patches)
    }

    fn grammar(&self) -> &'static Grammar {
        &DEBIAN
    }

    fn steps(&self, tx: &Transaction) -> Result<Vec<Step>, BackendError> {
        let mut c = self.base_command("apt-get");
        c.args([
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "-o",
            &format!("DPkg::Lock::Timeout={}", self.lock_timeout_secs),
            "-o",
            "APT::Get::AutomaticRemove=false",
            // No pseudo-terminal: dpkg then stays in the job's process group (apt would setsid it
            // into a new session), so the timeout reaches maintainer scripts too.
            "-o",
            "Dpkg::Use-Pty=0",
        ]);
        match tx {
            Transaction::Install {
                packages,
                only_upgrade,
            } => {
                c.args(["--allow-downgrades", "install"]);
                if *only_upgrade {
                    c.arg("--only-upgrade");
                }
                c.arg("--");
                for (name, version) in packages {
                    c.arg(match version {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    });
                }
            }
            Transaction::Remove { names, purge } => {
                c.arg(if *purge { "purge" } else { "remove" })
                    .arg("--")
                    .args(names);
            }
            Transaction::Restore { install, remove } => {
                c.args(["--allow-downgrades", "install", "--"]);
                c.args(install.iter().map(|(n, v)| format!("{n}={v}")));
                // apt-get install accepts `name-` to remove within the same transaction.
                c.args(remove.iter().map(|n| format!("{n}-")));
            }
        }
        Ok(vec![Step::new(c)])
    }

    fn last_update(&self) -> Option<String> {
        let modified = std::fs::metadata(&self.lists_dir).ok()?.modified().ok()?;
        Some(chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::{cves_since, parse_apt_list};

    #[test]
    fn cves_from_newer_entries_only() {
        let log = "pkg (1.2-1) stable-security; urgency=high\n\n  * Fix CVE-2026-1234 and CVE-2026-12345.\n  * Also CVE-2026-1234 again, CVE-26-1 is not an id.\n\n -- M <m@x>  Thu, 01 Jan 2026 00:00:00 +0000\n\npkg (1.1-1) stable; urgency=medium\n\n  * Fix CVE-2025-0001.\n\npkg (1.0-1) stable; urgency=low\n\n  * CVE-2020-0001 is old.\n";
        assert_eq!(
            cves_since(log, "pkg", "1.1-1"),
            ["CVE-2026-1234", "CVE-2026-12345"]
        );
        assert_eq!(
            cves_since(log, "pkg", "1.0-1"),
            ["CVE-2026-1234", "CVE-2026-12345", "CVE-2025-0001"]
        );
        assert!(cves_since("", "pkg", "1").is_empty());
    }

    #[test]
    fn apt_list_lines() {
        let text = "Listing...\nlpm-test-hello/stable 2.0-1 all [upgradable from: 1.0-1]\n\
                    libc6/stable-security,stable 2.36-9+deb12u9 amd64 [upgradable from: 2.36-9+deb12u8]\n";
        let p = parse_apt_list(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "lpm-test-hello");
        assert_eq!(p[0].installed_version, "1.0-1");
        assert_eq!(p[0].candidate_version, "2.0-1");
        assert!(!p[0].security);
        assert!(p[1].security && p[1].reboot_likely);
        assert_eq!(p[1].arch, "amd64");
    }
}
