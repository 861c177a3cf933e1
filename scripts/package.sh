#!/usr/bin/env bash
# Builds the Debian packages patch-agent and patch-manager (cargo-deb) from release binaries and
# the release web bundle; the manager's package carries the agent's, which it serves for the
# one-line install of "Add a host".
# Usage: scripts/package.sh [--deb-version V] [--out DIR]
#        (default DIR: $CARGO_TARGET_DIR/debian; prints the two paths last)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
version_args=()
out="$CARGO_TARGET_DIR/debian"
while [ $# -gt 0 ]; do
  case "$1" in
    --deb-version) shift; version_args=(--deb-version "${1:?--deb-version takes a version}") ;;
    --out) shift; out="${1:?--out takes a directory}" ;;
    *) die "unknown option $1 (use --deb-version V, --out DIR)" ;;
  esac
  shift
done

step "Prerequisites for packaging"
ensure_build_deps
ensure_apt dpkg-dev
ensure_cargo_deb

build_wasm wasm-release "$CARGO_TARGET_DIR/site-wasm-release"
step "Building patch-manager and patch-agent (release profile)"
cargo build --release -p app -p agent --bins --quiet
# cargo-deb maps target/release/ to the real target directory; the bundle joins the binaries there.
rm -rf "$CARGO_TARGET_DIR/release/site"
mkdir -p "$CARGO_TARGET_DIR/release/site"
cp -a "$CARGO_TARGET_DIR/site-wasm-release/pkg" "$CARGO_TARGET_DIR/release/site/pkg"

mkdir -p "$out"
step "Packaging patch-agent"
agent_deb=$(cargo deb -p agent --no-build --quiet "${version_args[@]}" --output "$out" | tail -n1)
# The manager's package serves this one (server.agent_package).
cp "$agent_deb" "$CARGO_TARGET_DIR/release/patch-agent.deb"
step "Packaging patch-manager"
manager_deb=$(cargo deb -p app --no-build --quiet "${version_args[@]}" --output "$out" | tail -n1)
info "$agent_deb"
info "$manager_deb"
