# Shared by scripts/*.sh: locations, prerequisite checks and installs. Source it, don't run it.
# Everything it installs is printed before it happens.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Build artefacts and tools live outside the clone so a fresh clone (CI) reuses them.
LPM_CACHE="${LPM_CACHE:-$HOME/.cache/linux-patch-manager}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LPM_CACHE/target}"
# One-shot builds gain nothing from incremental state; it grew the cache by tens of GB.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export PATH="$LPM_CACHE/tools/bin:$HOME/.cargo/bin:$PATH"
SITE_ROOT="$CARGO_TARGET_DIR/site"
WASM_TARGET=wasm32-unknown-unknown

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
# ensure_apt PKG...: installs the Debian packages that are missing.
ensure_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing Debian packages ${missing[*]} and no apt-get"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  info "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then
    $sudo apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_wasm_target() {
  if ! rustup target list --installed 2>/dev/null | grep -qx "$WASM_TARGET"; then
    info "installing Rust target $WASM_TARGET (rustup)"
    rustup target add "$WASM_TARGET"
  fi
}

# wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate in Cargo.lock.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

ensure_wasm_bindgen() {
  local want have=""
  want="$(wasm_bindgen_version)"
  [ -n "$want" ] || die "wasm-bindgen not found in Cargo.lock"
  if command -v wasm-bindgen >/dev/null; then have="$(wasm-bindgen --version | awk '{print $2}')"; fi
  if [ "$have" != "$want" ]; then
    info "installing wasm-bindgen-cli $want into $LPM_CACHE/tools (cargo install, a few minutes once)"
    # Not --locked: the CLI's lock file names a webpki-roots release the registry no longer serves.
    cargo install wasm-bindgen-cli --version "$want" --root "$LPM_CACHE/tools" --quiet
  fi
}

ensure_build_deps() {
  # pq-sys builds a static libpq and needs OpenSSL headers and pkg-config.
  ensure_apt pkg-config libssl-dev brotli
  ensure_wasm_target
  ensure_wasm_bindgen
}

# wasm-opt from binaryen's npm package (the version scripts/wasm-opt/package-lock.json pins),
# installed once into the cache. Sets WASM_OPT.
ensure_wasm_opt() {
  local dir="$LPM_CACHE/tools/binaryen"
  WASM_OPT="$dir/node_modules/.bin/wasm-opt"
  if [ -x "$WASM_OPT" ] && cmp -s "$ROOT/scripts/wasm-opt/package-lock.json" "$dir/package-lock.json"; then
    return 0
  fi
  command -v npm >/dev/null || ensure_apt nodejs npm
  info "installing wasm-opt (binaryen, npm registry) into $dir"
  mkdir -p "$dir"
  cp "$ROOT/scripts/wasm-opt/package.json" "$ROOT/scripts/wasm-opt/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# build_wasm PROFILE [SITE]: builds the hydrate bundle into SITE/pkg (default $SITE_ROOT; profile
# dev or wasm-release) as the manager serves it: files named by their content's hash
# (patch_manager_ui.<hash>.js and <…>_bg.wasm), precompressed beside them (release: brotli and
# gzip -9 after wasm-opt -Oz; dev: gzip only), listed in SITE/pkg/bundle.json. When the
# compiler's .wasm is the one the current bundle was made from, nothing is redone.
build_wasm() {
  local profile="${1:-dev}" site="${2:-$SITE_ROOT}" dir src source pkg stage name f encodings
  step "Building the web UI to WebAssembly ($profile profile)"
  cargo rustc -p frontend-leptos --lib --crate-type cdylib --target "$WASM_TARGET" \
    --no-default-features --features hydrate --profile "$profile" --quiet
  case "$profile" in dev) dir=debug ;; *) dir="$profile" ;; esac
  src="$CARGO_TARGET_DIR/$WASM_TARGET/$dir/frontend_leptos.wasm"
  source=$(sha256sum "$src" | cut -d' ' -f1)
  pkg="$site/pkg"
  mkdir -p "$pkg"
  if grep -qs "\"source\":\"$source\",\"profile\":\"$profile\"" "$pkg/bundle.json"; then
    info "bundle unchanged: $(grep -o '"name":"[^"]*"' "$pkg/bundle.json" | cut -d'"' -f4) in $pkg"
    return 0
  fi
  stage=$(mktemp -d "$site/.stage.XXXXXX")
  wasm-bindgen --target web --no-typescript --out-dir "$stage" --out-name patch_manager_ui "$src"
  if [ "$profile" != dev ]; then
    ensure_wasm_opt
    # The features rustc enables for wasm32-unknown-unknown today, so wasm-opt accepts them.
    "$WASM_OPT" -Oz --strip-debug --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-reference-types --enable-multivalue --enable-mutable-globals \
      "$stage/patch_manager_ui_bg.wasm" -o "$stage/opt.wasm"
    mv "$stage/opt.wasm" "$stage/patch_manager_ui_bg.wasm"
  fi
  name="patch_manager_ui.$(cat "$stage/patch_manager_ui.js" "$stage/patch_manager_ui_bg.wasm" | sha256sum | cut -c1-16)"
  mv "$stage/patch_manager_ui.js" "$stage/$name.js"
  mv "$stage/patch_manager_ui_bg.wasm" "$stage/${name}_bg.wasm"
  for f in "$name.js" "${name}_bg.wasm"; do
    if [ "$profile" = dev ]; then
      gzip -6 -n -k "$stage/$f"
    else
      gzip -9 -n -k "$stage/$f"
      brotli -q 11 -k -o "$stage/$f.br" "$stage/$f"
    fi
  done
  if [ "$profile" = dev ]; then encodings='["gzip"]'; else encodings='["br","gzip"]'; fi
  printf '{"source":"%s","profile":"%s","name":"%s","files":["%s.js","%s_bg.wasm"],"encodings":%s}\n' \
    "$source" "$profile" "$name" "$name" "$name" "$encodings" > "$stage/bundle.json"
  # The previous bundle goes: a manager reads bundle.json when it starts (restart it).
  rm -f "$pkg"/patch_manager_ui* "$pkg/bundle.json"
  mv "$stage"/* "$pkg/"
  rmdir "$stage"
  info "bundle $name ($profile) in $pkg: wasm $(( $(stat -c %s "$pkg/${name}_bg.wasm") / 1000 )) KB raw, $(( $(stat -c %s "$pkg/${name}_bg.wasm.gz") / 1000 )) KB gzip$([ -f "$pkg/${name}_bg.wasm.br" ] && echo ", $(( $(stat -c %s "$pkg/${name}_bg.wasm.br") / 1000 )) KB brotli")"
}

# cargo-deb (crates.io, at the version checked here), installed once into the cache.
CARGO_DEB_VERSION=3.8.0
ensure_cargo_deb() {
  if command -v cargo-deb >/dev/null && [ "$(cargo-deb --version 2>/dev/null | awk '{print $2}')" = "$CARGO_DEB_VERSION" ]; then
    return 0
  fi
  info "installing cargo-deb $CARGO_DEB_VERSION into $LPM_CACHE/tools (cargo install, a few minutes once)"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --root "$LPM_CACHE/tools" --quiet
}

# ensure_postgres: the local server on 127.0.0.1:5432 the tests use; started if stopped.
ensure_postgres() {
  ensure_apt postgresql-client
  if pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    ensure_apt postgresql
  fi
  info "starting PostgreSQL"
  local v
  v="$(ls /etc/postgresql | sort -V | tail -n1)"
  pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 1; done
  die "PostgreSQL is not answering on 127.0.0.1:5432"
}
