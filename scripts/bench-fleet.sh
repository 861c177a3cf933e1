#!/usr/bin/env bash
# The fleet benchmark (issue: fleet supervision). For each fleet size: a fresh patch-manager
# (release build, embedded SQLite, health polls every 60 s) and that many simulated agents
# (patch-fleet-sim: one process, each agent on its own 127.20.x.y address with its own certificate
# from the enrollment path, the real agent TLS stack over a simulated package manager). Measured
# over a window after every host has been polled once:
#   manager CPU (from /proc, cores on average), RSS (max) and RSS per host, health-poll round trip
#   p50/p99 and late or failed polls (the manager's own once-a-minute report), hosts API p95 for a
#   filtered page, time from killing an agent to the manager showing it unreachable, and the
#   discovery of a /22. A baseline (the same manager with no host) is measured in the same run.
# Usage: scripts/bench-fleet.sh [--window SECS] [--policy per_poll|kept] [--no-build] [SIZES...]
#        (default: 180 s, per_poll; 1000 5000 10000). `kept`: the manager keeps one connection per
#        host between polls and the simulated agents keep idle connections for 120 s.
# Traffic stays on loopback. Results are printed as a Markdown table for docs/benchmarks.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
window=180
policy=per_poll
no_build=
while [ $# -gt 0 ]; do
  case "$1" in
    --window) window="$2"; shift 2 ;;
    --policy) policy="$2"; shift 2 ;;
    --no-build) no_build=1; shift ;;
    *) break ;;
  esac
done
case "$policy" in per_poll) keep_alive=5 ;; kept) keep_alive=120 ;; *) die "--policy is per_poll or kept" ;; esac
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(1000 5000 10000)
source "$ROOT/scripts/bench-common.sh"

step "Baseline: the manager with no host, 60 s"
start_manager
read -r base_cpu base_rss < <(measure 60)
stop_all
rows=("| 0 (baseline) | $base_cpu | $((base_rss / 1024)) | – | – | – | – | – | – |")

for n in "${sizes[@]}"; do
  step "$n simulated hosts"
  # Polls are a day apart while the hosts enroll (the simulator does not serve them yet, so
  # earlier polls would only fail); the 60 s interval is set through Settings once it does.
  start_manager 86400
  # The warm-up starts once every simulated agent listens, and lasts until every host was seen
  # healthy (at most five minutes), plus one health interval of steady state.
  start_sim "$n"
  api PUT /api/v1/settings/polling '{"health_interval_secs":60,"inventory_interval_secs":1800}' >/dev/null
  info "simulator serving, health interval set to 60 s; warming up until every host is healthy, then 60 s"
  started_wait=$SECONDS
  while [ $((SECONDS - started_wait)) -lt 300 ]; do
    healthy=$(api GET "/api/v1/hosts?status=healthy&per_page=1" | jq .total)
    [ "$healthy" -ge "$n" ] && break
    sleep 5
  done
  recovered=$((SECONDS - started_wait))
  sleep 60
  unknown=$(( n - $(api GET "/api/v1/hosts?status=healthy&per_page=1" | jq .total) ))
  info "every host healthy $recovered s after the simulator served; not healthy after the warm-up: $unknown"
  info "measuring for $window s"
  measure "$window" > "$SIM/measure" &
  mpid=$!
  : > "$SIM/api.ms"
  for i in $(seq 1 200); do
    page=$(( (i % 10) + 1 ))
    curl -sS -o /dev/null -w '%{time_total}\n' --cacert "$DATA/web-ca/ca.crt" -H "authorization: Bearer $bearer" \
      "https://$listen/api/v1/hosts?status=healthy&sort=name&page=$page&per_page=50" >> "$SIM/api.ms"
  done
  wait $mpid
  read -r cpu rss < "$SIM/measure"
  threads=$(awk '/^Threads/ {print $2}' "/proc/$manager/status")
  info "manager threads at the end of the window: $threads"
  api_p95=$(awk '{printf "%.1f\n", $1 * 1000}' "$SIM/api.ms" | percentile 95)
  report=$(grep 'health polls in the last minute' "$DATA/manager.log" | tail -n 1 || true)
  p99=$(grep -o 'p99_ms=[0-9]*' <<<"$report" | cut -d= -f2 || true)
  late=$(grep 'health polls in the last minute' "$DATA/manager.log" | tail -n 3 | grep -o 'late=[0-9]*' | cut -d= -f2 | awk '{s += $1} END {print s + 0}' || true)
  failed=$(grep 'health polls in the last minute' "$DATA/manager.log" | tail -n 3 | grep -o 'failed=[0-9]*' | cut -d= -f2 | awk '{s += $1} END {print s + 0}' || true)
  polls=$(grep 'health polls in the last minute' "$DATA/manager.log" | tail -n 3 | grep -o 'polls=[0-9]*' | cut -d= -f2 | awk '{s += $1} END {print s + 0}' || true)

  # A down agent: killed, then timed until the live event stream (as a browser opens it, with a
  # single-use ticket) carries its "unreachable".
  victim=127.20.0.10
  vid=$(api GET "/api/v1/hosts?q=$victim&per_page=5" | jq -r --arg ip "$victim" '.hosts[] | select(.ip_address == $ip) | .id')
  ticket=$(api POST /api/v1/events/ticket | jq -r .ticket)
  mkfifo "$SIM/watch"
  python3 "$ROOT/scripts/ws-watch.py" "$listen" "$DATA/web-ca/ca.crt" "$ticket" "$vid" unreachable 300 > "$SIM/watch" &
  exec 4<"$SIM/watch"
  read -r ready <&4
  [ "$ready" = ready ] || die "the event stream did not open"
  echo "kill $victim" >&3
  t0=$(date +%s.%N)
  read -r t1 <&4
  exec 4<&-
  down=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
  echo "revive $victim" >&3

  # Discovery of a /22 holding the first 1,022 agents.
  run=$(api POST /api/v1/discovery "{\"cidr\":\"127.20.0.0/22\",\"port\":$agent_port}" | jq .id)
  while [ "$(api GET "/api/v1/discovery/$run" | jq -r .state)" = running ]; do sleep 0.1; done
  disc=$(api GET "/api/v1/discovery/$run" | jq -r '"\(.elapsed_ms) ms, \(.found | length) found"')

  rows+=("| $n | $cpu | $((rss / 1024)) | $(( (rss - base_rss) / n )) | $polls polls, p99 $p99 ms | $late late, $failed failed, $unknown not healthy | $api_p95 | $down | $disc |")
  exec 3>&-
  stop_all
done

cat <<MD

Machine: $machine. Policy: $policy. Window: $window s per size, health polls every 60 s, after a warm-up lasting until every host is healthy plus 60 s.

| hosts | manager CPU (cores, mean) | RSS max (MiB) | RSS per host (KiB, above baseline) | health polls (last 3 min) | late / failed / not healthy after warm-up | hosts API p95 (ms) | kill → unreachable (s) | discovery of a /22 |
|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")
MD
