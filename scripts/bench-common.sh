# Shared by the benchmark scripts (bench-fleet.sh, bench-deploy.sh): release binaries, a fresh
# manager on its embedded SQLite with a signed-in bench Admin, simulated agents, /proc sampling.
# Expects lib.sh sourced, and sets: listen, agent_port, bin, tck, machine; uses no_build and the
# agents' keep_alive (default 5 s).
listen=127.0.0.1:18443
agent_port="${LPM_BENCH_AGENT_PORT:-13443}"
bin="$CARGO_TARGET_DIR/release"
tck=$(getconf CLK_TCK)

if [ -z "$no_build" ]; then
  step "Building patch-manager and patch-fleet-sim (release)"
  ensure_build_deps
  cargo build --release -p app -p agent --bins --quiet
else
  step "Measuring the release binaries already built (--no-build)"
  [ -x "$bin/patch-manager" ] && [ -x "$bin/patch-fleet-sim" ] || die "no release build in $bin"
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
api() { # method path [json]
  local args=(-sS --cacert "$DATA/web-ca/ca.crt" -X "$1" "https://$listen$2" -H "authorization: Bearer $bearer")
  [ -n "${3:-}" ] && args+=(-H 'content-type: application/json' -d "$3")
  curl "${args[@]}"
}
percentile() { sort -n | awk -v q="$1" '{a[NR]=$1} END {i=int(NR*q/100); if (i<1) i=1; if (i>NR) i=NR; print a[i]}'; }

start_manager() { # [health interval, default 60]
  DATA=$(mktemp -d /tmp/lpm-bench.XXXXXX)
  "$bin/patch-manager" --data-dir "$DATA" --listen "$listen" --set log.format=text --set log.level=info --set metrics.listen= \
    --set fleet.health_interval_secs="${1:-60}" --set fleet.agent_connections="${policy:-per_poll}" --set server.site_root="$SITE_ROOT" --set server.assets_dir="$ROOT/assets" \
    serve > "$DATA/manager.log" 2>&1 &
  manager=$!
  for _ in $(seq 1 150); do
    [ -f "$DATA/web-ca/ca.crt" ] && curl -fsS --cacert "$DATA/web-ca/ca.crt" "https://$listen/status/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  local token; token=$(cat "$DATA/setup-token")
  curl -fsS --cacert "$DATA/web-ca/ca.crt" -H 'content-type: application/json' "https://$listen/api/v1/setup" \
    -d "{\"token\":\"$token\",\"username\":\"bench\",\"password\":\"Tangerine-Orbit-2026-x\"}" >/dev/null
  bearer=$(curl -fsS --cacert "$DATA/web-ca/ca.crt" -H 'content-type: application/json' "https://$listen/api/v1/auth/login" \
    -d '{"username":"bench","password":"Tangerine-Orbit-2026-x","client":"api"}' | jq -r .access_token)
}

stop_all() {
  local pids=()
  [ -n "${sim:-}" ] && kill "$sim" 2>/dev/null && pids+=("$sim")
  [ -n "${manager:-}" ] && kill "$manager" 2>/dev/null && pids+=("$manager")
  # Only these two: a caller's other background processes (a chromedriver) keep running.
  [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}" 2>/dev/null || true
  sim=""; manager=""
  [ -n "${DATA:-}" ] && rm -rf "$DATA"
  DATA=""
}
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "${DATA:-}" ]; then
    echo "benchmark failed (exit $rc) at line ${failed_line:-?}; the manager's last log lines:" >&2
    tail -n 20 "$DATA/manager.log" >&2 2>/dev/null || true
    tail -n 5 "$DATA/sim/sim.log" >&2 2>/dev/null || true
  fi
  stop_all
}
trap 'failed_line=$LINENO' ERR
trap on_exit EXIT

# Measures the manager over $1 seconds: prints "cores max_rss_kib".
measure() {
  local c0 c1 max=0 r end=$((SECONDS + $1))
  c0=$(cpu_ticks "$manager")
  while [ $SECONDS -lt $end ]; do r=$(rss_kib "$manager"); [ "$r" -gt "$max" ] && max=$r; sleep 2; done
  c1=$(cpu_ticks "$manager")
  echo "$(awk -v d=$((c1 - c0)) -v t="$tck" -v w="$1" 'BEGIN {printf "%.3f", d / t / w}') $max"
}

machine="$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"

# Enrolls $1 simulated agents into the running manager and serves them (extra `run` flags after
# it); waits until they listen. Sets SIM and sim, and opens fd 3 on the simulator's control pipe.
start_sim() {
  local n="$1"; shift
  SIM="$DATA/sim"; mkdir -p "$SIM"
  "$bin/patch-manager" --data-dir "$DATA" enrollment-token --count "$n" 2>/dev/null > "$SIM/tokens"
  "$bin/patch-fleet-sim" --dir "$SIM" enroll --manager "https://$listen" --tokens "$SIM/tokens" \
    --base 127.20.0.1 --port "$agent_port" --parallel 8
  mkfifo "$SIM/control"
  "$bin/patch-fleet-sim" --dir "$SIM" run --keep-alive-secs "${keep_alive:-5}" "$@" < "$SIM/control" > "$SIM/sim.log" 2>&1 &
  sim=$!
  exec 3>"$SIM/control"
  for _ in $(seq 1 600); do grep -q '^serving' "$SIM/sim.log" 2>/dev/null && break; sleep 0.5; done
  grep -q '^serving' "$SIM/sim.log" || die "the simulator did not start: $(tail -n 3 "$SIM/sim.log")"
}
