#!/usr/bin/env bash
# Builds everything and starts patch-manager on its embedded SQLite database in ./data, with a
# demo agent on this machine enrolled through the real one-time-token path. The demo agent manages
# an isolated apt root over the project's test packages, never this machine's own packages.
# With --demo-fleet N, N simulated agents join too (patch-fleet-sim: one process, each agent on its
# own loopback address 127.20.x.y with its own certificate, the real agent TLS stack over a
# simulated package manager).
# Usage: scripts/run.sh [--release] [--demo-fleet N]   (--release: optimised binaries; the web
#        bundle is always the release one)
#        (LPM_LISTEN=127.0.0.1:8080, LPM_AGENT_PORT=12443, LPM_UI_BUNDLE=release by default)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
profile=dev
demo_fleet=0
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release ;;
    --demo-fleet) shift; demo_fleet="${1:-}"
      [[ "$demo_fleet" =~ ^[0-9]+$ ]] && [ "$demo_fleet" -le 10000 ] || die "--demo-fleet takes a number of hosts from 0 to 10000" ;;
    *) die "unknown option $1 (use --release, --demo-fleet N)" ;;
  esac
  shift
done
listen="${LPM_LISTEN:-127.0.0.1:8080}"
agent_port="${LPM_AGENT_PORT:-12443}"
DATA="$ROOT/data"
DEMO="$DATA/demo-agent"

step "Prerequisites"
ensure_build_deps
ensure_apt dpkg-dev curl

# The browser always gets the size-optimised bundle (wasm-opt, precompressed, immutable names):
# built once, then reused until the UI's code changes. LPM_UI_BUNDLE=dev serves the dev bundle.
# Each bundle has its own site directory, so the tests' dev bundle never displaces it.
ui_profile=$([ "${LPM_UI_BUNDLE:-release}" = dev ] && echo dev || echo wasm-release)
ui_site="$CARGO_TARGET_DIR/site-$ui_profile"
build_wasm "$ui_profile" "$ui_site"

step "Building patch-manager and patch-agent ($profile profile)"
cargo build --workspace --bins --profile "$profile" --quiet
case "$profile" in dev) bin="$CARGO_TARGET_DIR/debug" ;; *) bin="$CARGO_TARGET_DIR/$profile" ;; esac

mkdir -p -m 700 "$DATA"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
manager_args=(--data-dir "$DATA" --listen "$listen" --set "server.site_root=$ui_site"
  --set "server.assets_dir=$ROOT/assets" --set log.format=text
  # The demo polls every minute (default 5), so the fleet's state shows soon after start.
  --set fleet.health_interval_secs=60)

step "Starting patch-manager (HTTPS with its own web CA)"
"$bin/patch-manager" "${manager_args[@]}" serve & pids+=($!)
for _ in $(seq 1 100); do
  [ -f "$DATA/web-ca/ca.crt" ] && curl -fsS --cacert "$DATA/web-ca/ca.crt" "https://$listen/status/health" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || die "patch-manager exited; see the log above"
  sleep 0.2
done

if [ ! -f "$DEMO/agent.toml" ]; then
  step "Enrolling a demo agent with a one-time token (isolated apt root, test packages)"
  mkdir -p -m 700 "$DEMO"
  bash "$ROOT/scripts/build-test-repo.sh" "$DEMO/repo" >/dev/null
  bash "$ROOT/scripts/test-apt-root.sh" "$DEMO/root" "$DEMO/repo" >/dev/null
  APT_CONFIG="$DEMO/root/apt.conf" apt-get -qq update
  APT_CONFIG="$DEMO/root/apt.conf" apt-get -qq -y install lpm-test-hello=1.0-1 lpm-test-secure=1.0-1 >/dev/null
  cat > "$DEMO/agent.toml" <<TOML
[server]
listen = "127.0.0.1:$agent_port"
[tls]
cert = "$DEMO/tls/agent.crt"
key = "$DEMO/tls/agent.key"
client_ca = "$DEMO/tls/ca.crt"
[jobs]
state_dir = "$DEMO/state"
[backend]
kind = "apt"
apt_config = "$DEMO/root/apt.conf"
[audit]
path = "$DEMO/audit.jsonl"
TOML
  token=$("$bin/patch-manager" "${manager_args[@]}" enrollment-token 2>/dev/null)
  "$bin/patch-agent" --config "$DEMO/agent.toml" enroll --manager "https://$listen" --token-file - <<<"$token" \
    --hostname demo-agent-1.local --address 127.0.0.1
fi

step "Starting the demo agent on 127.0.0.1:$agent_port"
"$bin/patch-agent" --config "$DEMO/agent.toml" serve & pids+=($!)

fleet_note="."
if [ "$demo_fleet" -gt 0 ]; then
  SIM="$DATA/demo-fleet"
  have=$({ find "$SIM/agents" -name agent.toml 2>/dev/null || true; } | wc -l)
  if [ "$have" -lt "$demo_fleet" ]; then
    step "Enrolling $((demo_fleet - have)) simulated agents (127.20.0.1 onwards, one-time tokens)"
    mkdir -p -m 700 "$SIM"
    "$bin/patch-manager" "${manager_args[@]}" enrollment-token --count $((demo_fleet - have)) 2>/dev/null > "$SIM/tokens"
    "$bin/patch-fleet-sim" --dir "$SIM" enroll --manager "https://$listen" --tokens "$SIM/tokens" --port "$agent_port"
    rm -f "$SIM/tokens"
  fi
  step "Starting the simulated fleet"
  "$bin/patch-fleet-sim" --dir "$SIM" run </dev/null & pids+=($!)
  fleet_note=",
               and $(find "$SIM/agents" -name agent.toml | wc -l) simulated agents (sim-127-20-*.fleet.test; packages and
               updates are made up; nothing is installed anywhere)."
fi

fingerprint=$(openssl x509 -in "$DATA/web-ca/ca.crt" -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2)
# Browsers treat the name "localhost" as the manager's WebAuthn domain; an IP address cannot
# carry security keys or passkeys.
url="https://${listen/127.0.0.1/localhost}/"
if [ -f "$DATA/setup-token" ]; then
  accounts="    First run: open $url in a browser; it leads you to the setup page. Paste
               this one-time setup token there to create the first administrator:
                 $(cat "$DATA/setup-token")
               (also in $DATA/setup-token until used). There is no default password."
else
  accounts="    Sign in:   with the administrator created at first run (Users page: more accounts,
               MFA requirement; Account page: your authenticator app)."
fi
cat <<MSG

    patch-manager is running.
    URL:       $url
    Health:    https://$listen/status/health
    Database:  $DATA/patch-manager.db (embedded SQLite)
    TLS:       certificate from the manager's own web CA. Trust $DATA/web-ca/ca.crt in your
               browser (SHA-256 $fingerprint), or accept the warning for this local demo. It
               signs only the web UI's certificate; agents' come from the fleet CA.
$accounts
    Fleet:     one demo agent (demo-agent-1.local), enrolled with a one-time token$fleet_note
               More hosts: Hosts → "Add hosts" (or: patch-manager --data-dir $DATA
               enrollment-token)
    Stop with Ctrl-C.
MSG
wait "${pids[0]}"
