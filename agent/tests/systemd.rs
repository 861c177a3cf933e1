//! The shipped systemd unit passes `systemd-analyze verify` with no warning (unknown keys are only
//! warnings there, so any output fails the test) and keeps its hardening.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn unit_file_verifies_cleanly() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/systemd/patch-agent.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for key in [
        "SystemCallFilter=",
        "NoNewPrivileges=yes",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
    ] {
        assert!(text.contains(key), "unit lost {key}");
    }
    // verify checks that ExecStart exists: point it at the binary cargo built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("patch-agent.service");
    std::fs::write(
        &copy,
        text.replace("/usr/bin/patch-agent", env!("CARGO_BIN_EXE_patch-agent")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze is needed (Debian package systemd; scripts/test.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
