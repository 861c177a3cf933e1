//! Times a backend's installed-package read against the family's own list command, in one run
//! (scripts/bench-backends.sh builds the roots and calls this).
//!
//! Usage: read_paths FAMILY ROOT RUNS
//!   FAMILY  dnf | zypper | pacman
//!   ROOT    an isolated root made by scripts/test-family-root.sh (with packages installed)
//! Prints one Markdown row per measure: median and p95 in milliseconds, and the package count.

use patch_agent::backend::dnf::DnfBackend;
use patch_agent::backend::pacman::PacmanBackend;
use patch_agent::backend::zypper::ZypperBackend;
use patch_agent::backend::PackageBackend;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn report(what: &str, mut times: Vec<Duration>, count: usize) {
    times.sort();
    println!(
        "| {what} | {:.2} | {:.2} | {count} |",
        percentile(&times, 0.5),
        percentile(&times, 0.95)
    );
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, family, root, runs] = &args[..] else {
        return Err("usage: read_paths dnf|zypper|pacman ROOT RUNS".into());
    };
    let root = PathBuf::from(root);
    let runs: usize = runs.parse().map_err(|e| format!("RUNS: {e}"))?;
    let open = || -> Result<Box<dyn PackageBackend>, String> {
        Ok(match family.as_str() {
            "dnf" => Box::new(
                DnfBackend::new(
                    "dnf",
                    Some(root.clone()),
                    Some(root.join("etc/dnf/dnf.conf")),
                )
                .map_err(|e| e.to_string())?,
            ),
            "zypper" => {
                Box::new(ZypperBackend::new(Some(root.clone())).map_err(|e| e.to_string())?)
            }
            "pacman" => Box::new(
                PacmanBackend::new(Some(root.clone()), Some(root.join("etc/pacman.conf")))
                    .map_err(|e| e.to_string())?,
            ),
            other => return Err(format!("unknown family {other}")),
        })
    };
    // The agent's read with an empty cache (a new backend each time), then from its cache.
    let mut cold = Vec::with_capacity(runs);
    let mut count = 0;
    for _ in 0..runs {
        let backend = open()?;
        let started = Instant::now();
        count = backend.installed().map_err(|e| e.to_string())?.len();
        cold.push(started.elapsed());
    }
    let backend = open()?;
    backend.installed().map_err(|e| e.to_string())?;
    let mut warm = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        backend.installed().map_err(|e| e.to_string())?;
        warm.push(started.elapsed());
    }
    // The family's own list command, as an administrator would run it.
    let baseline = |c: &mut Command| -> Result<Vec<Duration>, String> {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let out = c.output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "{c:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            times.push(started.elapsed());
        }
        Ok(times)
    };
    let (label, mut cmd) = match family.as_str() {
        "dnf" => {
            let mut c = Command::new("dnf");
            c.arg("--config")
                .arg(root.join("etc/dnf/dnf.conf"))
                .arg("--installroot")
                .arg(&root)
                .args(["-q", "-C", "list", "--installed"]);
            ("`dnf -C list --installed`", c)
        }
        "zypper" => {
            let mut c = Command::new("zypper");
            c.arg("--root").arg(&root).args([
                "--quiet",
                "--no-refresh",
                "search",
                "--installed-only",
            ]);
            ("`zypper search --installed-only`", c)
        }
        _ => {
            let mut c = Command::new("pacman");
            c.arg("--root")
                .arg(&root)
                .arg("--dbpath")
                .arg(root.join("var/lib/pacman"))
                .arg("-Q");
            ("`pacman -Q`", c)
        }
    };
    let base = baseline(&mut cmd)?;
    let reader = match family.as_str() {
        "pacman" => "local database read (`local/*/desc`)",
        _ => "`rpm -qa --queryformat`",
    };
    report(&format!("{family}: agent, {reader}, cold"), cold, count);
    report(&format!("{family}: agent, cached"), warm, count);
    report(&format!("{family}: {label} (baseline)"), base, count);
    Ok(())
}
