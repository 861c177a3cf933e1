#!/usr/bin/env bash
# Benchmarks the agent's installed-package readers of dnf, zypper and pacman against each family's
# own list command, in one run, on isolated roots holding N generated packages (plus the test
# packages): `rpm -qa --queryformat` (dnf, zypper) and the pacman local database read, each with
# an empty cache and from the agent's cache, against `dnf -C list --installed`,
# `zypper search --installed-only` and `pacman -Q`.
# Usage: scripts/bench-backends.sh [PACKAGES] [RUNS]   (default 1000 packages, 30 runs).
# Nothing leaves the machine; the machine's own package state is not touched.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
N="${1:-1000}"
RUNS="${2:-30}"
ensure_apt dnf rpm createrepo-c zypper pacman-package-manager makepkg libarchive-tools zstd

step "Building the read_paths benchmark (release)"
cargo build --release -p agent --example read_paths --quiet
BENCH="$CARGO_TARGET_DIR/release/examples/read_paths"

W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
step "Test repositories plus $N generated packages in $W"
bash scripts/build-test-family-repos.sh "$W/repos" >/dev/null
# RPM: one spec, N subpackages (one rpmbuild run).
mkdir -p "$W/rpmbuild/SPECS"
{
  printf 'Name: lpm-bulk\nVersion: 1.0\nRelease: 1\nSummary: bulk\nLicense: MIT\nBuildArch: noarch\n'
  printf '%%description\nbulk\n'
  for i in $(seq 1 "$N"); do printf '%%package -n lpm-bulk-%d\nSummary: Bulk package %d\n%%description -n lpm-bulk-%d\nbulk\n' "$i" "$i" "$i"; done
  printf '%%install\n'
  for i in $(seq 1 "$N"); do printf 'mkdir -p %%{buildroot}/usr/share/lpm-bulk/%d && echo %d > %%{buildroot}/usr/share/lpm-bulk/%d/f\n' "$i" "$i" "$i"; done
  for i in $(seq 1 "$N"); do printf '%%files -n lpm-bulk-%d\n/usr/share/lpm-bulk/%d\n' "$i" "$i"; done
} >"$W/rpmbuild/SPECS/bulk.spec"
rpmbuild --quiet -bb --define "_topdir $W/rpmbuild" --define "_rpmdir $W/repos/rpm" "$W/rpmbuild/SPECS/bulk.spec" >/dev/null
createrepo_c -q "$W/repos/rpm"
# pacman: N packages.
for i in $(seq 1 "$N"); do
  t="$W/pac/$i"; mkdir -p "$t/usr/share/lpm-bulk/$i"; echo "$i" >"$t/usr/share/lpm-bulk/$i/f"
  printf 'pkgname = lpm-bulk-%d\npkgbase = lpm-bulk-%d\npkgver = 1.0-1\npkgdesc = Bulk package %d\narch = any\nsize = 2\n' "$i" "$i" "$i" >"$t/.PKGINFO"
  (cd "$t" && bsdtar -cf - .PKGINFO usr | zstd -q -o "$W/repos/pacman/lpm-bulk-$i-1.0-1-any.pkg.tar.zst")
done
repo-add -q "$W/repos/pacman/lpm-test.db.tar.gz" "$W"/repos/pacman/lpm-bulk-*.pkg.tar.zst

bulk=()
for i in $(seq 1 "$N"); do bulk+=("lpm-bulk-$i"); done
step "dnf root"
bash scripts/test-family-root.sh dnf "$W/dnf" "$W/repos" >/dev/null
dnf -q -y --config "$W/dnf/etc/dnf/dnf.conf" --installroot "$W/dnf" install "${bulk[@]}" lpm-test-hello >/dev/null
step "zypper root"
bash scripts/test-family-root.sh zypper "$W/zypper" "$W/repos" >/dev/null
zypper --quiet --non-interactive --root "$W/zypper" install "${bulk[@]}" lpm-test-hello >/dev/null 2>&1
step "pacman root"
bash scripts/test-family-root.sh pacman "$W/pacman" "$W/repos" >/dev/null
pacman --noconfirm --config "$W/pacman/etc/pacman.conf" --root "$W/pacman" --dbpath "$W/pacman/var/lib/pacman" \
  --cachedir "$W/pacman/var/cache/pacman/pkg" --logfile "$W/pacman/var/log/pacman.log" \
  --gpgdir "$W/pacman/etc/pacman.d/gnupg" --hookdir "$W/pacman/etc/pacman.d/hooks" -S "${bulk[@]}" lpm-test-hello >/dev/null

step "Measuring ($RUNS runs each; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "| measure | median ms | p95 ms | packages |"
echo "|---|---|---|---|"
for f in dnf zypper pacman; do "$BENCH" "$f" "$W/$f" "$RUNS"; done
