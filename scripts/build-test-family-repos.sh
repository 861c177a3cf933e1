#!/usr/bin/env bash
# Builds the local repositories the agent's dnf, zypper and pacman tests install from: the same
# tiny "lpm-test-*" packages as scripts/build-test-repo.sh builds for apt, so one contract suite
# runs against every family.
#
# Usage: scripts/build-test-family-repos.sh OUT_DIR
#
# OUT_DIR is wiped and rebuilt (it must be empty, missing, or a directory this script built).
#   OUT_DIR/rpm     noarch RPMs (rpmbuild) indexed by createrepo_c, with updateinfo.xml (one
#                   security advisory, LPM-2026-0001, severity Important, CVE-2026-0001 and
#                   CVE-2026-0002, fixing lpm-test-secure 1.0-2): for dnf and zypper
#   OUT_DIR/pacman  packages (.PKGINFO + files in a zstd tar, as makepkg writes them; makepkg
#                   refuses to run as root) indexed by repo-add as the repository "lpm-test"
# Packages: lpm-test-hello 1.0-1 1.1-1 2.0-1, lpm-test-lib 1.0-1, lpm-test-app 1.0-1 (needs
# lpm-test-lib), lpm-test-secure 1.0-1 1.0-2, lpm-test-missing 1.0-1 (needs lpm-test-nowhere,
# which no repository has). Each installs /usr/share/lpm-test/<name>/VERSION.
# Needs rpmbuild (rpm), createrepo_c and modifyrepo_c (createrepo-c), repo-add
# (pacman-package-manager; its helpers from makepkg), bsdtar (libarchive-tools) and zstd; installs nothing itself.

set -euo pipefail
umask 022

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
for tool in rpmbuild createrepo_c modifyrepo_c repo-add bsdtar zstd; do
  command -v "$tool" >/dev/null || die "$tool not found (see the header of $0 for its package)"
done

MARKER=".lpm-test-family-repos"
OUT="$(realpath -m -- "$1")"
[ "$OUT" != "/" ] || die "refusing to use / as OUT_DIR"
if [ -e "$OUT" ]; then
  [ -d "$OUT" ] || die "$OUT exists and is not a directory"
  if [ -n "$(ls -A -- "$OUT")" ] && [ ! -e "$OUT/$MARKER" ]; then
    die "$OUT is not empty and was not built by this script; refusing to delete it"
  fi
  rm -rf -- "$OUT"
fi
mkdir -p "$OUT/rpm" "$OUT/pacman"
touch "$OUT/$MARKER"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1767225600}" # 2026-01-01 00:00:00 UTC
STAGE="$(mktemp -d)"
trap 'rm -rf -- "$STAGE"' EXIT

# Every package: NAME VERSION RELEASE [DEPENDENCY]
PACKAGES=(
  "lpm-test-hello 1.0 1"
  "lpm-test-hello 1.1 1"
  "lpm-test-hello 2.0 1"
  "lpm-test-lib 1.0 1"
  "lpm-test-app 1.0 1 lpm-test-lib"
  "lpm-test-secure 1.0 1"
  "lpm-test-secure 1.0 2"
  "lpm-test-missing 1.0 1 lpm-test-nowhere"
)

echo "Building RPM test packages into $OUT/rpm"
mkdir -p "$STAGE/rpmbuild/SPECS"
for p in "${PACKAGES[@]}"; do
  read -r name version release dep <<<"$p"
  spec="$STAGE/rpmbuild/SPECS/$name-$version-$release.spec"
  {
    printf 'Name: %s\nVersion: %s\nRelease: %s\nSummary: LPM test package %s\n' "$name" "$version" "$release" "$name"
    printf 'License: MIT\nBuildArch: noarch\n'
    [ -n "${dep:-}" ] && printf 'Requires: %s\n' "$dep"
    printf '%%description\nTest package of Linux Patch Manager; installs /usr/share/lpm-test/%s/VERSION.\n' "$name"
    printf '%%install\nmkdir -p %%{buildroot}/usr/share/lpm-test/%s\n' "$name"
    printf 'echo %s-%s > %%{buildroot}/usr/share/lpm-test/%s/VERSION\n' "$version" "$release" "$name"
    printf '%%files\n/usr/share/lpm-test/%s\n' "$name"
  } >"$spec"
  rpmbuild --quiet -bb --define "_topdir $STAGE/rpmbuild" --define "_rpmdir $OUT/rpm" \
    --define "use_source_date_epoch_as_buildtime 1" "$spec" >/dev/null
  printf '  rpm     %-16s %s-%s\n' "$name" "$version" "$release"
done
createrepo_c -q "$OUT/rpm"
cat >"$STAGE/updateinfo.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update from="tests@localhost" status="final" type="security" version="1.4">
    <id>LPM-2026-0001</id>
    <title>Important: lpm-test-secure security update</title>
    <severity>Important</severity>
    <issued date="2026-01-01 00:00:00"/>
    <references>
      <reference href="https://example.invalid/CVE-2026-0001" id="CVE-2026-0001" type="cve" title="CVE-2026-0001"/>
      <reference href="https://example.invalid/CVE-2026-0002" id="CVE-2026-0002" type="cve" title="CVE-2026-0002"/>
    </references>
    <description>Fixes two test vulnerabilities.</description>
    <pkglist>
      <collection short="lpm-test">
        <name>LPM test</name>
        <package name="lpm-test-secure" version="1.0" release="2" epoch="0" arch="noarch" src="lpm-test-secure-1.0-2.src.rpm">
          <filename>lpm-test-secure-1.0-2.noarch.rpm</filename>
        </package>
      </collection>
    </pkglist>
  </update>
</updates>
XML
modifyrepo_c --mdtype=updateinfo "$STAGE/updateinfo.xml" "$OUT/rpm/repodata" >/dev/null

echo "Building pacman test packages into $OUT/pacman"
for p in "${PACKAGES[@]}"; do
  read -r name version release dep <<<"$p"
  tree="$STAGE/pacman/$name-$version-$release"
  mkdir -p "$tree/usr/share/lpm-test/$name"
  printf '%s-%s\n' "$version" "$release" >"$tree/usr/share/lpm-test/$name/VERSION"
  {
    printf 'pkgname = %s\npkgbase = %s\npkgver = %s-%s\n' "$name" "$name" "$version" "$release"
    printf 'pkgdesc = LPM test package %s\nurl = https://example.invalid/\n' "$name"
    printf 'builddate = %s\npackager = Linux Patch Manager tests <tests@localhost>\n' "$SOURCE_DATE_EPOCH"
    printf 'size = %s\narch = any\nlicense = MIT\n' "$(du -sb "$tree/usr" | cut -f1)"
    [ -n "${dep:-}" ] && printf 'depend = %s\n' "$dep"
  } >"$tree/.PKGINFO"
  file="$OUT/pacman/$name-$version-$release-any.pkg.tar.zst"
  (cd "$tree" && bsdtar --uid 0 --gid 0 --uname root --gname root -cf - .PKGINFO usr | zstd -q -19 -o "$file")
  printf '  pacman  %-16s %s-%s\n' "$name" "$version" "$release"
done
# The sync database holds the newest version of each package, as an Arch mirror does; older
# ones are only in the directory (the tests copy them into a root's cache as pacman would have).
newest=()
for f in "$OUT"/pacman/*.pkg.tar.zst; do
  case "$(basename "$f")" in
    lpm-test-hello-1.0-1-*|lpm-test-hello-1.1-1-*|lpm-test-secure-1.0-1-*) ;;
    *) newest+=("$f") ;;
  esac
done
repo-add -q "$OUT/pacman/lpm-test.db.tar.gz" "${newest[@]}"
echo "Test repositories ready: $OUT/rpm (dnf, zypper), $OUT/pacman (pacman)"
