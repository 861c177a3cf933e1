#!/usr/bin/env bash
# Backup and restore of a manager whose database holds a fleet's inventory: HOSTS hosts with
# PACKAGES installed packages each (SQLite, the default engine), three runs each, medians; the
# baseline in the same run is the cheapest copy there is: `cp -a` of the data directory and a
# `tar | gzip` of it (no consistency, no manifest, no checks).
# Usage: scripts/bench-backup.sh [HOSTS] [PACKAGES]     (defaults 1000 800)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
hosts="${1:-1000}"
packages="${2:-800}"
step "Building patch-manager (release)"
cargo build --release -p app --bin patch-manager --quiet
bin="$CARGO_TARGET_DIR/release/patch-manager"
W=$(mktemp -d /var/tmp/lpm-bench-backup.XXXXXX)
trap 'rm -rf "$W"' EXIT
DATA="$W/data"
pm() { "$bin" --data-dir "$DATA" --set metrics.listen= --set log.level=warn "$@"; }

step "A manager's data directory with $hosts hosts x $packages packages"
# One start makes the database, the CAs, the keys and the certificates; then it stops.
"$bin" --data-dir "$DATA" --set metrics.listen= --set log.level=warn --listen 127.0.0.1:0 \
  --set server.tls=off serve & pid=$!
for _ in $(seq 1 200); do [ -f "$DATA/pki/manager-client.crt" ] && break; sleep 0.1; done
kill "$pid"; wait "$pid" 2>/dev/null || true
[ -f "$DATA/ca/ca.key" ] || die "the manager did not create its data directory"
python3 - "$DATA/patch-manager.db" "$hosts" "$packages" <<'PY'
import sqlite3, sys
db, hosts, packages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db)
now = "2026-12-01 00:00:00"
c.executemany(
    "INSERT INTO hosts (ip_address, display_name, agent_port, status, reboot_required, pending_patches,"
    " pending_security_patches, created_at, updated_at) VALUES (?, ?, 12443, 'healthy', 0, 3, 1, ?, ?)",
    [(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", f"host-{i:05}", now, now) for i in range(hosts)])
ids = [r[0] for r in c.execute("SELECT id FROM hosts")]
for h in ids:
    c.executemany("INSERT INTO host_packages (host_id, name, arch, version, status, source) VALUES (?, ?, 'amd64', ?, 'installed', NULL)",
                  [(h, f"package-{p:04}", f"1.{p % 17}.{p % 5}-{p % 3}") for p in range(packages)])
c.commit()
PY
size=$(du -sk "$DATA" | cut -f1)
info "data directory: $(( size / 1024 )) MiB"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
declare -A results
for run in 1 2 3; do
  rm -rf "$W/out" "$W/copy" "$W/restored"; mkdir -p "$W/out"
  results[cp]+="$(ms cp -a "$DATA" "$W/copy") "
  results[targz]+="$(ms sh -c "tar -C '$W' -cf - data | gzip -6 > '$W/out/plain.tar.gz'") "
  results[backup]+="$(ms pm backup -o "$W/out/backup.tar.gz") "
  results[check]+="$(ms pm restore --check "$W/out/backup.tar.gz") "
  results[restore]+="$(ms "$bin" --data-dir "$W/restored" --set metrics.listen= --set log.level=warn restore "$W/out/backup.tar.gz") "
done
archive=$(stat -c %s "$W/out/backup.tar.gz")
plain=$(stat -c %s "$W/out/plain.tar.gz")
step "Results (ms, median of 3; $(nproc) cores, $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo) GiB)"
printf '| step | median ms | runs |\n|---|---|---|\n'
for k in cp targz backup check restore; do
  printf '| %s | %s | %s |\n' "$k" "$(echo "${results[$k]}" | tr ' ' '\n' | grep . | median)" "${results[$k]}"
done
info "archive $(( archive / 1024 )) KiB (plain tar.gz of the data directory: $(( plain / 1024 )) KiB)"
