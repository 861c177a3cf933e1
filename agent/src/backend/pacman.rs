//! pacman (Arch Linux and derivatives). Installed packages are read straight from pacman's
//! local database (one `desc` file per package under `DBPath/local/`; the directory changes on
//! every transaction, which keys the cache); updates from `pacman -Qu` against the sync
//! databases as last refreshed. Arch's repositories carry no security metadata, so no update is
//! flagged as security. A pinned version is installed from the package cache with `pacman -U`
//! (which is how a rollback downgrades), or from the repositories when it is their version.

use super::{
    cached, clean_command, BackendError, Cached, Grammar, PackageBackend, Step, Transaction,
};
use shared::agent::{InstalledPackage, Patch};
use std::path::PathBuf;
use std::sync::Arc;

/// The grammar of this family.
pub const GRAMMAR: super::Grammar = super::Grammar {
    valid_name,
    valid_version,
    name_rule: NAME_RULE,
    version_rule: VERSION_RULE,
};

/// What [`valid_name`] accepts.
pub const NAME_RULE: &str = "1 to 128 characters of a-z, 0-9, '@', '.', '_', '+' and '-', \
     not starting with '-' or '.'";
/// What [`valid_version`] accepts.
pub const VERSION_RULE: &str = "[epoch:]pkgver-pkgrel, as listed by the agent: pkgver of A-Z, \
     a-z, 0-9, '.', '_', '+' and '~', pkgrel a number (optionally .N)";

/// Checks a pacman package name.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=128).contains(&b.len())
        && b[0] != b'-'
        && b[0] != b'.'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"@._+-".contains(c))
}

/// Checks `[epoch:]pkgver-pkgrel`.
pub fn valid_version(v: &str) -> bool {
    if v.is_empty() || v.len() > 128 {
        return false;
    }
    let Some((_, rest)) = super::split_epoch(v) else {
        return false;
    };
    let Some((pkgver, pkgrel)) = rest.rsplit_once('-') else {
        return false;
    };
    let rel_ok = {
        let mut parts = pkgrel.split('.');
        let number = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
        };
        number(parts.next())
            && match parts.next() {
                None => true,
                Some(sub) => number(Some(sub)) && parts.next().is_none(),
            }
    };
    rel_ok
        && pkgver
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && pkgver
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._+~".contains(&c))
}

/// Parses one `desc` file of the local database.
pub fn parse_desc(text: &str) -> Option<InstalledPackage> {
    let mut name = None;
    let mut version = None;
    let mut desc = String::new();
    let mut arch = String::new();
    let mut size = None;
    let mut base = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let field = match line {
            "%NAME%" | "%VERSION%" | "%DESC%" | "%ARCH%" | "%SIZE%" | "%BASE%" => line,
            _ => continue,
        };
        let Some(v) = lines.next() else { break };
        match field {
            "%NAME%" => name = Some(v.to_owned()),
            "%VERSION%" => version = Some(v.to_owned()),
            "%DESC%" => desc = v.to_owned(),
            "%ARCH%" => arch = v.to_owned(),
            "%SIZE%" => size = v.parse::<u64>().ok().map(|b| b.div_ceil(1024)),
            _ => base = Some(v.to_owned()),
        }
    }
    Some(InstalledPackage {
        name: name?,
        version: version?,
        arch,
        status: "installed".to_owned(),
        summary: desc,
        installed_size_kib: size,
        source: base,
    })
}

/// Parses `pacman -Qu`: `name old -> new` (a trailing `[ignored]` marks held packages, which
/// are left out).
pub fn parse_query_upgrades(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w[..] {
                [name, old, "->", new] => Some((name.to_owned(), old.to_owned(), new.to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// Packages whose update usually needs a reboot on Arch.
fn reboot_likely(name: &str) -> bool {
    name.starts_with("linux")
        || matches!(
            name,
            "glibc" | "systemd" | "dbus" | "dbus-broker" | "intel-ucode" | "amd-ucode" | "openssl"
        )
}

/// The pacman backend.
#[derive(Debug)]
pub struct PacmanBackend {
    root: Option<PathBuf>,
    config: Option<PathBuf>,
    db_dir: PathBuf,
    cache_dir: PathBuf,
    installed: Cached<Vec<InstalledPackage>>,
}

impl PacmanBackend {
    /// The system's pacman, or one working on an isolated `root` (database, cache, log, keys
    /// and hooks all inside it) with its own `config` file.
    pub fn new(root: Option<PathBuf>, config: Option<PathBuf>) -> Result<Self, BackendError> {
        Ok(Self {
            db_dir: super::under(root.as_deref(), "var/lib/pacman"),
            cache_dir: super::under(root.as_deref(), "var/cache/pacman/pkg"),
            root,
            config,
            installed: Cached::default(),
        })
    }

    /// pacman with the root and configuration options (query operations take no others).
    fn pacman(&self) -> std::process::Command {
        let mut c = clean_command("pacman");
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
            c.arg("--dbpath").arg(&self.db_dir);
            c.arg("--cachedir").arg(&self.cache_dir);
            c.arg("--logfile").arg(r.join("var/log/pacman.log"));
            c.arg("--gpgdir").arg(r.join("etc/pacman.d/gnupg"));
            c.arg("--hookdir").arg(r.join("etc/pacman.d/hooks"));
        }
        c
    }

    fn local_dir(&self) -> PathBuf {
        self.db_dir.join("local")
    }

    fn read_local(&self) -> Result<Vec<InstalledPackage>, BackendError> {
        let dir = self.local_dir();
        let db_err = |source| BackendError::Database {
            path: dir.display().to_string(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(db_err)? {
            let entry = entry.map_err(db_err)?;
            if !entry.file_type().map_err(db_err)?.is_dir() {
                continue;
            }
            let desc = entry.path().join("desc");
            match std::fs::read_to_string(&desc) {
                Ok(text) => out.extend(parse_desc(&text)),
                // A package directory without its desc is what an interrupted transaction leaves.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(db_err(e)),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch)));
        Ok(out)
    }

    /// pacman for a transaction (`-S`, `-U`, `-R`): never asks, no progress bars in the log.
    fn transaction(&self) -> std::process::Command {
        let mut c = self.pacman();
        c.args(["--noconfirm", "--noprogressbar"]);
        c
    }

    /// The package files pacman kept in its cache (complete ones: not `.part` downloads, not
    /// signatures).
    fn cache_files(&self) -> Vec<PathBuf> {
        const EXTENSIONS: &[&str] = &[
            ".pkg.tar.zst",
            ".pkg.tar.xz",
            ".pkg.tar.gz",
            ".pkg.tar.bz2",
            ".pkg.tar.lz4",
            ".pkg.tar.lzo",
            ".pkg.tar",
        ];
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.cache_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|f| f.to_str())
                            .is_some_and(|f| EXTENSIONS.iter().any(|x| f.ends_with(x)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The versions of `names` in the sync databases (one pacman run; one per name if one of
    /// them is in no repository).
    fn repo_versions(&self, names: &[&String]) -> std::collections::HashMap<String, String> {
        let ask = |names: &[&String]| -> Option<Vec<(String, String)>> {
            let mut c = self.pacman();
            c.args(["-Sp", "--print-format", "%n %v", "--"]).args(names);
            let out = c.output().ok()?;
            out.status.success().then(|| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.split_once(' '))
                    .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
                    .collect()
            })
        };
        if names.is_empty() {
            return Default::default();
        }
        match ask(names) {
            Some(all) => all.into_iter().collect(),
            None => names.iter().filter_map(|n| ask(&[n])).flatten().collect(),
        }
    }
}

/// The cached file of `name` at `version` among `files`: `NAME-VERSION-ARCH.pkg.tar.EXT`, the
/// architecture without a '-', so `name-1.0-1-…` never matches `name-1.0-10-…`.
fn cached_file(files: &[PathBuf], name: &str, version: &str) -> Option<PathBuf> {
    let prefix = format!("{name}-{version}-");
    files
        .iter()
        .rev()
        .find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.strip_prefix(&prefix))
                .is_some_and(|rest| {
                    rest.split_once(".pkg.tar")
                        .is_some_and(|(arch, _)| !arch.contains('-'))
                })
        })
        .cloned()
}

impl PackageBackend for PacmanBackend {
    fn name(&self) -> &'static str {
        "pacman"
    }

    fn installed(&self) -> Result<Arc<Vec<InstalledPackage>>, BackendError> {
        let key = vec![crate::stamp::of(&self.local_dir())];
        cached(&self.installed, key, || self.read_local())
    }

    /// pacman's lock file outlives a transaction that was killed: a lock with no pacman
    /// process running.
    fn interrupted(&self) -> Result<bool, BackendError> {
        Ok(self.db_dir.join("db.lck").exists() && !process_running("pacman"))
    }

    fn last_update(&self) -> Option<String> {
        let modified = std::fs::metadata(self.db_dir.join("sync"))
            .ok()?
            .modified()
            .ok()?;
        Some(chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339())
    }

    fn upgradable(&self) -> Result<Arc<Vec<Patch>>, BackendError> {
        let installed = self.installed()?;
        let mut c = self.pacman();
        c.arg("-Qu");
        let out = c.output().map_err(|e| BackendError::Command {
            command: "pacman -Qu".into(),
            message: e.to_string(),
        })?;
        // Exit status 1 with no output at all means "nothing to upgrade"; an error says why.
        let nothing =
            out.status.code() == Some(1) && out.stdout.is_empty() && out.stderr.is_empty();
        if !out.status.success() && !nothing {
            return Err(BackendError::Command {
                command: "pacman -Qu".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let mut patches: Vec<Patch> = parse_query_upgrades(&String::from_utf8_lossy(&out.stdout))
            .into_iter()
            .map(|(name, old, new)| Patch {
                arch: installed
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.arch.clone())
                    .unwrap_or_default(),
                reboot_likely: reboot_likely(&name),
                name,
                installed_version: old,
                candidate_version: new,
                origin: "sync".into(),
                security: false,
                severity: None,
                cves: Vec::new(),
            })
            .collect();
        patches.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Arc::new(patches))
    }

    fn grammar(&self) -> &'static Grammar {
        &GRAMMAR
    }

    /// Arch removes the old kernel's modules when a new kernel is installed: the running
    /// kernel's module directory missing means a reboot is due.
    fn reboot_required(&self) -> bool {
        super::running_kernel_modules_gone(&super::under(self.root.as_deref(), "usr/lib/modules"))
    }

    fn steps(&self, tx: &Transaction) -> Result<Vec<Step>, BackendError> {
        // A version the repositories carry is installed with -S (pacman reuses its cache); only
        // others (downgrades, rollbacks) come from the cache with -U. One transaction each.
        let pins = |packages: &[(String, Option<String>)]| -> Result<Vec<Step>, BackendError> {
            let pinned: Vec<&String> = packages
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(n, _)| n)
                .collect();
            let in_repos = self.repo_versions(&pinned);
            let files = self.cache_files();
            let mut from_repo = Vec::new();
            let mut from_cache = Vec::new();
            for (name, version) in packages {
                match version {
                    None => from_repo.push(name.clone()),
                    Some(v) if in_repos.get(name) == Some(v) => from_repo.push(name.clone()),
                    Some(v) => match cached_file(&files, name, v) {
                        Some(file) => from_cache.push(file),
                        None => {
                            return Err(BackendError::Command {
                                command: "pacman".into(),
                                message: format!(
                                    "{name} {v} is neither in the repositories nor in the package cache"
                                ),
                            })
                        }
                    },
                }
            }
            let mut steps = Vec::new();
            if !from_cache.is_empty() {
                let mut c = self.transaction();
                c.args(["-U", "--"]).args(&from_cache);
                steps.push(Step::new(c));
            }
            if !from_repo.is_empty() {
                let mut c = self.transaction();
                // --needed: a package already at the repository's version is not reinstalled.
                c.args(["-S", "--needed", "--"]).args(&from_repo);
                steps.push(Step::new(c));
            }
            Ok(steps)
        };
        match tx {
            Transaction::Install { packages, .. } => pins(packages),
            Transaction::Remove { names, purge } => {
                let mut c = self.transaction();
                // -n also deletes the saved configuration files (.pacsave): a purge.
                c.arg(if *purge { "-Rn" } else { "-R" })
                    .arg("--")
                    .args(names);
                Ok(vec![Step::new(c)])
            }
            Transaction::Restore { install, remove } => {
                let install: Vec<(String, Option<String>)> = install
                    .iter()
                    .map(|(n, v)| (n.clone(), Some(v.clone())))
                    .collect();
                // Downgrades first, so nothing still needs what is removed after them.
                let mut steps = pins(&install)?;
                if !remove.is_empty() {
                    let mut c = self.transaction();
                    c.args(["-R", "--"]).args(remove);
                    steps.push(Step::new(c));
                }
                Ok(steps)
            }
        }
    }
}

/// Whether a process named `name` runs (its `/proc/PID/comm`).
fn process_running(name: &str) -> bool {
    std::fs::read_dir("/proc").is_ok_and(|d| {
        d.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|f| f.bytes().all(|b| b.is_ascii_digit()))
                && std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim_end() == name)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        for ok in [
            "linux",
            "python-pip",
            "gtk3",
            "lib32-glibc",
            "xorg-x11@1",
            "a",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-S",
            ".hidden",
            "Linux",
            "a b",
            "a/b",
            "x;id",
            "gl*",
            &"a".repeat(129),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for ok in [
            "1.0-1",
            "1:2.3.4-2",
            "6.6.1.arch1-1",
            "1.0-1.1",
            "r123.abc_d-3",
        ] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in [
            "",
            "1.0",
            "1.0-a",
            "1.0-1.2.3",
            "x:1.0-1",
            "-1",
            "1.0 -1",
            "1.0-1;id",
            "1/0-1",
        ] {
            assert!(!valid_version(bad), "{bad:?}");
        }
    }

    #[test]
    fn desc_files() {
        let text = "%NAME%\nlpm-test-hello\n\n%VERSION%\n1.0-1\n\n%BASE%\nlpm-test-hello\n\n%DESC%\nLPM test package\n\n%ARCH%\nany\n\n%SIZE%\n8192\n\n%REASON%\n1\n";
        let p = parse_desc(text).unwrap();
        assert_eq!(p.name, "lpm-test-hello");
        assert_eq!(p.version, "1.0-1");
        assert_eq!(p.arch, "any");
        assert_eq!(p.installed_size_kib, Some(8));
        assert_eq!(p.summary, "LPM test package");
        assert!(parse_desc("%NAME%\nx\n").is_none());
    }

    #[test]
    fn query_upgrades() {
        let u = parse_query_upgrades(
            "linux 6.6.1.arch1-1 -> 6.6.2.arch1-1\nheld 1-1 -> 2-1 [ignored]\n",
        );
        assert_eq!(
            u,
            [(
                "linux".into(),
                "6.6.1.arch1-1".into(),
                "6.6.2.arch1-1".into()
            )]
        );
    }
}
