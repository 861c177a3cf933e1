#!/usr/bin/env bash
# Creates an isolated package root in which the real dnf, zypper or pacman install the packages
# of scripts/build-test-family-repos.sh without touching the machine's own package state.
#
# Usage: scripts/test-family-root.sh dnf|zypper|pacman ROOT REPOS_DIR
#   ROOT       wiped and recreated (must be missing, empty, or a root this script made before)
#   REPOS_DIR  output directory of scripts/build-test-family-repos.sh
# Every path each tool writes (database, cache, logs, keys, hooks) is inside ROOT:
#   dnf     ROOT/etc/dnf/dnf.conf (use with --config and --installroot ROOT); its paths are
#           relative to the install root, as dnf reads them
#   zypper  the repository added with `zypper --root ROOT` (gpg checks off for this one only)
#   pacman  ROOT/etc/pacman.conf (use with --config, --root ROOT and the --dbpath, --cachedir,
#           --logfile, --gpgdir and --hookdir inside ROOT); every test package file is also put in
#           the root's package cache, as pacman keeps the versions a host had installed before
# The repository metadata is fetched once, so later calls need no refresh.

set -euo pipefail

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 3 ] || die "usage: $0 dnf|zypper|pacman ROOT REPOS_DIR"
FAMILY="$1"
R="$(realpath -m -- "$2")"
REPOS="$(realpath -m -- "$3")"
[ "$R" != "/" ] || die "refusing to use / as ROOT"
[ -e "$REPOS/.lpm-test-family-repos" ] || die "$REPOS was not built by scripts/build-test-family-repos.sh"

MARKER=".lpm-test-family-root"
if [ -e "$R" ]; then
  [ -d "$R" ] || die "$R exists and is not a directory"
  if [ -n "$(ls -A -- "$R")" ] && [ ! -e "$R/$MARKER" ]; then
    die "$R is not empty and was not made by this script; refusing to delete it"
  fi
  rm -rf -- "$R"
fi
mkdir -p "$R"
touch "$R/$MARKER"

case "$FAMILY" in
  dnf)
    mkdir -p "$R/etc/dnf" "$R/etc/yum.repos.d"
    cat >"$R/etc/dnf/dnf.conf" <<CONF
[main]
gpgcheck=0
installonly_limit=3
clean_requirements_on_remove=False
reposdir=/etc/yum.repos.d
cachedir=/var/cache/dnf
logdir=/var/log
persistdir=/var/lib/dnf
keepcache=1
CONF
    cat >"$R/etc/yum.repos.d/lpm-test.repo" <<CONF
[lpm-test]
name=LPM test
baseurl=file://$REPOS/rpm
gpgcheck=0
metadata_expire=never
CONF
    dnf -q -y --config "$R/etc/dnf/dnf.conf" --installroot "$R" --releasever 1 makecache >/dev/null
    echo "dnf root ready in $R: dnf --config $R/etc/dnf/dnf.conf --installroot $R"
    ;;
  zypper)
    zypper --quiet --non-interactive --root "$R" addrepo --no-gpgcheck "file://$REPOS/rpm" lpm-test >/dev/null
    zypper --quiet --non-interactive --root "$R" refresh >/dev/null
    echo "zypper root ready in $R: zypper --root $R"
    ;;
  pacman)
    mkdir -p "$R/var/lib/pacman" "$R/var/cache/pacman/pkg" "$R/var/log" "$R/etc/pacman.d/gnupg" \
      "$R/etc/pacman.d/hooks"
    cat >"$R/etc/pacman.conf" <<CONF
[options]
Architecture = auto
SigLevel = Never
LocalFileSigLevel = Never

[lpm-test]
Server = file://$REPOS/pacman
CONF
    cp -- "$REPOS"/pacman/*.pkg.tar.zst "$R/var/cache/pacman/pkg/"
    pacman --noconfirm --config "$R/etc/pacman.conf" --root "$R" --dbpath "$R/var/lib/pacman" \
      --cachedir "$R/var/cache/pacman/pkg" --logfile "$R/var/log/pacman.log" \
      --gpgdir "$R/etc/pacman.d/gnupg" --hookdir "$R/etc/pacman.d/hooks" -Sy >/dev/null
    echo "pacman root ready in $R: pacman --config $R/etc/pacman.conf --root $R (paths inside it)"
    ;;
  *) die "family must be dnf, zypper or pacman" ;;
esac
