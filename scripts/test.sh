#!/usr/bin/env bash
# Runs every check and test of the project; installs what it needs first and says so.
# Usage: scripts/test.sh        (CI runs this through .ci/run)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
started=$(date +%s)

step "Prerequisites"
ensure_build_deps
ensure_apt chromium chromium-driver systemd dpkg-dev
info "package managers for the agent's backend contract suite (run in isolated roots only)"
# makepkg: repo-add sources its helper scripts from /usr/share/makepkg.
ensure_apt dnf rpm createrepo-c zypper pacman-package-manager makepkg libarchive-tools zstd
ensure_postgres
command -v node >/dev/null || ensure_apt nodejs npm
info "test OpenID provider: npm ci in scripts/oidc-provider (panva/oidc-provider, from the npm registry)"
(cd scripts/oidc-provider && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
command -v cargo-nextest >/dev/null || { info "installing cargo-nextest"; cargo install cargo-nextest --locked --quiet; }
info "rustc $(rustc --version | awk '{print $2}'), wasm-bindgen $(wasm-bindgen --version | awk '{print $2}'), $(chromium --version 2>/dev/null | head -n1)"
info "cargo target dir: $CARGO_TARGET_DIR"

step "Formatting (cargo fmt --check)"
cargo fmt --all --check

step "Lints, native (cargo clippy --workspace --all-targets)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "Lints, wasm32 hydrate build"
cargo clippy -p frontend-leptos -p shared --target "$WASM_TARGET" --no-default-features \
  --features frontend-leptos/hydrate --quiet -- -D warnings

build_wasm dev

step "Building the binaries (the process tests start patch-manager and patch-agent)"
cargo build --workspace --bins --quiet

step "Tests (SQLite and PostgreSQL, browser included)"
export LPM_SITE_ROOT="$SITE_ROOT"
cargo nextest run --workspace --run-ignored all --no-fail-fast --failure-output final

step "Debian packages in a Debian root (scripts/test-packages.sh)"
bash scripts/test-packages.sh

step "All checks passed in $(( $(date +%s) - started )) s"
