//! Which backend runs: the configured one, or with `auto` the family named by /etc/os-release
//! (`ID`, then `ID_LIKE`), confirmed by its tool being present. A host whose family is unknown
//! but which has exactly one of the tools gets that one; anything else is refused with the reason
//! rather than guessed.

use super::apk::ApkBackend;
use super::apt::AptBackend;
use super::dnf::DnfBackend;
use super::pacman::PacmanBackend;
use super::zypper::ZypperBackend;
use super::{BackendError, PackageBackend};
use crate::config::AgentConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A package-manager family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// apt/dpkg.
    Apt,
    /// dnf (or yum, its old name).
    Dnf,
    /// zypper.
    Zypper,
    /// pacman.
    Pacman,
    /// apk.
    Apk,
}

impl Family {
    fn from_id(id: &str) -> Option<Self> {
        Some(match id {
            "debian" | "ubuntu" | "raspbian" | "linuxmint" | "pop" | "kali" | "devuan" => Self::Apt,
            "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" | "amzn" | "circle" => {
                Self::Dnf
            }
            "suse" | "opensuse" | "sles" | "sled" | "opensuse-leap" | "opensuse-tumbleweed" => {
                Self::Zypper
            }
            "arch" | "archarm" | "manjaro" | "endeavouros" => Self::Pacman,
            "alpine" | "postmarketos" => Self::Apk,
            _ => return None,
        })
    }

    /// The program that must be present for this family.
    fn tool(self) -> &'static str {
        match self {
            Self::Apt => "apt-get",
            Self::Dnf => "dnf",
            Self::Zypper => "zypper",
            Self::Pacman => "pacman",
            Self::Apk => "apk",
        }
    }
}

/// The family `os_release` (the file's text) names: `ID` first, then each `ID_LIKE` word.
pub fn family_of(os_release: &str) -> Option<Family> {
    let field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
            .unwrap_or_default()
    };
    let id = field("ID");
    let like = field("ID_LIKE");
    std::iter::once(id.as_str())
        .chain(like.split_whitespace())
        .find_map(Family::from_id)
}

/// Picks the family for `kind` (`auto` or a name) given the os-release text and which tools
/// exist.
pub fn choose(
    kind: &str,
    os_release: &str,
    has_tool: impl Fn(&str) -> bool,
) -> Result<Family, String> {
    let named = match kind {
        "apt" => Some(Family::Apt),
        "dnf" | "yum" => Some(Family::Dnf),
        "zypper" => Some(Family::Zypper),
        "pacman" => Some(Family::Pacman),
        "apk" => Some(Family::Apk),
        "auto" => None,
        other => {
            return Err(format!(
                "backend.kind = {other} is not a known package manager"
            ))
        }
    };
    if let Some(f) = named {
        return Ok(f);
    }
    if let Some(f) = family_of(os_release) {
        return if has_tool(f.tool()) {
            Ok(f)
        } else {
            Err(format!(
                "backend.kind = auto: /etc/os-release names a {f:?} system but {} is not installed",
                f.tool()
            ))
        };
    }
    let present: Vec<Family> = [
        Family::Apt,
        Family::Dnf,
        Family::Zypper,
        Family::Pacman,
        Family::Apk,
    ]
    .into_iter()
    .filter(|f| has_tool(f.tool()))
    .collect();
    match present[..] {
        [one] => Ok(one),
        [] => Err("backend.kind = auto: no supported package manager found (apt-get, dnf, zypper, pacman or apk)".into()),
        _ => Err(format!(
            "backend.kind = auto: /etc/os-release names no known family and several package managers are installed ({}); set backend.kind",
            present.iter().map(|f| f.tool()).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn on_path(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

fn non_empty(p: &Path) -> Option<PathBuf> {
    (!p.as_os_str().is_empty()).then(|| p.to_path_buf())
}

/// Opens the backend the configuration asks for.
pub fn open(config: &AgentConfig) -> Result<Arc<dyn PackageBackend>, String> {
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let b = &config.backend;
    let family = choose(&b.kind, &os_release, on_path)?;
    let root = non_empty(&b.root);
    let cfg = non_empty(&b.config_file);
    let open_err = |e: BackendError| e.to_string();
    let backend: Arc<dyn PackageBackend> = match family {
        Family::Apt => Arc::new(
            AptBackend::with_lock_timeout(non_empty(&b.apt_config), config.jobs.lock_timeout_secs)
                .map_err(open_err)?,
        ),
        Family::Dnf => {
            let program = if b.kind == "yum" { "yum" } else { "dnf" };
            Arc::new(DnfBackend::new(program, root, cfg).map_err(open_err)?)
        }
        Family::Zypper => Arc::new(
            ZypperBackend::new(root)
                .map_err(open_err)?
                .with_lock_timeout(config.jobs.lock_timeout_secs),
        ),
        Family::Pacman => Arc::new(PacmanBackend::new(root, cfg).map_err(open_err)?),
        Family::Apk => Arc::new(ApkBackend::new(root)),
    };
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROCKY: &str =
        "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n";
    const MINT: &str = "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n";
    const UNKNOWN: &str = "ID=myos\n";

    #[test]
    fn auto_follows_os_release_and_the_tools() {
        let all = |_: &str| true;
        assert_eq!(choose("auto", ROCKY, all), Ok(Family::Dnf));
        assert_eq!(choose("auto", MINT, all), Ok(Family::Apt));
        assert_eq!(
            choose("auto", "ID=opensuse-leap\nID_LIKE=\"suse opensuse\"\n", all),
            Ok(Family::Zypper)
        );
        assert_eq!(choose("auto", "ID=arch\n", all), Ok(Family::Pacman));
        assert_eq!(choose("auto", "ID=alpine\n", all), Ok(Family::Apk));
        // A weird derivative named only through ID_LIKE.
        assert_eq!(
            choose("auto", "ID=foo\nID_LIKE=fedora\n", all),
            Ok(Family::Dnf)
        );
        // The named family's tool is missing: refused, not guessed.
        let e = choose("auto", ROCKY, |t| t == "apt-get").unwrap_err();
        assert!(e.contains("dnf is not installed"), "{e}");
        // Unknown family: the one tool present, or a refusal naming them.
        assert_eq!(
            choose("auto", UNKNOWN, |t| t == "pacman"),
            Ok(Family::Pacman)
        );
        let e = choose("auto", UNKNOWN, |t| t == "pacman" || t == "dnf").unwrap_err();
        assert!(e.contains("dnf, pacman"), "{e}");
        assert!(choose("auto", UNKNOWN, |_| false).is_err());
        // Named kinds win over the os-release.
        assert_eq!(choose("yum", MINT, all), Ok(Family::Dnf));
        assert!(choose("portage", MINT, all).is_err());
    }
}
