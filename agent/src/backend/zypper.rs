//! zypper (SUSE Linux Enterprise, openSUSE). Installed packages come from the RPM database
//! ([`super::rpm`]); updates from `zypper list-updates`; security from the needed patches of
//! category security (`zypper list-patches`), their CVE ids (`--cve`) and the packages each
//! fixes (the patch's `Conflicts: name < version`, from `zypper info -t patch`). Installs,
//! downgrades (`--oldpackage`) and removals (`!name`) of one request run as one transaction.

use super::rpm::{self, Rpm};
use super::{
    cached, clean_command, BackendError, Cached, Grammar, PackageBackend, Step, Transaction,
};
use shared::agent::{InstalledPackage, Patch};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// zypper's exit statuses that report success: 0, and the informational 100 (updates needed),
/// 101 (security updates needed), 102 (reboot needed), 103 (restart of the package manager
/// needed), 106 (some repositories skipped).
const SUCCESS: &[i32] = &[0, 100, 101, 102, 103, 106];

/// The zypper backend.
#[derive(Debug)]
pub struct ZypperBackend {
    rpm: Rpm,
    cache_dir: PathBuf,
    patches: Cached<Vec<Patch>>,
    lock_timeout_secs: u64,
}

/// Rows of one of zypper's tables (`a | b | c`), cells trimmed; the header and rule lines are
/// skipped by the caller's column count and content.
fn table_rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|l| l.contains(" | "))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect()
}

/// `zypper list-updates`: `S | Repository | Name | Current Version | Available Version | Arch`.
fn parse_updates(text: &str) -> Vec<(String, String, String, String, String)> {
    table_rows(text)
        .into_iter()
        .filter_map(|r| match r[..] {
            [_, repo, name, current, available, arch]
                if name != "Name" && rpm::valid_name(name) =>
            {
                Some((
                    name.to_owned(),
                    current.to_owned(),
                    available.to_owned(),
                    arch.to_owned(),
                    repo.to_owned(),
                ))
            }
            _ => None,
        })
        .collect()
}

/// `zypper list-patches --category security`: needed patches and their severity.
/// Columns: `Repository | Name | Category | Severity | Interactive | Status | [Since |] Summary`.
fn parse_patches(text: &str) -> Vec<(String, String)> {
    table_rows(text)
        .into_iter()
        .filter_map(|r| {
            let (name, category, severity, status) = (r.get(1)?, r.get(2)?, r.get(3)?, r.get(5)?);
            (*category == "security" && *status == "needed")
                .then(|| ((*name).to_owned(), (*severity).to_owned()))
        })
        .collect()
}

/// `zypper list-patches --cve`: `Issue | No. | Patch | …`, answered as patch → CVE ids.
fn parse_patch_cves(text: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for r in table_rows(text) {
        if let (Some(&"cve"), Some(id), Some(patch)) = (r.first(), r.get(1), r.get(2)) {
            let ids = out.entry((*patch).to_owned()).or_default();
            if !ids.iter().any(|i| i == id) {
                ids.push((*id).to_owned());
            }
        }
    }
    out
}

/// `zypper info -t patch A B …` answers one block per patch, each headed
/// `Information for patch NAME:`; answered by patch name.
fn split_patch_infos(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for block in text.split("Information for patch ").skip(1) {
        if let Some((name, rest)) = block.split_once(':') {
            out.insert(name.trim().to_owned(), rest.to_owned());
        }
    }
    out
}

/// The packages a patch fixes, from `zypper info -t patch`: its `Conflicts` entries
/// `name[.arch] < version`, on the key's line or the indented lines after it.
fn parse_patch_conflicts(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_conflicts = false;
    for line in text.lines() {
        let body = if let Some(rest) = line.strip_prefix("Conflicts") {
            in_conflicts = true;
            rest.trim_start().trim_start_matches(':').trim()
        } else if in_conflicts && line.starts_with(char::is_whitespace) {
            line.trim()
        } else {
            in_conflicts = false;
            continue;
        };
        let words: Vec<&str> = body.split_whitespace().collect();
        if let [name, "<", version] = words[..] {
            let name = match name.rsplit_once('.') {
                Some((n, arch))
                    if !arch.is_empty() && !arch.contains('-') && rpm::valid_name(n) =>
                {
                    // `name.arch`, unless the dot belongs to the name (`python3.11`): arches
                    // have no digits after a letter-only prefix, so only the known ones count.
                    if [
                        "noarch", "x86_64", "i586", "i686", "aarch64", "ppc64le", "s390x",
                    ]
                    .contains(&arch)
                    {
                        n
                    } else {
                        name
                    }
                }
                _ => name,
            };
            out.push((name.to_owned(), version.to_owned()));
        }
    }
    out
}

/// SUSE names its kernels differently on each side: the package `kernel-default`
/// `5.14.21-150500.55.44.1.x86_64` runs as `5.14.21-150500.55.44-default` (no build counter, no
/// architecture, the flavour instead). Both are brought to `5.14.21-150500.55.44`.
fn suse_kernel_reboot_required(kernels: &[(u64, String)], running: &str) -> bool {
    let package = |r: &String| {
        let without_arch = r.rsplit_once('.').map_or(r.as_str(), |(vr, _)| vr);
        without_arch
            .rsplit_once('.')
            .map_or(without_arch, |(vr, _)| vr)
            .to_owned()
    };
    let running = running.rsplit_once('-').map_or(running, |(vr, _)| vr);
    let kernels: Vec<(u64, String)> = kernels.iter().map(|(t, r)| (*t, package(r))).collect();
    rpm::kernel_reboot_required(&kernels, running)
}

impl ZypperBackend {
    /// The system's zypper, or one working on an isolated `root`.
    pub fn new(root: Option<PathBuf>) -> Result<Self, BackendError> {
        let cache_dir = super::under(root.as_deref(), "var/cache/zypp");
        Ok(Self {
            rpm: Rpm::new(root)?,
            cache_dir,
            patches: Cached::default(),
            lock_timeout_secs: super::apt::DEFAULT_LOCK_TIMEOUT_SECS,
        })
    }

    /// Waits at most `secs` for another zypper (or YaST) to release the package lock before a
    /// query or job fails with zypper's message; zypp's own default is not to wait at all.
    pub fn with_lock_timeout(mut self, secs: u64) -> Self {
        self.lock_timeout_secs = secs;
        self
    }

    fn zypper(&self) -> std::process::Command {
        let mut c = clean_command("zypper");
        c.env("ZYPP_LOCK_TIMEOUT", self.lock_timeout_secs.to_string());
        c.arg("--non-interactive");
        if let Some(r) = self.rpm.root() {
            c.arg("--root").arg(r);
        }
        c
    }

    fn query(&self, args: &[&str]) -> Result<String, BackendError> {
        let mut c = self.zypper();
        // Lists as of the host's last refresh (its own timer), never a refresh of their own.
        c.args(["--quiet", "--no-refresh"]).args(args);
        let what = format!("zypper {}", args.join(" "));
        // list-updates and list-patches answer 100/101 when something is pending.
        let out = c.output().map_err(|e| BackendError::Command {
            command: what.clone(),
            message: e.to_string(),
        })?;
        if out.status.code().is_some_and(|c| SUCCESS.contains(&c)) {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(BackendError::Command {
                command: what,
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    fn compute_patches(&self) -> Result<Vec<Patch>, BackendError> {
        let updates = parse_updates(&self.query(&["list-updates"])?);
        let security = parse_patches(&self.query(&["list-patches", "--category", "security"])?);
        let cves =
            parse_patch_cves(&self.query(&["list-patches", "--cve", "--category", "security"])?);
        // Which package each needed security patch fixes, and the patch's severity and CVEs.
        let mut fixes: HashMap<String, (Option<String>, Vec<String>)> = HashMap::new();
        let infos = if security.is_empty() {
            HashMap::new()
        } else {
            // One zypper run (and one lock) for every needed patch.
            let mut args = vec!["info", "-t", "patch", "--"];
            args.extend(security.iter().map(|(p, _)| p.as_str()));
            split_patch_infos(&self.query(&args)?)
        };
        for (patch, severity) in &security {
            let info = infos.get(patch).map(String::as_str).unwrap_or_default();
            for (name, _) in parse_patch_conflicts(info) {
                let entry = fixes.entry(name).or_default();
                if entry.0.is_none() && !matches!(severity.as_str(), "unspecified" | "") {
                    let mut s = severity.clone();
                    if let Some(first) = s.get_mut(..1) {
                        first.make_ascii_uppercase();
                    }
                    entry.0 = Some(s);
                }
                for id in cves.get(patch).into_iter().flatten() {
                    if !entry.1.contains(id) {
                        entry.1.push(id.clone());
                    }
                }
            }
        }
        let mut out: Vec<Patch> = updates
            .into_iter()
            .map(|(name, current, available, arch, repo)| {
                let fix = fixes.get(&name);
                Patch {
                    reboot_likely: rpm::reboot_likely(&name),
                    security: fix.is_some(),
                    severity: fix.and_then(|f| f.0.clone()),
                    cves: fix.map(|f| f.1.clone()).unwrap_or_default(),
                    name,
                    arch,
                    installed_version: current,
                    candidate_version: available,
                    origin: repo,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.security
                .cmp(&a.security)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    fn job(&self) -> std::process::Command {
        let mut c = self.zypper();
        c.arg("--no-refresh");
        c
    }
}

fn step(c: std::process::Command) -> Step {
    Step {
        success: SUCCESS,
        ..Step::new(c)
    }
}

impl PackageBackend for ZypperBackend {
    fn name(&self) -> &'static str {
        "zypper"
    }

    fn installed(&self) -> Result<Arc<Vec<InstalledPackage>>, BackendError> {
        Ok(Arc::new(self.rpm.database()?.packages.clone()))
    }

    fn interrupted(&self) -> Result<bool, BackendError> {
        Ok(false)
    }

    fn last_update(&self) -> Option<String> {
        let modified = std::fs::metadata(self.cache_dir.join("raw"))
            .or_else(|_| std::fs::metadata(&self.cache_dir))
            .ok()?
            .modified()
            .ok()?;
        Some(chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339())
    }

    fn upgradable(&self) -> Result<Arc<Vec<Patch>>, BackendError> {
        let mut key = self.rpm.stamp();
        // A refresh rewrites each repository's `solv/ALIAS/solv`.
        let mut solv: Vec<std::path::PathBuf> = std::fs::read_dir(self.cache_dir.join("solv"))
            .map(|d| d.flatten().map(|e| e.path().join("solv")).collect())
            .unwrap_or_default();
        solv.sort();
        key.extend(solv.iter().map(|p| crate::stamp::of(p)));
        // Held while dnf or zypper runs: concurrent askers wait for one answer.
        cached(&self.patches, key, || self.compute_patches())
    }

    fn grammar(&self) -> &'static Grammar {
        &rpm::GRAMMAR
    }

    fn reboot_required(&self) -> bool {
        // zypper writes this after an update that needs a reboot (as Debian's tools do).
        if std::path::Path::new("/run/reboot-needed").exists() {
            return true;
        }
        self.rpm
            .database()
            .is_ok_and(|db| suse_kernel_reboot_required(&db.kernels, &super::running_kernel()))
    }

    fn steps(&self, tx: &Transaction) -> Result<Vec<Step>, BackendError> {
        let mut c = self.job();
        match tx {
            Transaction::Install {
                packages,
                only_upgrade,
            } => {
                let pinned = packages.iter().any(|(_, v)| v.is_some());
                if *only_upgrade && !pinned {
                    c.args(["update", "--"]);
                } else {
                    c.args(["install", "--oldpackage", "--"]);
                }
                c.args(packages.iter().map(|(n, v)| match v {
                    Some(v) => format!("{n}-{v}"),
                    None => n.clone(),
                }));
            }
            Transaction::Remove { names, .. } => {
                c.args(["remove", "--"]).args(names);
            }
            Transaction::Restore { install, remove } => {
                // `!name` removes within the same install transaction.
                c.args(["install", "--oldpackage", "--"]);
                c.args(install.iter().map(|(n, v)| format!("{n}-{v}")));
                c.args(remove.iter().map(|n| format!("!{n}")));
            }
        }
        Ok(vec![step(c)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suse_kernels_against_uname() {
        let kernels = [
            (1, "5.14.21-150500.55.39.1.x86_64".to_owned()),
            (2, "5.14.21-150500.55.44.1.x86_64".to_owned()),
        ];
        assert!(!suse_kernel_reboot_required(
            &kernels,
            "5.14.21-150500.55.44-default"
        ));
        assert!(suse_kernel_reboot_required(
            &kernels,
            "5.14.21-150500.55.39-default"
        ));
        assert!(!suse_kernel_reboot_required(
            &[],
            "5.14.21-150500.55.39-default"
        ));
        let infos = split_patch_infos(
            "\nInformation for patch A-1:\n-----\nConflicts   : a < 2-1\n\nInformation for patch B-2:\nConflicts   : b < 3-1\n",
        );
        assert_eq!(
            parse_patch_conflicts(&infos["A-1"]),
            [("a".to_owned(), "2-1".to_owned())]
        );
        assert_eq!(
            parse_patch_conflicts(&infos["B-2"]),
            [("b".to_owned(), "3-1".to_owned())]
        );
    }

    #[test]
    fn tables() {
        let lu = "S | Repository | Name            | Current Version | Available Version | Arch\n\
                  --+------------+-----------------+-----------------+-------------------+-------\n\
                  v | lpm-test   | lpm-test-hello  | 1.0-1           | 2.0-1             | noarch\n\
                  v | lpm-test   | lpm-test-secure | 1.0-1           | 1.0-2             | noarch\n";
        let u = parse_updates(lu);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].0, "lpm-test-hello");
        assert_eq!((u[1].1.as_str(), u[1].2.as_str()), ("1.0-1", "1.0-2"));
        let lp = "Repository | Name          | Category | Severity  | Interactive | Status | Since      | Summary\n\
                  -----------+---------------+----------+-----------+-------------+--------+------------+--------\n\
                  lpm-test   | LPM-2026-0001 | security | important | ---         | needed | 2026-11-30 | Important: fix\n\
                  lpm-test   | LPM-2026-0002 | security | moderate  | ---         | applied | 2026-11-30 | old\n";
        assert_eq!(
            parse_patches(lp),
            [("LPM-2026-0001".to_owned(), "important".to_owned())]
        );
        let cve = "Issue | No.           | Patch         | Category | Severity  | Interactive | Status | Since      | Summary\n\
                   cve   | CVE-2026-0001 | LPM-2026-0001 | security | important | ---         | needed | 2026-11-30 | x\n\
                   cve   | CVE-2026-0002 | LPM-2026-0001 | security | important | ---         | needed | 2026-11-30 | x\n";
        assert_eq!(
            parse_patch_cves(cve)["LPM-2026-0001"],
            ["CVE-2026-0001", "CVE-2026-0002"]
        );
        let info = "Name        : LPM-2026-0001\nProvides    : patch:LPM-2026-0001 = 1.4\nConflicts   : lpm-test-secure < 1.0-2\n";
        assert_eq!(
            parse_patch_conflicts(info),
            [("lpm-test-secure".to_owned(), "1.0-2".to_owned())]
        );
        let many = "Conflicts   : [3]\n    libfoo1.x86_64 < 2.0-1\n    python3.11 < 3.11.9-1\n    srcpackage:foo < 2.0-1\nDescription : x\n    not < 1-1\n";
        assert_eq!(
            parse_patch_conflicts(many),
            [
                ("libfoo1".to_owned(), "2.0-1".to_owned()),
                ("python3.11".to_owned(), "3.11.9-1".to_owned()),
                ("srcpackage:foo".to_owned(), "2.0-1".to_owned())
            ]
        );
    }
}
