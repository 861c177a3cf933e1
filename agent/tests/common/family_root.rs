//! Isolated roots for every package-manager family the agent supports, over the project's test
//! repositories (scripts/build-test-repo.sh for apt, scripts/build-test-family-repos.sh for the
//! others): the real tools, nothing of the machine's own packages.

use super::apt_root::{run, AptRoot};
use patch_agent::backend::dnf::DnfBackend;
use patch_agent::backend::pacman::PacmanBackend;
use patch_agent::backend::zypper::ZypperBackend;
use patch_agent::backend::PackageBackend;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A package-manager family under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Apt,
    Dnf,
    Zypper,
    Pacman,
}

impl Family {
    /// The backend's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Apt => "apt",
            Self::Dnf => "dnf",
            Self::Zypper => "zypper",
            Self::Pacman => "pacman",
        }
    }

    /// Whether the family's repositories say which updates fix security issues.
    pub fn has_security_metadata(self) -> bool {
        !matches!(self, Self::Pacman)
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// The family repositories, built once per test process.
fn family_repos() -> &'static Path {
    static REPOS: OnceLock<PathBuf> = OnceLock::new();
    REPOS.get_or_init(|| {
        if let Some(r) = std::env::var_os("LPM_TEST_FAMILY_REPOS") {
            return PathBuf::from(r);
        }
        let dir = tempfile::Builder::new()
            .prefix("lpm-family-repos")
            .tempdir()
            .unwrap()
            .keep();
        let repos = dir.join("repos");
        run(std::process::Command::new("bash")
            .arg(scripts().join("build-test-family-repos.sh"))
            .arg(&repos));
        repos
    })
}

/// One isolated root of a family.
pub struct FamilyRoot {
    pub family: Family,
    apt: Option<AptRoot>,
    _dir: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl FamilyRoot {
    pub fn new(family: Family) -> Self {
        if family == Family::Apt {
            let apt = AptRoot::new();
            return Self {
                family,
                root: apt.root.clone(),
                apt: Some(apt),
                _dir: None,
            };
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        run(std::process::Command::new("bash")
            .arg(scripts().join("test-family-root.sh"))
            .arg(family.name())
            .arg(&root)
            .arg(family_repos()));
        Self {
            family,
            apt: None,
            _dir: Some(dir),
            root,
        }
    }

    /// A backend working on this root.
    pub fn backend(&self) -> Arc<dyn PackageBackend> {
        match self.family {
            Family::Apt => self.apt.as_ref().unwrap().backend(),
            Family::Dnf => Arc::new(
                DnfBackend::new(
                    "dnf",
                    Some(self.root.clone()),
                    Some(self.root.join("etc/dnf/dnf.conf")),
                )
                .unwrap(),
            ),
            Family::Zypper => Arc::new(ZypperBackend::new(Some(self.root.clone())).unwrap()),
            Family::Pacman => Arc::new(
                PacmanBackend::new(
                    Some(self.root.clone()),
                    Some(self.root.join("etc/pacman.conf")),
                )
                .unwrap(),
            ),
        }
    }

    /// The installed version of `name`, asked of the family's own tool (not the agent's reader).
    pub fn version(&self, name: &str) -> Option<String> {
        let out = match self.family {
            Family::Apt => return self.apt.as_ref().unwrap().version(name),
            Family::Dnf | Family::Zypper => std::process::Command::new("rpm")
                .arg("--root")
                .arg(&self.root)
                .args(["-q", "--queryformat", "%{VERSION}-%{RELEASE}", name])
                .output()
                .unwrap(),
            Family::Pacman => std::process::Command::new("pacman")
                .arg("--root")
                .arg(&self.root)
                .arg("--dbpath")
                .arg(self.root.join("var/lib/pacman"))
                .args(["-Q", name])
                .output()
                .unwrap(),
        };
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some(match self.family {
            Family::Pacman => text.split_whitespace().nth(1)?.to_owned(),
            _ => text,
        })
    }

    /// Whether the file the test package `name` installs is in the root (the tool really
    /// unpacked it, not only recorded it).
    pub fn has_file_of(&self, name: &str) -> bool {
        self.root
            .join(format!("usr/share/lpm-test/{name}/VERSION"))
            .is_file()
    }
}
