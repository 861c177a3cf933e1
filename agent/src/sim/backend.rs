//! A simulated package manager: a realistic installed set and a random set of updates per host,
//! with configurable latency and failure rates. Jobs change the simulated state (an upgrade moves
//! the package to its candidate and takes it off the updates) or fail at the job failure rate.
//! Nothing on this machine is read or changed.

use crate::backend::Transaction;
use crate::backend::{BackendError, Grammar, PackageBackend, Step, DEBIAN};
use shared::agent::{InstalledPackage, Patch};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Packages every Debian server carries; the rest of a host's list is libraries drawn from
/// [`LIBRARIES`] with numbered sonames, as on a real system.
const BASE: &[&str] = &[
    "adduser",
    "apt",
    "apt-utils",
    "base-files",
    "base-passwd",
    "bash",
    "bash-completion",
    "bind9-host",
    "bsdutils",
    "bzip2",
    "ca-certificates",
    "coreutils",
    "cpio",
    "cron",
    "curl",
    "dash",
    "dbus",
    "debconf",
    "debian-archive-keyring",
    "debianutils",
    "diffutils",
    "dmidecode",
    "dpkg",
    "e2fsprogs",
    "ethtool",
    "fdisk",
    "file",
    "findutils",
    "gcc-12-base",
    "gpgv",
    "grep",
    "groff-base",
    "grub-common",
    "grub-pc",
    "gzip",
    "hostname",
    "ifupdown",
    "init",
    "init-system-helpers",
    "iproute2",
    "iptables",
    "iputils-ping",
    "isc-dhcp-client",
    "kmod",
    "less",
    "linux-image-amd64",
    "locales",
    "login",
    "logrotate",
    "lsof",
    "man-db",
    "mawk",
    "mount",
    "nano",
    "ncurses-base",
    "ncurses-bin",
    "netbase",
    "nftables",
    "openssh-client",
    "openssh-server",
    "openssl",
    "passwd",
    "perl",
    "perl-base",
    "procps",
    "python3",
    "python3-minimal",
    "readline-common",
    "rsync",
    "rsyslog",
    "sed",
    "sensible-utils",
    "sudo",
    "systemd",
    "systemd-sysv",
    "systemd-timesyncd",
    "sysvinit-utils",
    "tar",
    "tzdata",
    "udev",
    "unattended-upgrades",
    "util-linux",
    "vim-common",
    "vim-tiny",
    "wget",
    "whiptail",
    "xz-utils",
    "zstd",
    "nginx",
    "postgresql-15",
    "redis-server",
    "chrony",
    "auditd",
    "git",
    "jq",
    "htop",
    "tmux",
    "screen",
    "strace",
    "tcpdump",
];

/// Library stems; `lib<stem><n>` names make up the bulk of a host's list.
const LIBRARIES: &[&str] = &[
    "acl",
    "apparmor",
    "argon2-",
    "attr",
    "audit",
    "blkid",
    "bpf",
    "brotli",
    "bsd",
    "bz2-",
    "cap",
    "cap-ng",
    "com-err",
    "crypt",
    "cryptsetup",
    "curl",
    "db5.3-",
    "dbus-1-",
    "debconfclient",
    "device-mapper",
    "edit",
    "elf",
    "expat",
    "ext2fs",
    "fdisk",
    "ffi",
    "gcrypt",
    "gdbm",
    "glib2.0-",
    "gmp",
    "gnutls",
    "gpg-error",
    "gssapi-krb5-",
    "hogweed",
    "icu",
    "idn2-",
    "ip4tc",
    "jansson",
    "json-c",
    "k5crypto",
    "keyutils",
    "kmod",
    "krb5-",
    "ldap-2.5-",
    "lz4-",
    "lzma",
    "magic",
    "mnl",
    "mount",
    "ncursesw",
    "nettle",
    "nghttp2-",
    "nftables",
    "npth",
    "nss-systemd",
    "p11-kit",
    "pam-modules",
    "pcre2-8-",
    "popt",
    "psl",
    "python3.11-",
    "readline",
    "rtmp",
    "sasl2-",
    "seccomp",
    "selinux",
    "semanage",
    "sepol",
    "smartcols",
    "sqlite3-",
    "ssh2-",
    "ssl",
    "stdc++",
    "systemd",
    "tasn1-",
    "tinfo",
    "tirpc",
    "udev",
    "unistring",
    "uuid",
    "xml2",
    "xtables",
    "xxhash",
    "yaml-0-",
    "zstd",
];

/// Parameters of one simulated host.
#[derive(Debug, Clone)]
pub struct SimProfile {
    /// Seed: the same seed gives the same packages and updates.
    pub seed: u64,
    /// How many packages are installed.
    pub packages: usize,
    /// Most pending updates (the actual number is drawn between 0 and this).
    pub max_updates: usize,
    /// Delay of every package-database read.
    pub latency: Duration,
    /// Share of package-database reads that fail, in millionths.
    pub failure_ppm: u32,
    /// Share of jobs whose package-manager transaction fails, in millionths.
    pub job_failure_ppm: u32,
}

/// A small deterministic generator (SplitMix64): enough to draw package lists, never used for
/// anything secret.
#[derive(Debug)]
pub struct Draw(u64);

impl Draw {
    /// Generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        match n {
            0 => 0,
            n => self.next_u64() % n,
        }
    }
}

/// The simulated package manager of one host.
#[derive(Debug)]
pub struct SimBackend {
    profile: SimProfile,
    installed: RwLock<Arc<Vec<InstalledPackage>>>,
    upgradable: RwLock<Arc<Vec<Patch>>>,
    reads: AtomicU64,
    transactions: AtomicU64,
}

fn version(draw: &mut Draw) -> String {
    format!(
        "{}.{}.{}-{}+deb12u{}",
        draw.below(5) + 1,
        draw.below(40),
        draw.below(20),
        draw.below(4) + 1,
        draw.below(6) + 1
    )
}

impl SimBackend {
    /// Draws the host's packages and updates from `profile`.
    pub fn new(profile: SimProfile) -> Self {
        let mut draw = Draw::new(profile.seed);
        let mut names: Vec<String> = BASE.iter().map(|s| (*s).to_owned()).collect();
        let mut n = 0u64;
        while names.len() < profile.packages {
            let stem = LIBRARIES[(n as usize) % LIBRARIES.len()];
            names.push(format!("lib{stem}{}", n / LIBRARIES.len() as u64 + 1));
            n += 1;
        }
        names.truncate(profile.packages.max(1));
        names.sort();
        names.dedup();
        let installed: Vec<InstalledPackage> = names
            .iter()
            .map(|name| InstalledPackage {
                name: name.clone(),
                version: version(&mut draw),
                arch: "amd64".into(),
                status: "installed".into(),
                summary: format!("simulated package {name}"),
                installed_size_kib: Some(draw.below(40_000) + 16),
                source: None,
            })
            .collect();
        let wanted = draw.below(profile.max_updates as u64 + 1) as usize;
        let mut upgradable = Vec::with_capacity(wanted);
        let mut taken = std::collections::BTreeSet::new();
        while upgradable.len() < wanted.min(installed.len()) {
            let i = draw.below(installed.len() as u64) as usize;
            if !taken.insert(i) {
                continue;
            }
            let p = &installed[i];
            let security = draw.below(3) == 0;
            upgradable.push(Patch {
                name: p.name.clone(),
                arch: p.arch.clone(),
                installed_version: p.version.clone(),
                candidate_version: format!("{}.1", p.version),
                origin: if security {
                    "stable-security".into()
                } else {
                    "stable".into()
                },
                security,
                severity: security.then(|| {
                    ["low", "medium", "high", "critical"][draw.below(4) as usize].to_owned()
                }),
                cves: if security {
                    vec![format!("CVE-2026-{}", 10_000 + draw.below(50_000))]
                } else {
                    Vec::new()
                },
                reboot_likely: p.name.starts_with("linux-image") || p.name == "systemd",
            });
        }
        upgradable.sort_by(|a, b| b.security.cmp(&a.security).then(a.name.cmp(&b.name)));
        Self {
            profile,
            installed: RwLock::new(Arc::new(installed)),
            upgradable: RwLock::new(Arc::new(upgradable)),
            reads: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
        }
    }

    /// Carries out `tx` on the simulated state: packages move to the version asked (or their
    /// candidate), removed ones go, restored ones come back at their recorded version.
    fn carry_out(&self, tx: &Transaction) {
        let mut installed = match self.installed.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut upgradable = match self.upgradable.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut list: Vec<InstalledPackage> = installed.as_ref().clone();
        let mut updates: Vec<Patch> = upgradable.as_ref().clone();
        let mut set = |name: &str, version: Option<String>, list: &mut Vec<InstalledPackage>| {
            let candidate = updates
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.candidate_version.clone());
            let Some(version) = version.or(candidate) else {
                return;
            };
            match list.iter_mut().find(|p| p.name == name) {
                Some(p) => p.version = version,
                None => {
                    list.push(InstalledPackage {
                        name: name.to_owned(),
                        version,
                        arch: "amd64".into(),
                        status: "installed".into(),
                        summary: format!("simulated package {name}"),
                        installed_size_kib: Some(64),
                        source: None,
                    });
                    list.sort_by(|a, b| a.name.cmp(&b.name));
                }
            }
            updates.retain(|p| p.name != name);
        };
        match tx {
            Transaction::Install {
                packages,
                only_upgrade,
            } => {
                for (name, version) in packages {
                    if *only_upgrade && !list.iter().any(|p| p.name == *name) {
                        continue;
                    }
                    set(name, version.clone(), &mut list);
                }
            }
            Transaction::Remove { names, .. } => list.retain(|p| !names.contains(&p.name)),
            Transaction::Restore { install, remove } => {
                for (name, version) in install {
                    set(name, Some(version.clone()), &mut list);
                }
                list.retain(|p| !remove.contains(&p.name));
            }
        }
        *installed = Arc::new(list);
        *upgradable = Arc::new(updates);
    }

    /// One read of the package database: waits the latency, fails at the failure rate.
    fn read(&self) -> Result<(), BackendError> {
        if !self.profile.latency.is_zero() {
            // Reads run on the blocking pool (the API never calls the backend on its workers).
            std::thread::sleep(self.profile.latency);
        }
        let n = self.reads.fetch_add(1, Ordering::Relaxed);
        let mut draw = Draw::new(self.profile.seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
        match draw.below(1_000_000) < u64::from(self.profile.failure_ppm) {
            true => Err(BackendError::Command {
                command: "dpkg-query".into(),
                message: "simulated failure".into(),
            }),
            false => Ok(()),
        }
    }
}

impl PackageBackend for SimBackend {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn installed(&self) -> Result<Arc<Vec<InstalledPackage>>, BackendError> {
        self.read()?;
        Ok(match self.installed.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        })
    }

    fn last_update(&self) -> Option<String> {
        None
    }

    fn upgradable(&self) -> Result<Arc<Vec<Patch>>, BackendError> {
        self.read()?;
        Ok(match self.upgradable.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        })
    }

    fn grammar(&self) -> &'static Grammar {
        &DEBIAN
    }

    /// A simulated transaction: at the job failure rate it runs `false` and changes nothing;
    /// otherwise the simulated state changes as asked and it runs `true` (no shell, no argument,
    /// nothing on this machine is touched).
    fn steps(&self, tx: &Transaction) -> Result<Vec<Step>, BackendError> {
        let n = self.transactions.fetch_add(1, Ordering::Relaxed);
        let mut draw =
            Draw::new(self.profile.seed ^ 0x5eed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if draw.below(1_000_000) < u64::from(self.profile.job_failure_ppm) {
            return Ok(vec![Step::new(tokio::process::Command::new("false"))]);
        }
        self.carry_out(tx);
        Ok(vec![Step::new(tokio::process::Command::new("true"))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(seed: u64) -> SimProfile {
        SimProfile {
            seed,
            packages: 800,
            max_updates: 30,
            latency: Duration::ZERO,
            failure_ppm: 0,
            job_failure_ppm: 0,
        }
    }

    #[test]
    fn an_upgrade_moves_the_package_to_its_candidate_and_off_the_updates() {
        let mut p = profile(11);
        p.max_updates = 40;
        let b = SimBackend::new(p);
        let before = b.upgradable().unwrap();
        let Some(first) = before.first().cloned() else {
            panic!("seed 11 draws updates");
        };
        let steps = b
            .steps(&Transaction::Install {
                packages: vec![(first.name.clone(), None)],
                only_upgrade: true,
            })
            .unwrap();
        assert_eq!(steps[0].command.as_std().get_program(), "true");
        let now = b.versions().unwrap();
        assert_eq!(now[&first.name], first.candidate_version);
        assert!(!b.upgradable().unwrap().iter().any(|p| p.name == first.name));
        assert_eq!(b.upgradable().unwrap().len(), before.len() - 1);
        // Restored: back at the recorded version.
        b.steps(&Transaction::Restore {
            install: vec![(first.name.clone(), first.installed_version.clone())],
            remove: vec![],
        })
        .unwrap();
        assert_eq!(b.versions().unwrap()[&first.name], first.installed_version);
    }

    #[test]
    fn jobs_fail_at_the_job_failure_rate_and_change_nothing() {
        let mut p = profile(12);
        p.job_failure_ppm = 1_000_000;
        let b = SimBackend::new(p);
        let before = b.versions().unwrap();
        let name = before.keys().next().unwrap().clone();
        let steps = b
            .steps(&Transaction::Remove {
                names: vec![name],
                purge: false,
            })
            .unwrap();
        assert_eq!(steps[0].command.as_std().get_program(), "false");
        assert_eq!(b.versions().unwrap(), before);
    }

    #[test]
    fn a_seed_gives_the_same_host_and_hosts_differ() {
        let a = SimBackend::new(profile(7));
        let b = SimBackend::new(profile(7));
        let c = SimBackend::new(profile(8));
        assert_eq!(a.installed().unwrap(), b.installed().unwrap());
        assert_eq!(a.upgradable().unwrap(), b.upgradable().unwrap());
        assert_ne!(a.installed().unwrap(), c.installed().unwrap());
        assert_eq!(a.installed().unwrap().len(), 800);
        let names: Vec<_> = a
            .installed()
            .unwrap()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert!(
            names.iter().all(|n| crate::backend::valid_debian_name(n)),
            "{names:?}"
        );
        for p in a.upgradable().unwrap().iter() {
            assert!(crate::backend::valid_debian_version(&p.candidate_version));
            assert_eq!(p.security, !p.cves.is_empty());
        }
    }

    #[test]
    fn the_failure_rate_is_honoured() {
        let mut p = profile(1);
        p.failure_ppm = 250_000;
        let b = SimBackend::new(p);
        let failed = (0..4000).filter(|_| b.installed().is_err()).count();
        assert!((800..1200).contains(&failed), "{failed} of 4000 failed");
        let mut p = profile(1);
        p.failure_ppm = 0;
        let b = SimBackend::new(p);
        assert!((0..1000).all(|_| b.installed().is_ok()));
    }
}
