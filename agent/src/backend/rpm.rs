//! What dnf and zypper share: the RPM database, read through `rpm -qa --queryformat` (one process,
//! no repository metadata, no lock), RPM's name and version grammar, and the kernel check for
//! "reboot required".

use super::{cached, clean_command, output_of, BackendError, Cached};
use shared::agent::InstalledPackage;
use std::path::{Path, PathBuf};

/// The grammar of this family.
pub const GRAMMAR: super::Grammar = super::Grammar {
    valid_name,
    valid_version,
    name_rule: NAME_RULE,
    version_rule: VERSION_RULE,
};

/// What [`valid_name`] accepts.
pub const NAME_RULE: &str = "1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '+' and '-', \
     starting with a letter, digit or '_', not ending in .rpm (no wildcards, paths or spaces)";
/// What [`valid_version`] accepts.
pub const VERSION_RULE: &str = "[epoch:]version-release, as listed by the agent: version and \
     release of A-Z, a-z, 0-9, '.', '_', '+', '~' and '^', starting with a letter or digit; \
     a zero epoch is written without it";

/// Checks an RPM package name. Wildcards (`*?[]`), which dnf and zypper would expand, are
/// refused, as is anything an option parser could take for a flag.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=128).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._+-".contains(c))
        // dnf and zypper take `x.rpm` for a package file.
        && !name.ends_with(".rpm")
}

/// Checks `[epoch:]version-release` as the agent reports it (no `0:` epoch).
pub fn valid_version(v: &str) -> bool {
    if v.is_empty() || v.len() > 128 {
        return false;
    }
    let (epoch, evr) = match v.split_once(':') {
        Some((e, rest)) => (Some(e), rest),
        None => (None, v),
    };
    if let Some(e) = epoch {
        if e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()) || e.bytes().all(|c| c == b'0') {
            return false;
        }
    }
    let Some((version, release)) = evr.rsplit_once('-') else {
        return false;
    };
    let part = |p: &str| {
        p.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._+~^".contains(&c))
    };
    part(version) && part(release)
}

/// `epoch:version-release` as the agent shows it: the epoch only when it is not zero.
pub fn evr(epoch: &str, version: &str, release: &str) -> String {
    let epoch = epoch.trim();
    if epoch.is_empty() || epoch == "(none)" || epoch.bytes().all(|c| c == b'0') {
        format!("{version}-{release}")
    } else {
        format!("{epoch}:{version}-{release}")
    }
}

/// Splits `name-[epoch:]version-release.arch` into the name, the version as the agent shows it
/// and the architecture.
pub fn split_nevra(nevra: &str) -> Option<(String, String, String)> {
    let (nevr, arch) = nevra.rsplit_once('.')?;
    let (nev, release) = nevr.rsplit_once('-')?;
    let (name, ev) = nev.rsplit_once('-')?;
    let (epoch, version) = ev.split_once(':').unwrap_or(("", ev));
    if name.is_empty() || version.is_empty() || release.is_empty() || arch.is_empty() {
        return None;
    }
    Some((
        name.to_owned(),
        evr(epoch, version, release),
        arch.to_owned(),
    ))
}

/// One line per package: name, epoch, version, release, arch, size (bytes), install time, source
/// RPM, summary (last, as it is free text).
const QUERY_FORMAT: &str = "%{NAME}\\t%|EPOCH?{%{EPOCH}}:{0}|\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SIZE}\\t%{INSTALLTIME}\\t%{SOURCERPM}\\t%{SUMMARY}\\n";

/// Names of the kernel packages whose newest install decides "reboot required".
const KERNELS: &[&str] = &["kernel", "kernel-core", "kernel-default", "kernel-uek-core"];

/// The installed packages and, apart, the installed kernels (install time, `version-release.arch`
/// as `uname -r` prints it).
#[derive(Debug, Default)]
pub struct Database {
    /// Sorted by name, then architecture.
    pub packages: Vec<InstalledPackage>,
    /// Kernel packages, oldest install first.
    pub kernels: Vec<(u64, String)>,
}

/// Parses the output of `rpm -qa --queryformat QUERY_FORMAT`.
pub fn parse_query(text: &str) -> Database {
    let mut db = Database::default();
    for line in text.lines() {
        let f: Vec<&str> = line.splitn(9, '\t').collect();
        let [name, epoch, version, release, arch, size, installed_at, source, summary] = f[..]
        else {
            continue;
        };
        // The GPG keys rpm keeps as pseudo-packages are not packages.
        if name == "gpg-pubkey" {
            continue;
        }
        if KERNELS.contains(&name) {
            db.kernels.push((
                installed_at.parse().unwrap_or(0),
                format!("{version}-{release}.{arch}"),
            ));
        }
        db.packages.push(InstalledPackage {
            name: name.to_owned(),
            version: evr(epoch, version, release),
            arch: if arch == "(none)" { "noarch" } else { arch }.to_owned(),
            status: "installed".to_owned(),
            summary: summary.to_owned(),
            installed_size_kib: size.parse::<u64>().map(|b| b.div_ceil(1024)).ok(),
            source: (source != "(none)").then(|| source.trim_end_matches(".src.rpm").to_owned()),
        });
    }
    db.packages
        .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch)));
    db.kernels.sort();
    db
}

/// Whether the newest installed kernel is not the running one (`uname -r`). No kernel package
/// (a container) means no.
pub fn kernel_reboot_required(kernels: &[(u64, String)], running: &str) -> bool {
    kernels
        .last()
        .is_some_and(|(_, newest)| newest.as_str() != running)
}

/// The RPM database of the system, or of an isolated root.
#[derive(Debug)]
pub struct Rpm {
    root: Option<PathBuf>,
    /// Where the database files are (for change detection).
    db_dir: PathBuf,
    db: Cached<Database>,
}

impl Rpm {
    /// Asks rpm where its database lives (`%_dbpath`, under `root` if one is given).
    pub fn new(root: Option<PathBuf>) -> Result<Self, BackendError> {
        let mut c = clean_command("rpm");
        c.args(["--eval", "%{_dbpath}"]);
        let dbpath = output_of(c, "rpm --eval %{_dbpath}")?;
        let dbpath = dbpath.trim().trim_start_matches('/');
        let db_dir = match &root {
            Some(r) => r.join(dbpath),
            None => Path::new("/").join(dbpath),
        };
        Ok(Self::at(root, db_dir))
    }

    /// A database in `db_dir`, without asking rpm (which may not be installed where the
    /// agent's unit tests build).
    pub fn at(root: Option<PathBuf>, db_dir: PathBuf) -> Self {
        Self {
            root,
            db_dir,
            db: Cached::default(),
        }
    }

    /// The database as last read, read again when one of its files changed.
    pub fn database(&self) -> Result<std::sync::Arc<Database>, BackendError> {
        cached(&self.db, self.stamp(), || self.read())
    }

    /// Whether the newest installed kernel is not the running one.
    pub fn reboot_required(&self, running: &str) -> bool {
        self.database()
            .is_ok_and(|db| kernel_reboot_required(&db.kernels, running))
    }

    /// The isolated root, if any.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// What changes whenever a transaction commits: the database files (SQLite writes its WAL
    /// first, the main file later). Not the directory, nor SQLite's shared-memory index or
    /// Berkeley DB's region files: readers touch those (and create or delete them), so the
    /// agent's own read would look like a change.
    pub fn stamp(&self) -> Vec<crate::stamp::Stamp> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.db_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                            !f.ends_with("-shm") && !f.starts_with("__db.") && !f.starts_with('.')
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.iter().map(|f| crate::stamp::of(f)).collect()
    }

    /// Reads every installed package.
    pub fn read(&self) -> Result<Database, BackendError> {
        let mut c = clean_command("rpm");
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        c.args(["-qa", "--queryformat", QUERY_FORMAT]);
        Ok(parse_query(&output_of(c, "rpm -qa")?))
    }
}

/// Packages whose update usually needs a reboot on RPM systems.
pub fn reboot_likely(name: &str) -> bool {
    KERNELS.contains(&name)
        || name.starts_with("kernel-")
        || matches!(
            name,
            "glibc"
                | "systemd"
                | "dbus"
                | "dbus-broker"
                | "linux-firmware"
                | "microcode_ctl"
                | "openssl-libs"
                | "ucode-intel"
                | "ucode-amd"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "bash",
            "kernel-core",
            "python3.11",
            "NetworkManager",
            "gcc-c++",
            "_x",
            "a",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-y",
            "--setopt=x",
            "bash*",
            "ba?h",
            "[ab]",
            "a b",
            "a/b",
            "../x",
            "x;id",
            "x$(id)",
            "evil.rpm",
            "name\n",
            "ä",
            &"a".repeat(129),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn versions() {
        for ok in [
            "1.0-1",
            "2:1.2.3-4.el9",
            "1.0~rc1-1",
            "2024a-1.fc40",
            "1.0^20240101git-2",
        ] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in [
            "", "1.0", "0:1.0-1", ":1.0-1", "x:1.0-1", "1.0-", "-1", "1.0-1;id", "1.0 -1",
            "--force", "1.0-1*", "1.0/x-1",
        ] {
            assert!(!valid_version(bad), "{bad:?}");
        }
    }

    #[test]
    fn nevra() {
        assert_eq!(
            split_nevra("lpm-test-secure-1.0-2.noarch"),
            Some(("lpm-test-secure".into(), "1.0-2".into(), "noarch".into()))
        );
        assert_eq!(
            split_nevra("bind-libs-32:9.16.23-18.el9.x86_64"),
            Some((
                "bind-libs".into(),
                "32:9.16.23-18.el9".into(),
                "x86_64".into()
            ))
        );
        assert_eq!(
            split_nevra("x-0:1-2.noarch").map(|n| n.1),
            Some("1-2".into())
        );
        assert_eq!(split_nevra("nonsense"), None);
    }

    #[test]
    fn a_read_that_touches_the_shared_memory_file_is_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let rpm = Rpm::at(None, dir.path().to_path_buf());
        std::fs::write(dir.path().join("rpmdb.sqlite"), b"db").unwrap();
        let before = rpm.stamp();
        // What `rpm -qa` does to the directory: the index of the WAL appears, changes, goes.
        std::fs::write(dir.path().join("rpmdb.sqlite-shm"), b"readers").unwrap();
        assert_eq!(rpm.stamp(), before);
        std::fs::remove_file(dir.path().join("rpmdb.sqlite-shm")).unwrap();
        assert_eq!(rpm.stamp(), before);
        // A commit writes the WAL: a change.
        std::fs::write(dir.path().join("rpmdb.sqlite-wal"), b"commit").unwrap();
        assert_ne!(rpm.stamp(), before);
    }

    #[test]
    fn query_lines() {
        let text = "bash\t0\t5.1.8\t9.el9\tx86_64\t7738634\t1700000000\tbash-5.1.8-9.el9.src.rpm\tThe GNU Bourne Again shell\n\
                    gpg-pubkey\t0\tfd431d51\t4ae0493b\t(none)\t0\t1\t(none)\tgpg(Red Hat)\n\
                    kernel-core\t0\t5.14.0\t362.el9\tx86_64\t1\t1700000000\tkernel-5.14.0-362.el9.src.rpm\tThe kernel\n\
                    kernel-core\t0\t5.14.0\t427.el9\tx86_64\t1\t1700000500\tkernel-5.14.0-427.el9.src.rpm\tThe kernel\n\
                    bind-libs\t32\t9.16.23\t18.el9\tx86_64\t2048\t1\tbind-9.16.23-18.el9.src.rpm\tLibraries\twith a tab\n\
                    truncated\tline\n";
        let db = parse_query(text);
        let names: Vec<_> = db.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "bind-libs", "kernel-core", "kernel-core"]);
        assert_eq!(db.packages[0].version, "5.1.8-9.el9");
        assert_eq!(db.packages[0].installed_size_kib, Some(7558));
        assert_eq!(db.packages[0].source.as_deref(), Some("bash-5.1.8-9.el9"));
        assert_eq!(db.packages[1].version, "32:9.16.23-18.el9");
        assert_eq!(db.packages[1].summary, "Libraries\twith a tab");
        assert!(kernel_reboot_required(&db.kernels, "5.14.0-362.el9.x86_64"));
        assert!(!kernel_reboot_required(
            &db.kernels,
            "5.14.0-427.el9.x86_64"
        ));
        assert!(!kernel_reboot_required(&[], "6.1.0"));
    }
}
