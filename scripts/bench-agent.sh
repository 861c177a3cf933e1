#!/usr/bin/env bash
# Benchmarks the agent against the tools it replaces, on this machine, in one run:
#   GET /api/v1/packages (mTLS, kept-alive connection)  vs  dpkg-query -W   (the machine's dpkg database)
#   GET /api/v1/patches                                 vs  apt list --upgradable
#       (an isolated apt root over the project's test repository: no traffic leaves loopback)
#   agent RSS idle, after the reads, and peak during a package job
# Usage: scripts/bench-agent.sh [REQUESTS]   (default 300). Only loopback traffic.
# Prints medians and p95 in milliseconds; paste the table into docs/benchmarks.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
N="${1:-300}"

step "Building patch-agent (release)"
cargo build --release -p agent --bin patch-agent --quiet
AGENT="$CARGO_TARGET_DIR/release/patch-agent"

W="$(mktemp -d)"
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$W"' EXIT
step "Test PKI (openssl, ECDSA P-256) in $W"
cd "$W"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
  -days 3650 -subj "/CN=Bench CA" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf() { # name cn ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 90 -out "$1.crt" -extfile <(printf '%s\n' "$3") 2>/dev/null
}
leaf agent localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client bench-client "extendedKeyUsage=clientAuth"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > agent.toml <<TOML
[server]
listen = "127.0.0.1:$PORT"
allow = ["127.0.0.1"]
[tls]
cert = "$W/agent.crt"
key = "$W/agent.key"
client_ca = "$W/ca.crt"
[jobs]
state_dir = "$W/state"
[audit]
path = "$W/audit.jsonl"
[log]
level = "warn"
TOML
"$AGENT" --config agent.toml serve & PID=$!
for _ in $(seq 1 50); do curl -s -o /dev/null --cacert ca.crt --cert client.crt --key client.key "https://127.0.0.1:$PORT/api/v1/health" && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status"; }
idle_rss=$(rss)

# stats FILE: median and p95 of one number per line (seconds) -> milliseconds
stats() { sort -g "$1" | awk '{a[NR]=$1} END {printf "%.2f %.2f\n", a[int((NR+1)/2)]*1000, a[int(NR*0.95+0.5)]*1000}'; }

step "GET /api/v1/packages x $N on one kept-alive connection"
urls=(); for _ in $(seq 1 "$N"); do urls+=(-o /dev/null "https://127.0.0.1:$PORT/api/v1/packages"); done
curl -s --cacert ca.crt --cert client.crt --key client.key -w '%{time_total}\n' "${urls[@]}" \
  | tail -n +2 > agent.times   # the first transfer includes the handshake
busy_rss=$(rss)
npk=$(curl -s --cacert ca.crt --cert client.crt --key client.key "https://127.0.0.1:$PORT/api/v1/packages" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')

step "dpkg-query -W x $N"
for _ in $(seq 1 "$N"); do
  s=$(date +%s%N); dpkg-query -W >/dev/null; e=$(date +%s%N); echo "$(( e - s ))e-9"
done > dpkg.times

kill "$PID"; wait "$PID" 2>/dev/null || true

step "Isolated apt root with the test repository"
bash "$ROOT/scripts/build-test-repo.sh" "$W/repo" >/dev/null
bash "$ROOT/scripts/test-apt-root.sh" "$W/aptroot" "$W/repo" >/dev/null
export APT_CONFIG="$W/aptroot/apt.conf"
apt-get -qq update
printf '[backend]\napt_config = "%s"\n' "$APT_CONFIG" >> agent.toml
"$AGENT" --config agent.toml serve & PID=$!
for _ in $(seq 1 50); do curl -s -o /dev/null --cacert ca.crt --cert client.crt --key client.key "https://127.0.0.1:$PORT/api/v1/health" && break; sleep 0.1; done
api() { curl -s --cacert ca.crt --cert client.crt --key client.key "$@"; }
job=$(api -X POST -H 'Content-Type: application/json' \
  -d '{"packages":[{"name":"lpm-test-hello","version":"1.0-1"},{"name":"lpm-test-secure","version":"1.0-1"},{"name":"lpm-test-app"}]}' \
  "https://127.0.0.1:$PORT/api/v1/packages" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
until api "https://127.0.0.1:$PORT/api/v1/jobs/$job" | grep -q '"finished_at":"'; do sleep 0.1; done
peak_rss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$PID/status")
api -o /dev/null "https://127.0.0.1:$PORT/api/v1/patches"   # fills the cache (first call runs apt and reads changelogs)

step "GET /api/v1/patches x $N (cached until dpkg or apt state changes)"
urls=(); for _ in $(seq 1 "$N"); do urls+=(-o /dev/null "https://127.0.0.1:$PORT/api/v1/patches"); done
api -w '%{time_total}\n' "${urls[@]}" | tail -n +2 > patches.times

step "apt list --upgradable x $N (same root)"
for _ in $(seq 1 "$N"); do
  s=$(date +%s%N); apt list --upgradable >/dev/null 2>&1; e=$(date +%s%N); echo "$(( e - s ))e-9"
done > aptlist.times

read -r a50 a95 < <(stats agent.times)
read -r d50 d95 < <(stats dpkg.times)
read -r p50 p95 < <(stats patches.times)
read -r l50 l95 < <(stats aptlist.times)
step "Results ($(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs), $npk packages)"
printf '| measure | median ms | p95 ms |\n|---|---|---|\n'
printf '| GET /api/v1/packages (agent, mTLS, keep-alive) | %s | %s |\n' "$a50" "$a95"
printf '| dpkg-query -W (baseline) | %s | %s |\n' "$d50" "$d95"
printf '| GET /api/v1/patches (agent, test root) | %s | %s |\n' "$p50" "$p95"
printf '| apt list --upgradable (baseline, test root) | %s | %s |\n' "$l50" "$l95"
printf '\nagent RSS: idle %s MiB, after %s reads %s MiB, peak during an install job %s MiB\n' "$idle_rss" "$N" "$busy_rss" "$peak_rss"
