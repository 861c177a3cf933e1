#!/usr/bin/env bash
# Creates a fresh, isolated apt/dpkg root in which apt-get and dpkg can install the test packages of
# scripts/build-test-repo.sh without touching the machine's own apt or dpkg state.
#
# Usage: scripts/test-apt-root.sh ROOT REPO_DIR
#   ROOT      wiped and recreated (must be missing, empty, or a root this script made before)
#   REPO_DIR  output directory of scripts/build-test-repo.sh (holds main/ and security/)
# Prints the line to export, then use apt as usual, e.g.:
#   export APT_CONFIG=ROOT/apt.conf
#   apt-get update && apt-get install -y lpm-test-hello=1.0-1
#   dpkg-query --root=ROOT -W lpm-test-hello      (dpkg itself needs --root, see docs/testing-apt.md)
#
# Never run apt-get on such a repository without APT_CONFIG pointing at this root: overriding only
# Dir::Etc::SourceList on the real root makes "apt-get update" delete the host's own index files.
# That is why every Dir:: setting, the config parts directory and dpkg's root and log are redirected.

set -euo pipefail

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 ROOT REPO_DIR"
R="$(realpath -m -- "$1")"
REPO="$(realpath -m -- "$2")"
[ "$R" != "/" ] || die "refusing to use / as ROOT"
[ -f "$REPO/main/Packages" ] && [ -f "$REPO/security/Packages" ] ||
  die "$REPO is not a repository built by scripts/build-test-repo.sh"
case "$R/" in "$REPO/"*) die "ROOT must not be inside REPO_DIR" ;; esac

MARKER=".lpm-test-apt-root"
if [ -e "$R" ]; then
  [ -d "$R" ] || die "$R exists and is not a directory"
  if [ -n "$(ls -A -- "$R")" ] && [ ! -e "$R/$MARKER" ]; then
    die "$R is not empty and was not made by this script; refusing to delete it"
  fi
  rm -rf -- "$R"
fi

mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/apt/lists/partial" \
  "$R/var/cache/apt/archives/partial" "$R/var/log/apt" "$R/etc/apt/apt.conf.d" "$R/etc/apt/preferences.d"
: >"$R/var/lib/dpkg/status"
touch "$R/$MARKER"

cat >"$R/sources.list" <<EOF
deb [trusted=yes] file:$REPO/main ./
deb [trusted=yes] file:$REPO/security ./
EOF

# Dir "R/" comes first so that every Dir:: path not set below (or later deleted by mistake) still
# defaults to inside R (etc/apt/apt.conf, extended_states, pkgcache.bin, ...); only apt's binaries
# (Dir::Bin::*) stay absolute host paths. The explicit lines after it say the same thing on purpose.
cat >"$R/apt.conf" <<EOF
Dir "$R/";
Dir::Etc::SourceList "$R/sources.list";
Dir::Etc::SourceParts "-";
Dir::Etc::Parts "$R/etc/apt/apt.conf.d";
Dir::Etc::Preferences "$R/etc/apt/preferences";
Dir::Etc::PreferencesParts "$R/etc/apt/preferences.d";
Dir::State "$R/var/lib/apt";
Dir::State::Lists "$R/var/lib/apt/lists";
Dir::State::status "$R/var/lib/dpkg/status";
Dir::Cache "$R/var/cache/apt";
Dir::Log "$R/var/log/apt";
DPkg::Options {
  "--root=$R";
  "--admindir=$R/var/lib/dpkg";
  "--log=$R/var/log/dpkg.log";
  "--force-script-chrootless";
  "--force-not-root";
};
APT::Sandbox::User "root";
EOF

# Read-only check that apt resolves every state, cache, log and config path inside R.
command -v apt-config >/dev/null || die "apt-config not found (package apt)"
resolved="$(APT_CONFIG="$R/apt.conf" apt-config shell \
  P Dir::State::lists/d P Dir::State::status/f P Dir::State::extended_states/f \
  P Dir::Cache::archives/d P Dir::Cache::pkgcache/f P Dir::Cache::srcpkgcache/f P Dir::Log/d \
  P Dir::Etc::sourcelist/f P Dir::Etc::parts/d P Dir::Etc::main/f P Dir::Etc::preferences/f \
  P Dir::Etc::preferencesparts/d | sed -n "s/^P='\(.*\)'$/\1/p")"
[ "$(printf '%s\n' "$resolved" | wc -l)" -eq 12 ] || die "apt-config did not resolve the paths of $R/apt.conf"
while IFS= read -r p; do
  case "$p" in "$R"/*) ;; *) die "apt would use $p, outside $R: refusing" ;; esac
done <<<"$resolved"
APT_CONFIG="$R/apt.conf" apt-config dump DPkg::Options | grep -qF -- "\"--root=$R\"" ||
  die "DPkg::Options of $R/apt.conf lacks --root=$R"

echo "Isolated apt root ready in $R (sources: $REPO/main, $REPO/security)"
echo "export APT_CONFIG=$R/apt.conf"
