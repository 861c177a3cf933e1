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

# The hash of lpm-wasm-split's sources (its vendored, patched splitter included).
wasm_split_stamp() {
  (cd "$ROOT/scripts/wasm-split" && find . -type f -not -path './target/*' | LC_ALL=C sort \
    | xargs cat | sha256sum | cut -d' ' -f1)
}

# lpm-wasm-split (scripts/wasm-split: the splitter leptos' lazy routes are made for, from
# crates.io, with one patch), built once into the cache and again when its sources change.
ensure_wasm_split() {
  local dir="$ROOT/scripts/wasm-split" stamp want
  stamp="$LPM_CACHE/tools/lpm-wasm-split.stamp"
  want=$(wasm_split_stamp)
  if command -v lpm-wasm-split >/dev/null && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  info "building lpm-wasm-split (scripts/wasm-split) into $LPM_CACHE/tools (cargo install, once)"
  CARGO_TARGET_DIR="$LPM_CACHE/tools-target" cargo install --path "$dir" --locked --force \
    --root "$LPM_CACHE/tools" --quiet
  echo "$want" > "$stamp"
}

# build_wasm PROFILE [SITE]: builds the hydrate bundle into SITE/pkg (default $SITE_ROOT; profile
# dev or wasm-release) as the manager serves it. The compiler's module is split at the lazy
# routes (lpm-wasm-split: a main module, one chunk per page and shared chunks, a loader and
# __wasm_split_manifest.json), the main module goes through wasm-bindgen, and (release) every
# module through wasm-opt -Oz. All of it lands in SITE/pkg/<hash of the files>/ (the loader finds
# the chunks beside itself, so the directory carries the hash, not the names), each file
# precompressed beside it (release: brotli and gzip -9; dev: gzip), and SITE/pkg/bundle.json
# names the directory and its files. When the compiler's .wasm is the one the current bundle was
# made from, nothing is redone.
build_wasm() {
  local profile="${1:-dev}" site="${2:-$SITE_ROOT}" dir src source pkg stage out hash f encodings files
  step "Building the web UI to WebAssembly ($profile profile)"
  # --emit-relocs: the splitter needs the linker's relocations to move code between modules.
  cargo rustc -p frontend-leptos --lib --crate-type cdylib --target "$WASM_TARGET" \
    --no-default-features --features hydrate --profile "$profile" --quiet -- -C link-arg=--emit-relocs
  case "$profile" in dev) dir=debug ;; *) dir="$profile" ;; esac
  src="$CARGO_TARGET_DIR/$WASM_TARGET/$dir/frontend_leptos.wasm"
  # The bundle depends on the compiler's module and on the splitter.
  source=$( (sha256sum "$src"; wasm_split_stamp) | sha256sum | cut -d' ' -f1)
  pkg="$site/pkg"
  mkdir -p "$pkg"
  if grep -qs "\"source\":\"$source\",\"profile\":\"$profile\",\"dir\"" "$pkg/bundle.json"; then
    info "bundle unchanged: $(grep -o '"dir":"[^"]*"' "$pkg/bundle.json" | cut -d'"' -f4) in $pkg"
    return 0
  fi
  ensure_wasm_split
  stage=$(mktemp -d "$site/.stage.XXXXXX")
  out="$stage/out"
  lpm-wasm-split "$src" "$stage/split" "./patch_manager_ui.js" >/dev/null
  # --keep-lld-exports: the chunks import the main module's table, memory and functions.
  wasm-bindgen --target web --no-typescript --keep-lld-exports --no-demangle \
    --out-dir "$out" --out-name patch_manager_ui "$stage/split/main.wasm"
  rm "$stage/split/main.wasm"
  mv "$stage/split"/* "$out/"
  if [ "$profile" != dev ]; then
    ensure_wasm_opt
    # One wasm-opt per module, as many at once as there are cores. The --enable flags: the
    # features rustc enables for wasm32-unknown-unknown today, so wasm-opt accepts them.
    printf '%s\0' "$out"/*.wasm | xargs -0 -n 1 -P "$(nproc)" sh -c '
      "$0" -Oz --strip-debug --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-reference-types --enable-multivalue --enable-mutable-globals \
        "$1" -o "$1.opt" 2>"$1.log" || { cat "$1.log" >&2; exit 1; }
      rm "$1.log"; mv "$1.opt" "$1"' "$WASM_OPT"
  fi
  hash=$(cd "$out" && find . -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
  files=""
  for f in $(cd "$out" && ls *.js *.wasm | LC_ALL=C sort); do
    if [ "$profile" = dev ]; then
      gzip -6 -n -k "$out/$f"
    else
      gzip -9 -n -k "$out/$f"
      brotli -q 11 -k -o "$out/$f.br" "$out/$f"
    fi
    files="$files${files:+,}\"$f\""
  done
  if [ "$profile" = dev ]; then encodings='["gzip"]'; else encodings='["br","gzip"]'; fi
  # The previous bundle goes: a manager reads bundle.json when it starts (restart it).
  rm -rf "$pkg"/patch_manager_ui* "$pkg/bundle.json"
  find "$pkg" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]\{16\}' -exec rm -rf {} +
  mv "$out" "$pkg/$hash"
  rm -rf "$stage"
  printf '{"source":"%s","profile":"%s","dir":"%s","name":"patch_manager_ui","files":[%s],"encodings":%s}\n' \
    "$source" "$profile" "$hash" "$files" "$encodings" > "$pkg/bundle.json"
  bundle_sizes "$pkg/$hash"
}

# bundle_sizes DIR: the WebAssembly of a built bundle, raw and compressed, the main module apart.
bundle_sizes() {
  local d="$1" f n=0 raw=0 gz=0 br=0
  for f in "$d"/*.wasm; do
    n=$((n + 1)); raw=$((raw + $(stat -c %s "$f"))); gz=$((gz + $(stat -c %s "$f.gz")))
    [ -f "$f.br" ] && br=$((br + $(stat -c %s "$f.br")))
  done
  f="$d/patch_manager_ui_bg.wasm"
  info "bundle $(basename "$d") in $(dirname "$d"): main module $(( $(stat -c %s "$f") / 1000 )) KB raw, $(( $(stat -c %s "$f.gz") / 1000 )) KB gzip$([ -f "$f.br" ] && echo ", $(( $(stat -c %s "$f.br") / 1000 )) KB brotli"); all $n modules $((raw / 1000)) KB raw, $((gz / 1000)) KB gzip$([ "$br" -gt 0 ] && echo ", $((br / 1000)) KB brotli")"
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
