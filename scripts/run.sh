#!/usr/bin/env bash
# Builds everything and starts patch-manager on its embedded SQLite database in ./data.
# Usage: scripts/run.sh [--release]     (LPM_LISTEN=127.0.0.1:8080 by default)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
profile=dev
[ "${1:-}" = "--release" ] && profile=release
listen="${LPM_LISTEN:-127.0.0.1:8080}"

step "Prerequisites"
ensure_build_deps

if [ "$profile" = release ]; then build_wasm wasm-release; else build_wasm dev; fi

step "Building patch-manager and patch-agent ($profile profile)"
cargo build --workspace --bins --profile "$profile" --quiet
case "$profile" in dev) bin="$CARGO_TARGET_DIR/debug" ;; *) bin="$CARGO_TARGET_DIR/$profile" ;; esac

mkdir -p -m 700 "$ROOT/data"
step "Starting patch-manager"
cat <<MSG
    URL:       http://$listen/
    Health:    http://$listen/status/health
    Database:  $ROOT/data/patch-manager.db (embedded SQLite)
    Sign-in:   not yet required: accounts and sign-in are the next milestone; the overview page
               shows the installation's state. Stop with Ctrl-C.
MSG
exec "$bin/patch-manager" --listen "$listen" --data-dir "$ROOT/data" \
  --set "server.site_root=$SITE_ROOT" --set "server.assets_dir=$ROOT/assets" \
  --set log.format=text
