//! Facts about the host for `GET /system/info`, read from /proc, /etc/os-release and /run.

use shared::agent::SystemInfo;

/// Reads the host facts; fields that cannot be read are left empty rather than failing. Whether
/// a reboot is required is the package manager's to say.
pub fn read(
    package_manager: &str,
    last_update: Option<String>,
    reboot_required: bool,
) -> SystemInfo {
    let os = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |key: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let read_trim = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let uptime_seconds = read_trim("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| s as u64)
        .unwrap_or(0);
    SystemInfo {
        hostname: read_trim("/proc/sys/kernel/hostname"),
        os_id: field("ID"),
        os_version: field("VERSION_ID"),
        os_pretty_name: field("PRETTY_NAME"),
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        arch: std::env::consts::ARCH.to_owned(),
        uptime_seconds,
        package_manager: package_manager.to_owned(),
        last_update,
        reboot_required,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}
