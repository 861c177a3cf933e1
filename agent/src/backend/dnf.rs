//! dnf (RHEL, Rocky, Alma, Fedora; `yum` is the same tool under its old name on RHEL 8 and
//! later). Installed packages come from the RPM database ([`super::rpm`]); updates from
//! `dnf repoquery --upgrades`, with security advisories, severities and CVE ids from
//! `dnf updateinfo`. A pinned version is installed with `dnf install name-version`, which also
//! downgrades; a rollback that must both downgrade and remove runs as one `dnf shell` transaction.

use super::rpm::{self, Rpm};
use super::{
    cached, clean_command, output_of, BackendError, Cached, Grammar, PackageBackend, Step,
    Transaction,
};
use shared::agent::{InstalledPackage, Patch};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The dnf backend.
#[derive(Debug)]
pub struct DnfBackend {
    program: &'static str,
    rpm: Rpm,
    config: Option<PathBuf>,
    cache_dir: PathBuf,
    patches: Cached<Vec<Patch>>,
}

impl DnfBackend {
    /// The system's dnf, or one working on an isolated `root` with its own `config` file.
    /// `program` is `dnf` or `yum`.
    pub fn new(
        program: &'static str,
        root: Option<PathBuf>,
        config: Option<PathBuf>,
    ) -> Result<Self, BackendError> {
        let cache_dir = super::under(root.as_deref(), "var/cache/dnf");
        // dnf5 (Fedora 41 and later) has other commands and output formats (no `shell`, five
        // columns in `advisory list`): refused by name rather than misread.
        let mut c = clean_command(program);
        c.arg("--version");
        let version = output_of(c, &format!("{program} --version"))?;
        if version.trim_start().starts_with("dnf5") || version.trim_start().starts_with("5.") {
            return Err(BackendError::Command {
                command: format!("{program} --version"),
                message: "dnf5 is not supported yet (dnf 4: RHEL 8-10 and their rebuilds, Fedora up to 40)".into(),
            });
        }
        Ok(Self {
            program,
            rpm: Rpm::new(root)?,
            config,
            cache_dir,
            patches: Cached::default(),
        })
    }

    /// dnf with the fixed environment and the root and configuration options.
    fn dnf(&self) -> std::process::Command {
        let mut c = clean_command(self.program);
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        if let Some(root) = self.rpm.root() {
            c.arg("--installroot").arg(root);
        }
        c
    }

    fn compute_patches(&self) -> Result<Vec<Patch>, BackendError> {
        let installed = self.rpm.database()?;
        let mut c = self.dnf();
        c.args([
            "-q",
            "repoquery",
            "--upgrades",
            "--latest-limit=1",
            "--queryformat",
            "%{name}\t%{arch}\t%{epoch}\t%{version}\t%{release}\t%{repoid}\n",
        ]);
        let updates = output_of(c, "dnf repoquery --upgrades")?;
        let mut c = self.dnf();
        c.args(["-q", "updateinfo", "list", "--updates", "--security"]);
        let advisories = parse_updateinfo(&output_of(c, "dnf updateinfo list")?);
        let mut c = self.dnf();
        c.args([
            "-q",
            "updateinfo",
            "list",
            "--updates",
            "--security",
            "--with-cve",
        ]);
        let cves = parse_updateinfo(&output_of(c, "dnf updateinfo list --with-cve")?);
        Ok(patches(&installed.packages, &updates, &advisories, &cves))
    }

    fn base_job(&self) -> std::process::Command {
        let mut c = self.dnf();
        c.args([
            "-y",
            // Never take packages away that the request did not name.
            "--setopt=clean_requirements_on_remove=False",
        ]);
        c
    }
}

/// Advisory (or CVE) ids and the highest severity, by package name: every advisory listed with
/// `--updates` fixes something in a version newer than the installed one, and the candidate (the
/// newest build) includes the fix even when the advisory names an older build.
type Advisories = HashMap<String, (Vec<String>, Option<String>)>;

/// Rank of an advisory severity (higher is worse); unknown words rank lowest.
fn severity_rank(s: &str) -> u8 {
    match s {
        "Critical" => 4,
        "Important" => 3,
        "Moderate" => 2,
        "Low" => 1,
        _ => 0,
    }
}

/// `name-version`, as dnf takes a pinned package.
fn spec(name: &str, version: &Option<String>) -> String {
    match version {
        Some(v) => format!("{name}-{v}"),
        None => name.to_owned(),
    }
}

/// Advisory lines of `dnf updateinfo list`: `ID  Severity/Sec.  NEVRA` (or a CVE id first with
/// `--with-cve`). Answers, per (name, version), the ids and the severity.
fn parse_updateinfo(text: &str) -> Advisories {
    let mut out = Advisories::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(id), Some(kind), Some(nevra), None) = (w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        let Some((name, _, _)) = rpm::split_nevra(nevra) else {
            continue;
        };
        let severity = kind
            .strip_suffix("/Sec.")
            .filter(|s| !s.is_empty() && *s != "None" && *s != "Unknown")
            .map(str::to_owned);
        let entry = out.entry(name).or_default();
        if !entry.0.iter().any(|i| i == id) {
            entry.0.push(id.to_owned());
        }
        let worse = match (&entry.1, &severity) {
            (None, Some(_)) => true,
            (Some(old), Some(new)) => severity_rank(new) > severity_rank(old),
            _ => false,
        };
        if worse {
            entry.1 = severity;
        }
    }
    out
}

/// The update list from `repoquery` lines (`name arch epoch version release repo`, tab
/// separated), the installed versions and the security advisories, security first.
fn patches(
    installed: &[InstalledPackage],
    repoquery: &str,
    advisories: &Advisories,
    cves: &Advisories,
) -> Vec<Patch> {
    let mut out: Vec<Patch> = repoquery
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [name, arch, epoch, version, release, repo] = f[..] else {
                return None;
            };
            let candidate = rpm::evr(epoch, version, release);
            let current = installed
                .iter()
                .rfind(|p| p.name == name && (p.arch == arch || arch == "noarch"))?;
            let advisory = advisories.get(name);
            Some(Patch {
                name: name.to_owned(),
                arch: arch.to_owned(),
                installed_version: current.version.clone(),
                candidate_version: candidate,
                origin: repo.to_owned(),
                security: advisory.is_some(),
                severity: advisory.and_then(|a| a.1.clone()),
                cves: cves.get(name).map(|c| c.0.clone()).unwrap_or_default(),
                reboot_likely: rpm::reboot_likely(name),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.security
            .cmp(&a.security)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

impl PackageBackend for DnfBackend {
    fn name(&self) -> &'static str {
        "dnf"
    }

    fn installed(&self) -> Result<Arc<Vec<InstalledPackage>>, BackendError> {
        Ok(Arc::new(self.rpm.database()?.packages.clone()))
    }

    /// rpm has no half-installed state a later command must repair; an unfinished dnf
    /// transaction leaves both versions installed, which `versions` shows.
    fn interrupted(&self) -> Result<bool, BackendError> {
        Ok(false)
    }

    fn last_update(&self) -> Option<String> {
        let modified = std::fs::metadata(&self.cache_dir).ok()?.modified().ok()?;
        Some(chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339())
    }

    fn upgradable(&self) -> Result<Arc<Vec<Patch>>, BackendError> {
        let mut key = self.rpm.stamp();
        key.push(crate::stamp::of(&self.cache_dir));
        // Held while dnf or zypper runs: concurrent askers wait for one answer.
        cached(&self.patches, key, || self.compute_patches())
    }

    fn grammar(&self) -> &'static Grammar {
        &rpm::GRAMMAR
    }

    fn reboot_required(&self) -> bool {
        self.rpm.reboot_required(&super::running_kernel())
    }

    fn steps(&self, tx: &Transaction) -> Result<Vec<Step>, BackendError> {
        let mut c = self.base_job();
        match tx {
            Transaction::Install {
                packages,
                only_upgrade,
            } => {
                let pinned = packages.iter().any(|(_, v)| v.is_some());
                // `upgrade` never installs a package that is not there; a pinned version (which
                // may be a downgrade) needs `install`, and the job checked it is installed.
                c.arg(if *only_upgrade && !pinned {
                    "upgrade"
                } else {
                    "install"
                });
                c.arg("--");
                c.args(packages.iter().map(|(n, v)| spec(n, v)));
            }
            Transaction::Remove { names, .. } => {
                c.args(["remove", "--"]).args(names);
            }
            Transaction::Restore { install, remove } if remove.is_empty() => {
                c.args(["install", "--"]);
                c.args(install.iter().map(|(n, v)| format!("{n}-{v}")));
            }
            Transaction::Restore { install, remove } => {
                // Downgrades and removals in one transaction, so nothing depends on a removed
                // package in between. The script holds only names and versions the agent
                // validated (no spaces, no newlines).
                c.arg("shell");
                // Checked again here (they come from the job's record, not the request): a
                // space or newline would be another shell command.
                if let Some(bad) = install
                    .iter()
                    .find(|(n, v)| !rpm::valid_name(n) || !rpm::valid_version(v))
                    .map(|(n, v)| format!("{n}-{v}"))
                    .or_else(|| remove.iter().find(|n| !rpm::valid_name(n)).cloned())
                {
                    return Err(BackendError::Command {
                        command: "dnf shell".into(),
                        message: format!("refusing to script {bad:?}: not a valid package"),
                    });
                }
                let mut script = String::new();
                if !install.is_empty() {
                    script.push_str("install");
                    for (n, v) in install {
                        script.push_str(&format!(" {n}-{v}"));
                    }
                    script.push('\n');
                }
                script.push_str("remove");
                for n in remove {
                    script.push(' ');
                    script.push_str(n);
                }
                script.push_str("\nrun\n");
                return Ok(vec![Step {
                    stdin: Some(script),
                    ..Step::new(c)
                }]);
            }
        }
        Ok(vec![Step::new(c)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: "noarch".into(),
            status: "installed".into(),
            summary: String::new(),
            installed_size_kib: None,
            source: None,
        }
    }

    #[test]
    fn updates_with_advisories_security_first() {
        let installed = [
            pkg("lpm-test-hello", "1.0-1"),
            pkg("lpm-test-secure", "1.0-1"),
        ];
        let rq = "lpm-test-hello\tnoarch\t0\t2.0\t1\tlpm-test\nlpm-test-secure\tnoarch\t0\t1.0\t2\tlpm-test\nnot-installed\tnoarch\t0\t1\t1\tx\n";
        let adv = parse_updateinfo(
            "LPM-2026-0001 Important/Sec. lpm-test-secure-1.0-2.noarch\nLast metadata expiration check: 0:00:01 ago\n",
        );
        let cves = parse_updateinfo(
            "CVE-2026-0001 Important/Sec. lpm-test-secure-1.0-2.noarch\nCVE-2026-0002 Important/Sec. lpm-test-secure-1.0-2.noarch\n",
        );
        let p = patches(&installed, rq, &adv, &cves);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "lpm-test-secure");
        assert!(p[0].security);
        assert_eq!(p[0].severity.as_deref(), Some("Important"));
        assert_eq!(p[0].cves, ["CVE-2026-0001", "CVE-2026-0002"]);
        assert_eq!(
            (
                p[1].installed_version.as_str(),
                p[1].candidate_version.as_str()
            ),
            ("1.0-1", "2.0-1")
        );
        assert!(!p[1].security && p[1].cves.is_empty());
    }

    #[test]
    fn an_advisory_for_an_older_build_flags_the_newest_candidate() {
        // RHEL: the fix came in -25, the newest build is -27; both are newer than the installed.
        let installed = [InstalledPackage {
            arch: "x86_64".into(),
            ..pkg("openssl", "1:3.0.7-24.el9")
        }];
        let rq = "openssl\tx86_64\t1\t3.0.7\t27.el9\tbaseos\n";
        let adv = parse_updateinfo(
            "RHSA-2024:1 Moderate/Sec. openssl-1:3.0.7-25.el9.x86_64\nRHSA-2024:2 Important/Sec. openssl-1:3.0.7-26.el9.x86_64\n",
        );
        let p = patches(&installed, rq, &adv, &Advisories::new());
        assert_eq!(p[0].candidate_version, "1:3.0.7-27.el9");
        assert!(p[0].security);
        assert_eq!(p[0].severity.as_deref(), Some("Important"));
    }

    #[test]
    fn a_restore_with_removals_is_one_shell_transaction() {
        let b = DnfBackend {
            program: "dnf",
            rpm: Rpm::at(None, PathBuf::from("/nonexistent")),
            config: None,
            cache_dir: PathBuf::new(),
            patches: Cached::default(),
        };
        let steps = b
            .steps(&Transaction::Restore {
                install: vec![("lpm-test-hello".into(), "1.0-1".into())],
                remove: vec!["lpm-test-app".into(), "lpm-test-lib".into()],
            })
            .unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].stdin.as_deref(),
            Some("install lpm-test-hello-1.0-1\nremove lpm-test-app lpm-test-lib\nrun\n")
        );
        let args: Vec<_> = steps[0].command.as_std().get_args().collect();
        assert_eq!(args.last().and_then(|a| a.to_str()), Some("shell"));
    }
}
