#!/usr/bin/env bash
# Builds everything and starts patch-manager on its embedded SQLite database in ./data, with a
# demo agent on this machine enrolled through the real one-time-token path. The demo agent manages
# an isolated apt root over the project's test packages, never this machine's own packages.
# Usage: scripts/run.sh [--release]     (LPM_LISTEN=127.0.0.1:8080, LPM_AGENT_PORT=12443 by default)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
profile=dev
[ "${1:-}" = "--release" ] && profile=release
listen="${LPM_LISTEN:-127.0.0.1:8080}"
agent_port="${LPM_AGENT_PORT:-12443}"
DATA="$ROOT/data"
DEMO="$DATA/demo-agent"

step "Prerequisites"
ensure_build_deps
ensure_apt dpkg-dev curl

if [ "$profile" = release ]; then build_wasm wasm-release; else build_wasm dev; fi

step "Building patch-manager and patch-agent ($profile profile)"
cargo build --workspace --bins --profile "$profile" --quiet
case "$profile" in dev) bin="$CARGO_TARGET_DIR/debug" ;; *) bin="$CARGO_TARGET_DIR/$profile" ;; esac

mkdir -p -m 700 "$DATA"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
manager_args=(--data-dir "$DATA" --listen "$listen" --set "server.site_root=$SITE_ROOT"
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
    Fleet:     one demo agent (demo-agent-1.local), enrolled with a one-time token.
               More hosts: Certificates page, "Add a host" (or: patch-manager --data-dir $DATA
               enrollment-token)
    Stop with Ctrl-C.
MSG
wait "${pids[0]}"
