//! apk (Alpine Linux). Installed packages are read straight from apk's database
//! (`/lib/apk/db/installed`, replaced on every transaction); updates from `apk list --upgradable`
//! against the indexes as last refreshed. Alpine's indexes carry no security metadata, so no
//! update is flagged as security. Updates run `apk upgrade name` (to the newest version of the
//! indexes: apk cannot update to another one). A pinned install is `apk add name=version`, then
//! `apk add name` lifts the constraint that left in `/etc/apk/world`, so nothing stays held (the
//! name stays in the world file, as any `apk add` leaves it). A rollback reinstalls recorded
//! versions the same way, which needs them in a repository or apk's cache.
//!
//! apk-tools is not packaged for the Debian release the project is tested on: the parsers are
//! tested on outputs in the formats apk-tools 2.14 writes (`src/app_list.c`, `src/database.c`),
//! and the command lines are tested as built.

use super::{
    cached, clean_command, output_of, BackendError, Cached, Grammar, PackageBackend, Step,
    Transaction,
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
pub const NAME_RULE: &str = "1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '+' and '-', \
     starting with a letter or digit, without \".apk\"";
/// What [`valid_version`] accepts.
pub const VERSION_RULE: &str = "an apk version such as 1.2.3, 1.2.3a, 1.2.3_rc1 or 1.2.3-r4: \
     dot-separated numbers, an optional letter, optional _alpha/_beta/_pre/_rc/_cvs/_svn/_git/\
     _hg/_p suffixes with a number, an optional -rN";

/// Checks an apk package name.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=128).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._+-".contains(c))
        // apk takes any argument containing `.apk` for a package file.
        && !name.contains(".apk")
}

/// Checks an apk version (apk-tools' grammar, `src/version.c`).
pub fn valid_version(v: &str) -> bool {
    if v.is_empty() || v.len() > 128 {
        return false;
    }
    let (main, rel) = match v.rsplit_once("-r") {
        Some((m, r)) => (m, Some(r)),
        None => (v, None),
    };
    if rel.is_some_and(|r| r.is_empty() || !r.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    let mut parts = main.split('_');
    let Some(numbers) = parts.next() else {
        return false;
    };
    // 1.2.3 with an optional letter after the last number.
    let numbers = numbers
        .strip_suffix(|c: char| c.is_ascii_lowercase())
        .unwrap_or(numbers);
    if numbers.is_empty()
        || !numbers
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    parts.all(|suffix| {
        let digits = suffix.trim_start_matches(|c: char| c.is_ascii_lowercase());
        let word = &suffix[..suffix.len() - digits.len()];
        ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"].contains(&word)
            && digits.bytes().all(|c| c.is_ascii_digit())
    })
}

/// Parses apk's installed database: records of `K:value` lines separated by blank lines.
pub fn parse_installed(text: &str) -> Vec<InstalledPackage> {
    let mut out = Vec::new();
    for record in text.split("\n\n") {
        let mut p = InstalledPackage {
            name: String::new(),
            version: String::new(),
            arch: String::new(),
            status: "installed".into(),
            summary: String::new(),
            installed_size_kib: None,
            source: None,
        };
        for line in record.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            match key {
                "P" => p.name = value.to_owned(),
                "V" => p.version = value.to_owned(),
                "A" => p.arch = value.to_owned(),
                "T" => p.summary = value.to_owned(),
                "I" => p.installed_size_kib = value.parse::<u64>().ok().map(|b| b.div_ceil(1024)),
                "o" => p.source = Some(value.to_owned()),
                _ => {}
            }
        }
        if !p.name.is_empty() && !p.version.is_empty() {
            out.push(p);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch)));
    out
}

/// Splits `name-version` (`musl-1.2.4-r3`): the version starts after the last `-` that is
/// followed by a digit and leaves a valid version.
pub fn split_name_version(s: &str) -> Option<(&str, &str)> {
    s.match_indices('-')
        .map(|(at, _)| at)
        .filter(|&at| {
            s.as_bytes()[at + 1..]
                .first()
                .is_some_and(u8::is_ascii_digit)
        })
        .find(|&at| valid_version(&s[at + 1..]))
        .map(|at| (&s[..at], &s[at + 1..]))
}

/// Parses `apk list --upgradable`:
/// `name-new arch {origin} (license) [upgradable from: name-old]`.
pub fn parse_upgradable(text: &str) -> Vec<Patch> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, candidate) = split_name_version(words.next()?)?;
            let arch = words.next()?;
            let origin = words
                .next()
                .and_then(|o| o.strip_prefix('{'))
                .and_then(|o| o.strip_suffix('}'))
                .unwrap_or_default();
            let from = line
                .split("[upgradable from: ")
                .nth(1)?
                .trim_end()
                .strip_suffix(']')?;
            let (_, installed) = split_name_version(from)?;
            Some(Patch {
                name: name.to_owned(),
                arch: arch.to_owned(),
                installed_version: installed.to_owned(),
                candidate_version: candidate.to_owned(),
                origin: origin.to_owned(),
                security: false,
                severity: None,
                cves: Vec::new(),
                reboot_likely: name.starts_with("linux-")
                    || matches!(name, "musl" | "openrc" | "intel-ucode" | "amd-ucode"),
            })
        })
        .collect()
}

/// The apk backend.
#[derive(Debug)]
pub struct ApkBackend {
    root: Option<PathBuf>,
    installed_path: PathBuf,
    installed: Cached<Vec<InstalledPackage>>,
}

impl ApkBackend {
    /// The system's apk, or one working on an isolated `root`.
    pub fn new(root: Option<PathBuf>) -> Self {
        Self {
            installed_path: super::under(root.as_deref(), "lib/apk/db/installed"),
            root,
            installed: Cached::default(),
        }
    }

    fn apk(&self) -> std::process::Command {
        let mut c = clean_command("apk");
        c.arg("--no-progress");
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        c
    }
}

impl PackageBackend for ApkBackend {
    fn name(&self) -> &'static str {
        "apk"
    }

    fn installed(&self) -> Result<Arc<Vec<InstalledPackage>>, BackendError> {
        let key = vec![crate::stamp::of(&self.installed_path)];
        cached(&self.installed, key, || {
            let text = std::fs::read_to_string(&self.installed_path).map_err(|source| {
                BackendError::Database {
                    path: self.installed_path.display().to_string(),
                    source,
                }
            })?;
            Ok(parse_installed(&text))
        })
    }

    fn interrupted(&self) -> Result<bool, BackendError> {
        Ok(false)
    }

    fn last_update(&self) -> Option<String> {
        let dir = super::under(self.root.as_deref(), "var/cache/apk");
        let modified = std::fs::metadata(dir).ok()?.modified().ok()?;
        Some(chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339())
    }

    fn upgradable(&self) -> Result<Arc<Vec<Patch>>, BackendError> {
        let mut c = self.apk();
        c.args(["list", "--upgradable"]);
        let mut patches = parse_upgradable(&output_of(c, "apk list --upgradable")?);
        patches.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Arc::new(patches))
    }

    fn grammar(&self) -> &'static Grammar {
        &GRAMMAR
    }

    /// The running kernel's module directory is gone once apk replaced the kernel package.
    fn reboot_required(&self) -> bool {
        super::running_kernel_modules_gone(&super::under(self.root.as_deref(), "lib/modules"))
    }

    fn steps(&self, tx: &Transaction) -> Result<Vec<Step>, BackendError> {
        // `name=version` installs that version and records the constraint in the world file; a
        // second `apk add name` relaxes it again, so no package is left held (as with the
        // other families: a rollback does not stop later updates).
        let install = |packages: &[(String, Option<String>)], upgrade: bool| -> Vec<Step> {
            let mut c = self.apk();
            if upgrade {
                // Updates go to the newest version of the indexes (the candidate) and leave the
                // world file as it was; apk cannot update to another version than that.
                c.args(["upgrade", "--"])
                    .args(packages.iter().map(|(n, _)| n));
                return vec![Step::new(c)];
            }
            c.arg("add");
            c.arg("--").args(packages.iter().map(|(n, v)| match v {
                Some(v) => format!("{n}={v}"),
                None => n.clone(),
            }));
            let mut steps = vec![Step::new(c)];
            let pinned: Vec<&String> = packages
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(n, _)| n)
                .collect();
            if !pinned.is_empty() {
                let mut relax = self.apk();
                relax.args(["add", "--"]).args(pinned);
                steps.push(Step::new(relax));
            }
            steps
        };
        Ok(match tx {
            Transaction::Install {
                packages,
                only_upgrade,
            } => install(packages, *only_upgrade),
            Transaction::Remove { names, .. } => {
                let mut c = self.apk();
                c.args(["del", "--"]).args(names);
                vec![Step::new(c)]
            }
            Transaction::Restore {
                install: back,
                remove,
            } => {
                let back: Vec<(String, Option<String>)> = back
                    .iter()
                    .map(|(n, v)| (n.clone(), Some(v.clone())))
                    .collect();
                let mut steps = if back.is_empty() {
                    Vec::new()
                } else {
                    install(&back, false)
                };
                if !remove.is_empty() {
                    let mut c = self.apk();
                    c.args(["del", "--"]).args(remove);
                    steps.push(Step::new(c));
                }
                steps
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two records of `/lib/apk/db/installed` as apk-tools writes them (`apk_db_write_fdb`).
    const INSTALLED: &str = "C:Q1z7hk0p8y8nG9iR3yYgXQ0bU7ytc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\nI:622592\nT:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\no:musl\nm:Timo Teräs <timo.teras@iki.fi>\nt:1698412345\nc:8ba1a7e2b1b3e1b0a9d2f4e6c5b7a8d9e0f1a2b3\np:so:libc.musl-x86_64.so.1=1\nF:lib\nR:ld-musl-x86_64.so.1\na:0:0:755\nZ:Q1ZpcGUWbGSNmMZaJuJqa8NQxmU8o=\n\nC:Q1abc=\nP:busybox\nV:1.36.1-r15\nA:x86_64\nI:950272\nT:Size optimized toolbox of many common UNIX utilities\no:busybox\n\n";

    /// `apk list --upgradable` lines (`print_package` in src/app_list.c).
    const UPGRADABLE: &str = "musl-1.2.4-r3 x86_64 {musl} (MIT) [upgradable from: musl-1.2.4-r2]\n\
        py3-setuptools-70.3.0-r0 noarch {py3-setuptools} (MIT) [upgradable from: py3-setuptools-68.2.2-r0]\n\
        linux-lts-6.6.58-r0 x86_64 {linux-lts} (GPL-2.0-only) [upgradable from: linux-lts-6.6.41-r0]\n";

    #[test]
    fn installed_database() {
        let p = parse_installed(INSTALLED);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "busybox");
        assert_eq!(p[1].name, "musl");
        assert_eq!(p[1].version, "1.2.4-r2");
        assert_eq!(p[1].installed_size_kib, Some(608));
        assert_eq!(p[1].source.as_deref(), Some("musl"));
    }

    #[test]
    fn upgradable_list() {
        let p = parse_upgradable(UPGRADABLE);
        assert_eq!(p.len(), 3);
        assert_eq!(
            (
                p[0].name.as_str(),
                p[0].installed_version.as_str(),
                p[0].candidate_version.as_str()
            ),
            ("musl", "1.2.4-r2", "1.2.4-r3")
        );
        assert_eq!(p[1].name, "py3-setuptools");
        assert_eq!(p[1].origin, "py3-setuptools");
        assert!(p[2].reboot_likely && !p[1].reboot_likely);
        assert!(parse_upgradable("WARNING: opening /x: No such file\n").is_empty());
    }

    #[test]
    fn grammar() {
        for ok in [
            "1.2.4-r2",
            "1.2.3a",
            "2.0_rc1",
            "1.0_p20240101-r1",
            "6.6.58-r0",
            "0",
        ] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in [
            "", "a1", "1.2-rx", "1..2", "1.0_foo1", "1.0;id", "1.0 -r1", "1.0-r", "-r1",
        ] {
            assert!(!valid_version(bad), "{bad:?}");
        }
        for ok in ["musl", "py3-setuptools", "g++", "xf86-video-intel", "R"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-u", ".x", "a b", "a=1", "a/b", "x$(id)", "a>1"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(
            split_name_version("musl-1.2.4-r3"),
            Some(("musl", "1.2.4-r3"))
        );
        assert_eq!(
            split_name_version("py3-foo-2-1.0-r0"),
            Some(("py3-foo-2", "1.0-r0"))
        );
    }

    #[test]
    fn command_lines() {
        let b = ApkBackend::new(Some("/srv/root".into()));
        let args = |tx: &Transaction| -> Vec<Vec<String>> {
            b.steps(tx)
                .unwrap()
                .iter()
                .map(|s| {
                    s.command
                        .as_std()
                        .get_args()
                        .map(|a| a.to_string_lossy().into_owned())
                        .collect()
                })
                .collect()
        };
        let base = ["--no-progress", "--root", "/srv/root"];
        let with = |rest: &[&str]| -> Vec<String> {
            base.iter().chain(rest).map(|s| (*s).to_owned()).collect()
        };
        assert_eq!(
            args(&Transaction::Install {
                packages: vec![
                    ("musl".into(), Some("1.2.4-r2".into())),
                    ("curl".into(), None)
                ],
                only_upgrade: false
            }),
            [
                with(&["add", "--", "musl=1.2.4-r2", "curl"]),
                with(&["add", "--", "musl"])
            ]
        );
        assert_eq!(
            args(&Transaction::Install {
                packages: vec![("musl".into(), Some("1.2.4-r3".into()))],
                only_upgrade: true
            }),
            [with(&["upgrade", "--", "musl"])]
        );
        assert_eq!(
            args(&Transaction::Restore {
                install: vec![("musl".into(), "1.2.4-r2".into())],
                remove: vec!["new-dep".into()]
            }),
            [
                with(&["add", "--", "musl=1.2.4-r2"]),
                with(&["add", "--", "musl"]),
                with(&["del", "--", "new-dep"])
            ]
        );
    }
}
