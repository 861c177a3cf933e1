#!/usr/bin/env bash
# Builds a local, unsigned apt repository of tiny "lpm-test-*" packages for the agent's apt/dpkg tests.
#
# Usage: scripts/build-test-repo.sh OUT_DIR
#
# OUT_DIR is wiped and rebuilt from scratch on every run (it must be empty, missing, or a repository
# this script built before). The result is two flat repositories:
#   OUT_DIR/main      Origin "LPM Test", Suite stable: lpm-test-hello 1.0-1 1.1-1 2.0-1, lpm-test-lib,
#                     lpm-test-app (Depends lpm-test-lib), lpm-test-secure 1.0-1, lpm-test-broken
#                     (postinst exits 1), lpm-test-missing (Depends on lpm-test-nowhere, which no
#                     repository has), lpm-test-reboot, lpm-test-slow (postinst sleeps 3 s),
#                     lpm-test-hang (postinst sleeps 600 s), lpm-test-chatty and lpm-test-chatty2
#                     (postinst prints 10,000 lines over about 8 s)
#   OUT_DIR/security  Origin Debian, Label Debian-Security, Suite stable-security: lpm-test-secure 1.0-2
#                     (its changelog.Debian.gz names CVE-2026-0001 and CVE-2026-0002, as Debian's do)
# Use them with these sources.list lines (never on the real system, see scripts/test-apt-root.sh):
#   deb [trusted=yes] file:/ABSOLUTE/OUT_DIR/main ./
#   deb [trusted=yes] file:/ABSOLUTE/OUT_DIR/security ./
# Every package installs /usr/share/lpm-test/<name>/VERSION containing its version.
# Needs dpkg-deb, dpkg-scanpackages (package dpkg-dev), gzip and sha256sum; installs nothing itself.
# Output is reproducible: file times come from SOURCE_DATE_EPOCH (a fixed default unless set).

set -euo pipefail
umask 022 # file modes inside the .debs must not depend on the caller's umask

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (package dpkg)"
command -v dpkg-scanpackages >/dev/null || die "dpkg-scanpackages not found: install the Debian package dpkg-dev"
command -v sha256sum >/dev/null || die "sha256sum not found (package coreutils)"

MARKER=".lpm-test-repo"
OUT="$(realpath -m -- "$1")"
[ "$OUT" != "/" ] || die "refusing to use / as OUT_DIR"
if [ -e "$OUT" ]; then
  [ -d "$OUT" ] || die "$OUT exists and is not a directory"
  if [ -n "$(ls -A -- "$OUT")" ] && [ ! -e "$OUT/$MARKER" ]; then
    die "$OUT is not empty and was not built by this script; refusing to delete it"
  fi
  rm -rf -- "$OUT"
fi
mkdir -p "$OUT/main" "$OUT/security"
touch "$OUT/$MARKER"

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1767225600}" # 2026-01-01 00:00:00 UTC
MAINTAINER="Linux Patch Manager tests <tests@localhost>"
STAGE="$(mktemp -d)"
trap 'rm -rf -- "$STAGE"' EXIT

# new_pkg NAME VERSION: starts a package tree in $STAGE/NAME_VERSION (printed on stdout) with its VERSION file.
new_pkg() {
  local dir="$STAGE/${1}_$2"
  mkdir -p "$dir/DEBIAN" "$dir/usr/share/lpm-test/$1"
  printf '%s\n' "$2" >"$dir/usr/share/lpm-test/$1/VERSION"
  printf '%s\n' "$dir"
}

# build_pkg DIR SUITE NAME VERSION DESCRIPTION [EXTRA_CONTROL_LINE...]: writes DEBIAN/control and builds the .deb into OUT/SUITE.
build_pkg() {
  local dir="$1" suite="$2" name="$3" version="$4" desc="$5"
  shift 5
  local size
  size="$(du -sk --exclude=DEBIAN "$dir" | cut -f1)"
  {
    printf 'Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: %s\n' "$name" "$version" "$MAINTAINER"
    printf 'Installed-Size: %s\nSection: misc\nPriority: optional\n' "$size"
    local line
    for line in "$@"; do printf '%s\n' "$line"; done
    printf 'Description: %s\n Test package of Linux Patch Manager; installs /usr/share/lpm-test/%s/VERSION.\n' "$desc" "$name"
  } >"$dir/DEBIAN/control"
  local deb="$OUT/$suite/${name}_${version}_all.deb"
  dpkg-deb --root-owner-group -Zgzip --build "$dir" "$deb" >/dev/null
  printf '  %-9s %-16s %-6s %s\n' "$suite" "$name" "$version" "$(basename "$deb")"
}

echo "Building test packages into $OUT"

for v in 1.0-1 1.1-1 2.0-1; do
  d="$(new_pkg lpm-test-hello "$v")"
  build_pkg "$d" main lpm-test-hello "$v" "LPM test package with several versions"
done

d="$(new_pkg lpm-test-lib 1.0-1)"
build_pkg "$d" main lpm-test-lib 1.0-1 "LPM test library (a dependency of lpm-test-app)"

d="$(new_pkg lpm-test-app 1.0-1)"
build_pkg "$d" main lpm-test-app 1.0-1 "LPM test application depending on lpm-test-lib" "Depends: lpm-test-lib (>= 1.0)"

d="$(new_pkg lpm-test-secure 1.0-1)"
build_pkg "$d" main lpm-test-secure 1.0-1 "LPM test package with a security update"

d="$(new_pkg lpm-test-secure 1.0-2)"
mkdir -p "$d/usr/share/doc/lpm-test-secure"
cat >"$STAGE/changelog.Debian" <<EOF
lpm-test-secure (1.0-2) bookworm-security; urgency=high

  * Fix CVE-2026-0001: test buffer overflow in the VERSION file reader.
  * Fix CVE-2026-0002: test privilege escalation in the VERSION file writer.

 -- $MAINTAINER  Thu, 01 Jan 2026 00:00:00 +0000

lpm-test-secure (1.0-1) stable; urgency=medium

  * Initial release.

 -- $MAINTAINER  Thu, 01 Jan 2026 00:00:00 +0000
EOF
gzip -9n <"$STAGE/changelog.Debian" >"$d/usr/share/doc/lpm-test-secure/changelog.Debian.gz"
build_pkg "$d" security lpm-test-secure 1.0-2 "LPM test package with a security update (fixed)"

d="$(new_pkg lpm-test-broken 1.0-1)"
printf '#!/bin/sh\necho "lpm-test-broken: postinst fails on purpose" >&2\nexit 1\n' >"$d/DEBIAN/postinst"
chmod 0755 "$d/DEBIAN/postinst"
build_pkg "$d" main lpm-test-broken 1.0-1 "LPM test package whose postinst fails"

d="$(new_pkg lpm-test-missing 1.0-1)"
build_pkg "$d" main lpm-test-missing 1.0-1 "LPM test package with a dependency no repository has" "Depends: lpm-test-nowhere"

d="$(new_pkg lpm-test-reboot 1.0-1)"
build_pkg "$d" main lpm-test-reboot 1.0-1 "LPM test package for reboot-required tests"

# Slow maintainer scripts, for the agent's queue and timeout tests.
d="$(new_pkg lpm-test-slow 1.0-1)"
printf '#!/bin/sh\nsleep 3\nexit 0\n' >"$d/DEBIAN/postinst"
chmod 0755 "$d/DEBIAN/postinst"
build_pkg "$d" main lpm-test-slow 1.0-1 "LPM test package whose postinst takes 3 seconds"

d="$(new_pkg lpm-test-hang 1.0-1)"
printf '#!/bin/sh\nsleep 600\nexit 0\n' >"$d/DEBIAN/postinst"
chmod 0755 "$d/DEBIAN/postinst"
build_pkg "$d" main lpm-test-hang 1.0-1 "LPM test package whose postinst hangs (timeout tests)"

# Maintainer scripts with heavy output (10,000 lines in bursts of 25, about 8 s), for the job
# file's batching and crash tests.
for name in lpm-test-chatty lpm-test-chatty2; do
  d="$(new_pkg "$name" 1.0-1)"
  cat >"$d/DEBIAN/postinst" <<EOF
#!/bin/sh
i=0
while [ \$i -lt 400 ]; do
  j=0
  while [ \$j -lt 25 ]; do
    echo "$name: postinst line \$i.\$j"
    j=\$((j + 1))
  done
  sleep 0.02
  i=\$((i + 1))
done
exit 0
EOF
  chmod 0755 "$d/DEBIAN/postinst"
  build_pkg "$d" main "$name" 1.0-1 "LPM test package whose postinst prints 10,000 lines"
done

# index_suite SUITE ORIGIN LABEL SUITE_NAME CODENAME: writes Packages, Packages.gz and Release in OUT/SUITE.
index_suite() {
  local dir="$OUT/$1"
  # stderr only says "missing from override file" and "Wrote N entries"; show it only on failure.
  if ! (cd "$dir" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>"$STAGE/scan.err"); then
    cat "$STAGE/scan.err" >&2
    die "dpkg-scanpackages failed in $dir"
  fi
  gzip -9n <"$dir/Packages" >"$dir/Packages.gz"
  {
    printf 'Origin: %s\nLabel: %s\nSuite: %s\nCodename: %s\n' "$2" "$3" "$4" "$5"
    printf 'Date: %s\n' "$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a, %d %b %Y %H:%M:%S UTC')"
    printf 'Architectures: all\nComponents: main\nDescription: Linux Patch Manager test repository (%s)\n' "$1"
    local sum f
    for sum in MD5Sum:md5sum SHA256:sha256sum; do
      printf '%s:\n' "${sum%%:*}"
      for f in Packages Packages.gz; do
        printf ' %s %s %s\n' "$("${sum#*:}" "$dir/$f" | cut -d' ' -f1)" "$(stat -c %s "$dir/$f")" "$f"
      done
    done
  } >"$dir/Release"
  echo "  indexed $dir: $(grep -c '^Package:' "$dir/Packages") package versions"
}

index_suite main "LPM Test" "LPM Test" stable lpm
index_suite security Debian Debian-Security stable-security bookworm-security

echo "sources.list lines:"
echo "  deb [trusted=yes] file:$OUT/main ./"
echo "  deb [trusted=yes] file:$OUT/security ./"
