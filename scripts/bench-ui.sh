#!/usr/bin/env bash
# The web UI's first paint and time to interactive for the Hosts page (issue: the web UI as people
# use it). A fresh patch-manager (release build, embedded SQLite, TLS on loopback) with HOSTS
# simulated agents enrolled and polled; headless Chromium, signed in as an Admin, loads /hosts
# LOADS times per case and scripts/bench-ui.py reads the browser's own timings of each load:
# HTML received, first contentful paint, hydration done (the `lpm-hydrated` mark). Cases, in the
# same run, one manager each (a manager reads its bundle's manifest at start): the release bundle
# (profile wasm-release, wasm-opt, precompressed, as scripts/run.sh serves it) and, as the
# baseline, the dev bundle that scripts/test.sh builds; each cold (HTTP cache cleared before
# every load) and warm. Medians are printed as a Markdown table for docs/benchmarks.md, with the machine.
# The rows are checked in the server's HTML too (data on first paint, no "Loading…").
# Usage: scripts/bench-ui.sh [--hosts N] [--loads N] [--no-build]   (defaults 200 and 15;
#        --no-build: the release binaries as they are, the bundles are always brought up to date)
# Only loopback traffic.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
hosts=200
loads=15
no_build=
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts="$2"; shift 2 ;;
    --loads) loads="$2"; shift 2 ;;
    --no-build) no_build=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
ensure_apt chromium chromium-driver
source "$ROOT/scripts/bench-common.sh"

W=$(mktemp -d /tmp/lpm-bench-ui.XXXXXX)
on_exit_ui() {
  local rc=$?
  [ -n "${driver:-}" ] && kill "$driver" 2>/dev/null
  rm -rf "$W"
  (exit "$rc"); on_exit
}
trap on_exit_ui EXIT
ensure_wasm_target
ensure_wasm_bindgen
# The bundles where scripts/run.sh (release) and scripts/test.sh (dev) keep them: reused when
# the UI's code has not changed.
declare -A site=([release]="$CARGO_TARGET_DIR/site-wasm-release" [dev]="$CARGO_TARGET_DIR/site")
build_wasm wasm-release "${site[release]}"
build_wasm dev "${site[dev]}"

dport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chromedriver --port="$dport" >"$W/chromedriver.log" 2>&1 &
driver=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$dport/status" >/dev/null 2>&1 && break; sleep 0.1; done

results="$W/results.jsonl"
ssr_rows=""
for bundle in dev release; do
  # A manager reads its bundle's manifest when it starts: one manager per bundle.
  SITE_ROOT="${site[$bundle]}"
  step "A manager with $hosts simulated hosts, serving the $bundle bundle"
  start_manager 60
  start_sim "$hosts"
  for _ in $(seq 1 120); do
    healthy=$(api GET "/api/v1/hosts?status=healthy&per_page=1" | jq .total)
    [ "$healthy" -ge "$hosts" ] && break
    sleep 2
  done
  info "$healthy of $hosts hosts healthy"

  # Data on first paint: the HTML the server sends for /hosts already holds the first page of rows.
  jar="$W/cookies"
  curl -fsS --cacert "$DATA/web-ca/ca.crt" -c "$jar" -H 'content-type: application/json' "https://$listen/api/v1/auth/login" \
    -d '{"username":"bench","password":"Tangerine-Orbit-2026-x","client":"browser"}' >/dev/null
  rows=$(curl -fsS --compressed --cacert "$DATA/web-ca/ca.crt" -b "$jar" -H 'accept: text/html' "https://$listen/hosts" \
    | python3 -c 'import re,sys; h=sys.stdin.read(); t=re.search(r"<table[^>]*id=\"hosts\".*?</table>", h, re.S); print(len(re.findall(r"<tr", re.search(r"<tbody.*?</tbody>", t.group(0), re.S).group(0))) if t else 0)')
  info "host rows in the server's HTML for /hosts: $rows"
  [ "$rows" -gt 0 ] || die "the server-rendered /hosts carries no host rows"
  ssr_rows="$ssr_rows $bundle: $rows"

  spki=$(openssl x509 -in "$DATA/pki/web.crt" -pubkey -noout | openssl pkey -pubin -outform der \
    | openssl dgst -sha256 -binary | base64)
  for mode in cold warm; do
    step "/hosts, $bundle bundle, $mode cache: $loads loads"
    python3 "$ROOT/scripts/bench-ui.py" "$dport" "https://$listen" /hosts bench Tangerine-Orbit-2026-x \
      "$loads" "$mode" "$bundle" "$spki" >> "$results"
  done
  exec 3>&-
  stop_all
done

wasm_sizes() { # bundle → the sizes of its WebAssembly, from the files the build wrote
  local pkg="${site[$1]}/pkg" dir
  dir=$(grep -o '"dir":"[^"]*"' "$pkg/bundle.json" | cut -d'"' -f4)
  bundle_sizes "$pkg/$dir"
}

step "Results (medians of $loads loads; milliseconds from the start of navigation)"
echo "Machine: $machine; $(chromium --version 2>/dev/null | head -n1); $hosts hosts; $(date -u +%Y-%m-%d)"
echo "Host rows in the server's HTML:$ssr_rows"
echo
echo "| bundle | cache | HTML received | first contentful paint | interactive (hydrated) | wasm modules fetched | wasm as sent (KB) | wasm over the network (KB) | rows at hydration | \"Loading…\" seen |"
echo "|---|---|---|---|---|---|---|---|---|---|"
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for bundle in ("dev", "release"):
    for mode in ("cold", "warm"):
        r = [x for x in rows if x["label"] == bundle and x["mode"] == mode]
        if not r:
            continue
        med = lambda k: statistics.median(x[k] for x in r if x[k] is not None)
        seen = sum(1 for x in r if x["loading_seen"])
        print(f"| {bundle} | {mode} | {med('html'):.0f} | {med('fcp'):.0f} | {med('hydrated'):.0f} "
              f"| {med('wasm_modules'):.0f} | {med('wasm_bytes') / 1000:.0f} | {med('wasm_transfer') / 1000:.0f} "
              f"| {min(x['rows'] for x in r)} | {seen} of {len(r)} |")
PY
echo
for b in dev release; do echo "$b bundle wasm (precompressed files):"; wasm_sizes "$b"; done
echo
echo "What each page load fetches (release bundle: the main module and the page's modules):"
python3 "$ROOT/scripts/bundle-pages.py" \
  "${site[release]}/pkg/$(grep -o '"dir":"[^"]*"' "${site[release]}/pkg/bundle.json" | cut -d'"' -f4)"
