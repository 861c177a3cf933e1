#!/usr/bin/env bash
# The deployment benchmark (issue: patch deployment). For each fleet size: a fresh release
# patch-manager (embedded SQLite) and that many simulated agents (patch-fleet-sim: the real agent
# stack over a simulated package manager whose jobs change its simulated state). Once every host
# is healthy, one job "apply now" on every host (all updates, one wave, no concurrency limit) is
# created through the API, and measured: the time from the request until every host's agent has
# accepted its job (its row reached queued or later on the live event stream, opened as a browser
# does), until every host's row has ended, and the manager's CPU (from /proc) over the fan-out.
# Usage: scripts/bench-deploy.sh [--no-build] [SIZES...]   (default: 1000)
# Traffic stays on loopback. Results are printed as a Markdown table for docs/benchmarks.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
no_build=
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) no_build=1; shift ;;
    *) break ;;
  esac
done
sizes=("$@"); [ ${#sizes[@]} -eq 0 ] && sizes=(1000)
source "$ROOT/scripts/bench-common.sh"

rows=()
for n in "${sizes[@]}"; do
  step "$n simulated hosts: apply now"
  start_manager 60
  start_sim "$n"
  started_wait=$SECONDS
  while [ $((SECONDS - started_wait)) -lt 300 ]; do
    [ "$(api GET "/api/v1/hosts?status=healthy&per_page=1" | jq .total)" -ge "$n" ] && break
    sleep 2
  done
  ids=$(for page in $(seq 1 $(( (n + 499) / 500 ))); do api GET "/api/v1/hosts?per_page=500&page=$page"; done \
    | jq -cs 'map(.hosts[].id)')
  [ "$(jq length <<<"$ids")" -eq "$n" ] || die "expected $n hosts"
  body=$(jq -cn --argjson hosts "$ids" '{hosts: $hosts, selection: "all", name: "bench"}')
  mkfifo "$SIM/accepted" "$SIM/ended"
  ticket=$(api POST /api/v1/events/ticket | jq -r .ticket)
  python3 "$ROOT/scripts/ws-watch.py" "$listen" "$DATA/web-ca/ca.crt" "$ticket" "jobs:$n" \
    queued,running,succeeded,partial,failed 600 > "$SIM/accepted" &
  exec 4<"$SIM/accepted"
  ticket=$(api POST /api/v1/events/ticket | jq -r .ticket)
  python3 "$ROOT/scripts/ws-watch.py" "$listen" "$DATA/web-ca/ca.crt" "$ticket" "jobs:$n" \
    succeeded,partial,failed 600 > "$SIM/ended" &
  exec 5<"$SIM/ended"
  read -r ready <&4; [ "$ready" = ready ] || die "the event stream did not open"
  read -r ready <&5; [ "$ready" = ready ] || die "the event stream did not open"
  c0=$(cpu_ticks "$manager")
  t0=$(date +%s.%N)
  job=$(api POST /api/v1/jobs "$body" | jq .job.id)
  t_created=$(date +%s.%N)
  read -r t_accepted <&4
  c1=$(cpu_ticks "$manager")
  read -r t_ended <&5
  exec 4<&- 5<&-
  state=$(api GET "/api/v1/jobs/$job" | jq -r '"\(.job.state): \(.job.counts.succeeded) succeeded, \(.job.counts.failed) failed"')
  rows+=("| $n | $(awk -v a="$t0" -v b="$t_created" 'BEGIN {printf "%.0f", (b - a) * 1000}') | $(awk -v a="$t0" -v b="$t_accepted" 'BEGIN {printf "%.2f", b - a}') | $(awk -v d=$((c1 - c0)) -v t="$tck" -v a="$t0" -v b="$t_accepted" 'BEGIN {printf "%.2f", d / t / (b - a)}') | $(awk -v a="$t0" -v b="$t_ended" 'BEGIN {printf "%.2f", b - a}') | $state |")
  exec 3>&-
  stop_all
done

cat <<MD

Machine: $machine. One job "apply now" on every host: all updates, one wave, no concurrency limit.

| hosts | job created (ms) | every agent job accepted (s) | manager CPU over that (cores) | every host ended (s) | job |
|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")
MD
