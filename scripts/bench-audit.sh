#!/usr/bin/env bash
# Benchmarks the manager's audit-chain verification on SQLite, on this machine, in one run:
#   full verification of RECORDS records          (`patch-manager verify-audit`, 3 runs, median)
#   incremental verification of the last 1,000    (`patch-manager verify-audit --since`, 5 runs)
#   latency of an audited request (GET /api/v1/ca/root.crt, one kept-alive connection) while the
#   manager's own full verification runs at start, and afterwards when none runs (the baseline)
# Usage: scripts/bench-audit.sh [RECORDS] [BASELINE_REQUESTS]   (defaults 1000000 and 300).
# Only loopback traffic. The figures go into docs/benchmarks.md.
#
# The chain is filled by a direct batched insert (Python's sqlite3, 10,000 rows a transaction)
# that computes the same row hashes as app/src/db/audit.rs (SHA-256 of the canonical JSON array);
# the manager's own verifier then checks every one of them, so a fill that hashed differently
# would show as "BROKEN" instead of a time. The manager writes the first records (its start)
# and the signed checkpoints itself.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
RECORDS="${1:-1000000}"
N="${2:-300}"

step "Building patch-manager (release)"
cargo build --release -p app --bin patch-manager --quiet
PM="$CARGO_TARGET_DIR/release/patch-manager"

W="$(mktemp -d)"
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$W"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/manager.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
tls = "off"
workers = 2
site_root = "$SITE_ROOT"
assets_dir = "$ROOT/assets"
[data]
dir = "$W/data"
[log]
level = "info"
format = "json"
TOML
export PATCH_MANAGER_CONFIG="$W/manager.toml"
DB="$W/data/patch-manager.db"

start_manager() { # LOGFILE
  # The audited request below is a public one, limited per source in production: lifted here.
  "$PM" --set server.public_writes_per_minute=100000 serve > "$1" 2>&1 & PID=$!
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/status/health" && return 0
    sleep 0.05
  done
  cat "$1"; die "the manager did not start"
}
stop_manager() { kill -TERM "$PID"; wait "$PID" || true; PID=; }

step "First start (creates the database, the CA and the checkpoint key), clean stop"
start_manager "$W/first.log"
stop_manager

step "Filling the audit log to $RECORDS records (direct batched insert, same hashes)"
fill_start=$(date +%s.%N)
python3 - "$DB" "$RECORDS" <<'PY'
import hashlib, json, os, sqlite3, sys, datetime
db, total = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=OFF")
last_id, prev = con.execute("SELECT id, row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
base = datetime.datetime(2026, 1, 1)
batch = []
def flush():
    con.executemany("INSERT INTO audit_log (id, ts, actor, action, target, outcome, details_json, "
                    "source_ip, request_id, prev_hash, row_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)", batch)
    con.commit()
    batch.clear()
for i in range(last_id + 1, total + 1):
    ts = base + datetime.timedelta(microseconds=i * 1000 + 1)  # never a whole second
    actor, action, target, outcome = "anonymous", "ca.downloaded", None, "success"
    details = json.dumps({"n": i}, separators=(",", ":"))
    source, request = "127.0.0.1", "01BENCH" + format(i, "019d")
    canonical = json.dumps([i, ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), actor, action, target, outcome,
                            details, source, request, prev], separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256(canonical.encode()).hexdigest()
    batch.append((i, ts.strftime("%Y-%m-%d %H:%M:%S.%f"), actor, action, target, outcome, details,
                  source, request, prev, h))
    prev = h
    if len(batch) == 10000:
        flush()
flush()
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
fill_end=$(date +%s.%N)
info "filled in $(python3 -c "print(round($fill_end - $fill_start, 1))") s; database $(du -h "$DB" | cut -f1)"

# median of numbers, one per line
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# "... (N verified in X s)" -> X
took() { sed -n 's/.* verified in \([0-9.]*\) s).*/\1/p'; }

step "Full verification, 3 runs (verify-audit: its own process and connection)"
for _ in 1 2 3; do
  out=$("$PM" verify-audit) || die "verification failed: $out"
  info "$out"
  echo "$out" | took >> "$W/full.times"
done
full=$(median < "$W/full.times")

step "Incremental verification of the last 1000 records, 5 runs"
tail_id=$("$PM" verify-audit --since "$RECORDS" | sed -n 's/.*intact: \([0-9]*\) records.*/\1/p')
for _ in 1 2 3 4 5; do
  out=$("$PM" verify-audit --since "$((tail_id - 1000))") || die "verification failed: $out"
  echo "$out" | took >> "$W/incr.times"
done
info "$out"
incr=$(median < "$W/incr.times")

# The client: GET the root CA (audited: ca.downloaded) on one kept-alive connection; with
# --until-log it runs until the manager logs the end of its start-up verification, otherwise N times.
cat > "$W/client.py" <<'PY'
import http.client, sys, time
port, mode, arg, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
times, bad = [], 0
def one():
    global bad
    t = time.perf_counter()
    c.request("GET", "/api/v1/ca/root.crt")
    r = c.getresponse(); r.read()
    times.append(time.perf_counter() - t)
    if r.status != 200: bad += 1
if mode == "until-log":
    while "audit chain verified (full)" not in open(arg).read():
        one()
else:
    for _ in range(int(arg)): one()
open(out, "w").write("\n".join(map(str, times)) + "\n")
print(len(times), bad)
PY
# stats FILE: median, p95 and max (seconds) -> milliseconds
stats() { sort -g "$1" | awk '{a[NR]=$1} END {printf "%.2f %.2f %.2f\n", a[int((NR+1)/2)]*1000, a[int(NR*0.95+0.5)]*1000, a[NR]*1000}'; }

step "Audited requests while the manager's start-up full verification runs"
start_manager "$W/serve.log"
read -r n_during bad_during < <(python3 "$W/client.py" "$PORT" until-log "$W/serve.log" "$W/during.times")
inproc_ms=$(grep '"audit chain verified (full)"' "$W/serve.log" | head -1 | python3 -c 'import json,sys; l=json.loads(sys.stdin.readline()); print(l.get("elapsed_ms", l.get("fields", {}).get("elapsed_ms")))' 2>/dev/null || echo "?")
info "$n_during requests during the verification ($bad_during not 200); it took $inproc_ms ms in the manager"
step "Baseline: $N audited requests with no verification running"
read -r n_base bad_base < <(python3 "$W/client.py" "$PORT" count "$N" "$W/base.times")
info "$n_base requests ($bad_base not 200)"
stop_manager
"$PM" verify-audit | sed 's/^/    after the run: /'

read -r d_med d_p95 d_max < <(stats "$W/during.times")
read -r b_med b_p95 b_max < <(stats "$W/base.times")
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
printf '\nMachine: %s vCPU "%s", %s GiB RAM, %s; %s\n' "$(nproc)" "$cpu" \
  "$(free -g | awk '/Mem:/ {print $2}')" "$(. /etc/os-release; echo "$PRETTY_NAME")" "$(date -u +%F)"
printf '| measure | value |\n|---|---|\n'
printf '| records | %s |\n' "$tail_id"
printf '| full verification (verify-audit, median of 3) | %s s |\n' "$full"
printf '| full verification in the manager (start-up) | %s ms |\n' "$inproc_ms"
printf '| incremental verification, last 1000 records (median of 5) | %.1f ms |\n' "$(python3 -c "print($incr*1000)")"
printf '\n| GET /api/v1/ca/root.crt (audited) | samples | median ms | p95 ms | max ms |\n|---|---|---|---|---|\n'
printf '| while a full verification runs | %s | %s | %s | %s |\n' "$n_during" "$d_med" "$d_p95" "$d_max"
printf '| no verification running (baseline) | %s | %s | %s | %s |\n' "$n_base" "$b_med" "$b_p95" "$b_max"
