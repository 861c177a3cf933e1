//! An isolated apt root for tests, shared by the agent's and the manager's test suites (the
//! manager's includes this file by path).

use patch_agent::backend::apt::AptBackend;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An isolated apt root over the project's test repository (scripts/build-test-repo.sh and
/// scripts/test-apt-root.sh): real apt-get and dpkg, nothing of the machine's own packages.
pub struct AptRoot {
    pub dir: tempfile::TempDir,
    pub apt_config: PathBuf,
    pub root: PathBuf,
}

impl AptRoot {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        let repo = match std::env::var_os("LPM_TEST_REPO") {
            Some(r) => PathBuf::from(r),
            None => {
                let repo = dir.path().join("repo");
                run(std::process::Command::new("bash")
                    .arg(scripts.join("build-test-repo.sh"))
                    .arg(&repo));
                repo
            }
        };
        let root = dir.path().join("root");
        run(std::process::Command::new("bash")
            .arg(scripts.join("test-apt-root.sh"))
            .arg(&root)
            .arg(&repo));
        let apt_config = root.join("apt.conf");
        run(std::process::Command::new("apt-get")
            .env("APT_CONFIG", &apt_config)
            .args(["-q", "update"]));
        Self {
            dir,
            apt_config,
            root,
        }
    }

    pub fn backend(&self) -> Arc<AptBackend> {
        Arc::new(AptBackend::new(Some(self.apt_config.clone())).unwrap())
    }

    /// A backend that gives up on a held dpkg lock after `secs`.
    pub fn backend_with_lock_timeout(&self, secs: u64) -> Arc<AptBackend> {
        Arc::new(AptBackend::with_lock_timeout(Some(self.apt_config.clone()), secs).unwrap())
    }

    /// Installs `packages` (`name` or `name=version`) into this root from the test repository.
    pub fn install(&self, packages: &[&str]) {
        run(std::process::Command::new("apt-get")
            .env("APT_CONFIG", &self.apt_config)
            .args(["-q", "-y", "install"])
            .args(packages));
    }

    /// The installed version of `name` as dpkg-query sees it in this root, if installed.
    pub fn version(&self, name: &str) -> Option<String> {
        let out = std::process::Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                self.root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${db:Status-Abbrev}|${Version}", name])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (status, version) = text.split_once('|')?;
        status.starts_with("ii").then(|| version.to_owned())
    }

    /// dpkg's status abbreviation for `name` (`ii `, `iF `, …), if known.
    pub fn status(&self, name: &str) -> Option<String> {
        let out = std::process::Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                self.root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${db:Status-Abbrev}", name])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Runs `cmd` and fails the test with its output unless it succeeds.
pub fn run(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
