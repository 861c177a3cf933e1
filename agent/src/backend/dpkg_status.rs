//! Reader of dpkg's status database (`/var/lib/dpkg/status`).
//!
//! Parsing the file directly answers `GET /packages` without spawning `dpkg-query` for every
//! request. The format is deb822: stanzas separated by blank lines, `Field: value` lines, and
//! continuation lines starting with a space. Like `dpkg-query -W`, every stanza is returned
//! (`config-files` leftovers and half-configured packages included); callers filter on `state`.

use std::path::Path;

/// One package stanza of the status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// Package name.
    pub name: String,
    /// Version string (empty for packages that were never unpacked).
    pub version: String,
    /// Architecture (`amd64`, `all`, …).
    pub arch: String,
    /// dpkg state: the third word of `Status:` (`installed`, `half-configured`, `config-files`, …).
    pub state: String,
    /// Selection: the first word of `Status:` (`install`, `hold`, `deinstall`, `purge`).
    pub selection: String,
    /// First line of the description.
    pub summary: String,
    /// `Installed-Size` in KiB, if given.
    pub installed_size_kib: Option<u64>,
    /// Source package, if it differs from the binary's name.
    pub source: Option<String>,
}

impl StatusEntry {
    /// Whether the package is fully installed.
    pub fn is_installed(&self) -> bool {
        self.state == "installed"
    }

    /// Whether dpkg left the package in the middle of an operation (needs `dpkg --configure -a`).
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self.state.as_str(),
            "half-installed"
                | "half-configured"
                | "unpacked"
                | "triggers-awaited"
                | "triggers-pending"
        )
    }
}

/// Parses the whole status file text.
pub fn parse(text: &str) -> Vec<StatusEntry> {
    let mut out = Vec::with_capacity(text.len() / 1200);
    for stanza in text.split("\n\n") {
        if let Some(entry) = parse_stanza(stanza) {
            out.push(entry);
        }
    }
    out
}

/// Reads and parses the status file at `path`.
pub fn read(path: &Path) -> std::io::Result<Vec<StatusEntry>> {
    Ok(parse(&std::fs::read_to_string(path)?))
}

fn parse_stanza(stanza: &str) -> Option<StatusEntry> {
    let mut name = None;
    let mut version = "";
    let mut arch = "";
    let mut status = "";
    let mut summary = "";
    let mut size = None;
    let mut source = None;
    for line in stanza.lines() {
        if line.starts_with([' ', '\t']) || line.is_empty() {
            continue; // continuation of a multi-line field we do not need
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match field {
            "Package" => name = Some(value),
            "Version" => version = value,
            "Architecture" => arch = value,
            "Status" => status = value,
            "Description" => summary = value,
            "Installed-Size" => size = value.parse().ok(),
            // `Source: name (version)` when the source version differs.
            "Source" => source = value.split_whitespace().next(),
            _ => {}
        }
    }
    let name = name?;
    let mut words = status.split_whitespace();
    let selection = words.next().unwrap_or("unknown");
    let state = words.nth(1).unwrap_or("unknown");
    Some(StatusEntry {
        name: name.to_owned(),
        version: version.to_owned(),
        arch: arch.to_owned(),
        state: state.to_owned(),
        selection: selection.to_owned(),
        summary: summary.to_owned(),
        installed_size_kib: size,
        source: source.filter(|s| *s != name).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Package: bash\nEssential: yes\nStatus: install ok installed\nPriority: required\nSection: shells\nInstalled-Size: 7164\nMaintainer: Matthias Klose <doko@debian.org>\nArchitecture: amd64\nMulti-Arch: foreign\nVersion: 5.2.15-2+b7\nDepends: base-files (>= 2.1.12), debianutils (>= 5.6-0.1)\nDescription: GNU Bourne Again SHell\n Bash is an sh-compatible command language interpreter.\n .\n More text: with a colon.\n\nPackage: libssl3\nStatus: install ok half-configured\nArchitecture: amd64\nSource: openssl (3.0.15-1~deb12u1)\nVersion: 3.0.15-1~deb12u1+b1\nDescription: Secure Sockets Layer toolkit - shared libraries\n\nPackage: oldpkg\nStatus: deinstall ok config-files\nArchitecture: all\nVersion: 1.0\n\n";

    #[test]
    fn parses_fields_and_states() {
        let e = parse(SAMPLE);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "bash");
        assert_eq!(e[0].version, "5.2.15-2+b7");
        assert_eq!(e[0].arch, "amd64");
        assert_eq!(e[0].summary, "GNU Bourne Again SHell");
        assert_eq!(e[0].installed_size_kib, Some(7164));
        assert!(e[0].is_installed());
        assert_eq!(e[0].source, None);
        assert_eq!(e[1].source.as_deref(), Some("openssl"));
        assert!(e[1].is_interrupted());
        assert_eq!(e[2].state, "config-files");
        assert_eq!(e[2].selection, "deinstall");
        assert!(!e[2].is_installed());
    }

    #[test]
    fn tolerates_garbage() {
        assert!(parse("").is_empty());
        assert!(parse("\n\n\n").is_empty());
        assert!(
            parse("no colon here\n\nStatus: x\n").is_empty(),
            "stanzas without Package are skipped"
        );
        let e = parse("Package: p\nStatus: install\n");
        assert_eq!(e[0].state, "unknown");
    }
}
