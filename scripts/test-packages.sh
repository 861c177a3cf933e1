#!/usr/bin/env bash
# The Debian packages, installed for real into debootstrapped Debian roots (chroot):
#  1. both packages install: files, modes, owners, the service user, conffiles, enabled units;
#     the units pass `systemd-analyze verify` with no output;
#  2. the packaged manager starts on its embedded database with no edits and says where the setup
#     token is; the one-line install that "Add a host" shows, run as given in a second root (the
#     new host), installs the agent from the manager, enrolls it and starts it, and the host turns
#     healthy in the manager: nothing copied by hand;
#  3. an upgrade keeps the data, the CA keys and local edits of the configuration; the manager
#     starts again on that data; remove keeps the data; purge deletes it.
# systemd does not run inside a chroot: the `systemctl enable --now` of the one-line install is
# served by a stand-in that starts the unit's own ExecStart line (printed below), and the units
# themselves are checked by `systemd-analyze verify`.
# Usage: scripts/test-packages.sh   (root; scripts/test.sh runs it)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
[ "$(id -u)" = 0 ] || die "needs root (chroot, dpkg into the test roots)"

step "Prerequisites for the package tests"
ensure_apt debootstrap curl zstd python3 systemd

WORK=$(mktemp -d /var/tmp/lpm-packages.XXXXXX)
pids=()
mounts=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  # Never delete through a mount that is still there.
  if mount | grep -q " $WORK/"; then
    echo "warning: mounts left under $WORK; not deleting it" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

ok() { info "ok: $*"; }
# The log of the program under test, shown when a check fails.
SHOW_LOG=""
fail() {
  if [ -n "$SHOW_LOG" ] && [ -f "$SHOW_LOG" ]; then
    echo "---- $SHOW_LOG (last 40 lines)" >&2
    tail -n 40 "$SHOW_LOG" >&2
  fi
  die "package test FAILED: $*"
}

version=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="app"))')
v1="$version-1"
v2="$version-2"
scripts/package.sh --deb-version "$v1" --out "$WORK/v1"
scripts/package.sh --deb-version "$v2" --out "$WORK/v2"

step "A Debian root (debootstrap --variant=minbase bookworm, cached as a tarball)"
BASE="$LPM_CACHE/debootstrap/bookworm-minbase-curl.tar.zst"
if [ ! -f "$BASE" ]; then
  mkdir -p "$(dirname "$BASE")"
  tmp=$(mktemp -d /var/tmp/lpm-debootstrap.XXXXXX)
  info "debootstrap from deb.debian.org (about a minute, once)"
  debootstrap --variant=minbase --include=curl,ca-certificates bookworm "$tmp" http://deb.debian.org/debian >/dev/null
  tar -C "$tmp" --zstd -cf "$BASE.partial" .
  mv "$BASE.partial" "$BASE"
  rm -rf "$tmp"
fi
new_root() { # sets NEW_ROOT (not in a subshell: the mount must be remembered for the clean-up)
  NEW_ROOT=$(mktemp -d "$WORK/root.XXXXXX")
  tar -C "$NEW_ROOT" --zstd -xf "$BASE"
  # mktemp made it 0700: the service users inside must be able to reach /.
  chmod 755 "$NEW_ROOT"
  mount -t proc proc "$NEW_ROOT/proc"
  mounts+=("$NEW_ROOT/proc")
}
in_root() {
  local r=$1
  shift
  chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
expect_stat() { # ROOT PATH "MODE USER:GROUP" (names as the root's own passwd and group say)
  local got
  got=$(in_root "$1" stat -c '%a %U:%G' "$2" 2>/dev/null) || fail "$2 is missing"
  [ "$got" = "$3" ] || fail "$2 is $got, expected $3"
  ok "$2 $3"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
wait_for() { # SECONDS DESCRIPTION COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what=$2
  shift 2
  until "$@" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within the deadline"
    sleep 0.5
  done
}

new_root
R=$NEW_ROOT
cp "$WORK/v1"/*.deb "$WORK/v2"/*.deb "$R/tmp/"

step "1. Install both packages ($v1) into $R"
in_root "$R" dpkg -i "/tmp/patch-agent_${v1}_amd64.deb" "/tmp/patch-manager_${v1}_amd64.deb" > "$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log"; fail "dpkg -i"; }
grep -q "/var/lib/patch-manager/setup-token" "$WORK/install.log" || { cat "$WORK/install.log"; fail "the install does not say where the setup token is"; }
ok "installed; the install says where the setup token is"
expect_stat "$R" /usr/bin/patch-manager "755 root:root"
expect_stat "$R" /usr/bin/patch-agent "755 root:root"
[ ! -e "$R/usr/bin/patch-fleet-sim" ] || fail "the fleet simulator is packaged"
unit_dir=$( [ -f "$R/lib/systemd/system/patch-manager.service" ] && echo /lib/systemd/system || echo /usr/lib/systemd/system )
expect_stat "$R" "$unit_dir/patch-manager.service" "644 root:root"
expect_stat "$R" "$unit_dir/patch-agent.service" "644 root:root"
expect_stat "$R" /etc/patch-manager/manager.toml "640 root:patch-manager"
in_root "$R" dpkg-query -W -f='${Conffiles}' patch-manager | grep -q '/etc/patch-manager/manager.toml' || fail "manager.toml is not a conffile"
ok "/etc/patch-manager/manager.toml is a conffile"
expect_stat "$R" /var/lib/patch-manager "700 patch-manager:patch-manager"
IFS=: read -r _ _ uid _ _ home shell < <(in_root "$R" getent passwd patch-manager) || fail "no patch-manager user"
[ "$uid" -lt 1000 ] && [ "$home" = /var/lib/patch-manager ] && [ "$shell" = /usr/sbin/nologin ] \
  || fail "patch-manager user: uid $uid home $home shell $shell"
ok "system user patch-manager (uid $uid, $home, $shell)"
expect_stat "$R" /etc/patch-agent "755 root:root"
expect_stat "$R" /etc/patch-agent/agent.toml "600 root:root"
expect_stat "$R" /etc/patch-agent/tls "700 root:root"
expect_stat "$R" /var/lib/patch-agent "700 root:root"
expect_stat "$R" /var/log/patch-agent "700 root:root"
[ -f "$R/usr/share/patch-manager/site/pkg/bundle.json" ] || fail "no web bundle in the package"
# Every file the manifest lists, in the directory it names (the manager refuses to start otherwise).
bundle_dir=$(grep -o '"dir":"[^"]*"' "$R/usr/share/patch-manager/site/pkg/bundle.json" | cut -d'"' -f4)
for f in $(grep -o '"files":\[[^]]*\]' "$R/usr/share/patch-manager/site/pkg/bundle.json" | grep -o '"[^"]*"' | tail -n +2 | tr -d '"'); do
  for v in "" .br .gz; do
    [ -f "$R/usr/share/patch-manager/site/pkg/$bundle_dir/$f$v" ] || fail "the package lacks the bundle's $bundle_dir/$f$v"
  done
done
[ -f "$R/usr/share/patch-manager/site/pkg/$bundle_dir/__wasm_split_manifest.json" ] || fail "the package lacks the bundle's split manifest"
[ -f "$R/usr/share/patch-manager/assets/style.css" ] || fail "no assets in the package"
[ -f "$R/usr/share/patch-manager/agent/patch-agent.deb" ] || fail "the manager does not carry the agent package"
ok "web bundle, assets and the agent package under /usr/share/patch-manager"
for u in patch-manager patch-agent; do
  [ -L "$R/etc/systemd/system/multi-user.target.wants/$u.service" ] || fail "$u.service is not enabled"
done
ok "both units enabled (multi-user.target.wants)"

step "systemd-analyze verify of the installed units"
mkdir -p "$WORK/units"
for u in patch-manager patch-agent; do
  # verify checks that ExecStart exists: point it into the root.
  sed "s|^ExecStart=/usr/bin/|ExecStart=$R/usr/bin/|" "$R$unit_dir/$u.service" > "$WORK/units/$u.service"
  out=$(systemd-analyze verify "$WORK/units/$u.service" 2>&1) || fail "systemd-analyze verify $u.service: $out"
  [ -z "$out" ] || fail "systemd-analyze verify $u.service: $out"
  ok "$u.service verifies with no output"
done

start_manager() { # ROOT PORT LOG: the packaged configuration, as the unit runs it (its user, umask)
  local exec_start
  exec_start=$(sed -n 's/^ExecStart=//p' "$1$unit_dir/patch-manager.service")
  # One process from here to the manager (every step execs), so $! is the manager itself.
  ( exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 sh -c \
    "umask 077; exec setpriv --reuid=patch-manager --regid=patch-manager --init-groups \
    $exec_start --listen 127.0.0.1:$2 --set server.public_url=https://127.0.0.1:$2 \
    --set fleet.health_interval_secs=10 --set metrics.listen= --set log.format=text" ) > "$3" 2>&1 &
  pids+=($!)
  MANAGER_PID=$!
  SHOW_LOG=$3
  wait_for 120 "the packaged manager answering on 127.0.0.1:$2" \
    curl -fsS -o /dev/null --cacert "$1/var/lib/patch-manager/web-ca/ca.crt" "https://127.0.0.1:$2/status/health"
}
stop_manager() {
  kill "$MANAGER_PID"
  wait "$MANAGER_PID" 2>/dev/null || true
  ! pgrep -f "patch-manager --config /etc/patch-manager/manager.toml serve --listen 127.0.0.1:" >/dev/null \
    || fail "a packaged manager is still running after it was stopped"
}

step "2. The packaged manager starts with no edits"
port=$(free_port)
start_manager "$R" "$port" "$WORK/manager.log"
grep -q "setup-token" "$WORK/manager.log" || { cat "$WORK/manager.log"; fail "the manager's log does not name the setup token file"; }
expect_stat "$R" /var/lib/patch-manager/setup-token "600 patch-manager:patch-manager"
expect_stat "$R" /var/lib/patch-manager/patch-manager.db "600 patch-manager:patch-manager"
expect_stat "$R" /var/lib/patch-manager/ca/ca.key "600 patch-manager:patch-manager"
ok "running on SQLite in /var/lib/patch-manager as patch-manager; the log names the setup token"
BASE_URL="https://127.0.0.1:$port"
CURL=(curl -fsS --cacert "$R/var/lib/patch-manager/web-ca/ca.crt" -H 'content-type: application/json')
"${CURL[@]}" -o /dev/null -X POST "$BASE_URL/api/v1/setup" \
  -d "{\"token\":\"$(tr -d '\n' < "$R/var/lib/patch-manager/setup-token")\",\"username\":\"admin\",\"password\":\"Package-Test-Passw0rd\"}"
bearer=$("${CURL[@]}" -X POST "$BASE_URL/api/v1/auth/login" \
  -d '{"username":"admin","password":"Package-Test-Passw0rd","client":"api"}' | json 'd["access_token"]')
created=$("${CURL[@]}" -X POST -H "authorization: Bearer $bearer" "$BASE_URL/api/v1/enrollment-tokens" -d '{}')
install_command=$(echo "$created" | json 'd["install_command"] or ""')
[ -n "$install_command" ] || fail "Add a host shows no one-line install: $created"
ok "one-line install from Add a host:"
info "    ${install_command//$'\n'/ }"

step "The one-line install on a new host (a second root)"
new_root
H=$NEW_ROOT
agent_port=$(free_port)
# Operator's choice of port made before install (postinst keeps an existing agent.toml).
mkdir -p "$H/etc/patch-agent"
sed "s|^listen = .*|listen = \"127.0.0.1:$agent_port\"|" config/agent.example.toml > "$H/etc/patch-agent/agent.toml"
mkdir -p "$H/usr/local/sbin"
cat > "$H/usr/local/sbin/systemctl" <<'STANDIN'
#!/bin/sh
# Test stand-in: no systemd in a chroot. `enable --now UNIT` runs the unit's ExecStart line in the
# background, as root, as systemd would; anything else fails.
[ "$1" = enable ] && [ "$2" = --now ] || { echo "systemctl stand-in: $* not supported" >&2; exit 1; }
unit=$(ls /lib/systemd/system/"$3".service /usr/lib/systemd/system/"$3".service 2>/dev/null | head -n1)
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
setsid sh -c "exec $exec_start" </dev/null >/var/log/unit-"$3".log 2>&1 &
echo $! > /run/unit-"$3".pid
STANDIN
chmod 755 "$H/usr/local/sbin/systemctl"
in_root "$H" sh -c "$install_command" > "$WORK/host-install.log" 2>&1 || { cat "$WORK/host-install.log"; fail "the one-line install"; }
pids+=("$(cat "$H/run/unit-patch-agent.pid")")
ok "installed, enrolled and started on the new host"
host_healthy() {
  "${CURL[@]}" -H "authorization: Bearer $bearer" "$BASE_URL/api/v1/hosts" \
    | json '"yes" if any(h["status"]=="healthy" for h in d["hosts"]) else ""' | grep -q yes
}
SHOW_LOG="$H/var/log/unit-patch-agent.log"
wait_for 120 "the new host shown healthy in the manager" host_healthy
ok "the new host is healthy in the manager, nothing copied by hand"
agent_pid=$(cat "$H/run/unit-patch-agent.pid")
kill "$agent_pid"
agent_gone() { ! kill -0 "$agent_pid" 2>/dev/null; }
wait_for 30 "the new host's agent stopping" agent_gone
stop_manager

step "3. Upgrade to $v2 keeps the data and local edits"
ca_before=$(sha256sum < "$R/var/lib/patch-manager/ca/ca.key")
echo "# a local edit" >> "$R/etc/patch-manager/manager.toml"
echo "# a local edit" >> "$R/etc/patch-agent/agent.toml"
in_root "$R" dpkg -i "/tmp/patch-agent_${v2}_amd64.deb" "/tmp/patch-manager_${v2}_amd64.deb" > "$WORK/upgrade.log" 2>&1 \
  || { cat "$WORK/upgrade.log"; fail "dpkg -i (upgrade)"; }
[ "$(in_root "$R" dpkg-query -W -f='${Version}' patch-manager)" = "$v2" ] || fail "patch-manager not upgraded"
[ "$(sha256sum < "$R/var/lib/patch-manager/ca/ca.key")" = "$ca_before" ] || fail "the CA key changed on upgrade"
tail -n1 "$R/etc/patch-manager/manager.toml" | grep -q "a local edit" || fail "the upgrade lost the edit of manager.toml"
tail -n1 "$R/etc/patch-agent/agent.toml" | grep -q "a local edit" || fail "the upgrade lost the edit of agent.toml"
expect_stat "$R" /var/lib/patch-manager "700 patch-manager:patch-manager"
ok "CA key, database and both configuration edits kept"
start_manager "$R" "$(free_port)" "$WORK/manager2.log"
stop_manager
grep -q "setup-token" "$WORK/manager2.log" && fail "after the upgrade the manager asks for setup again (data lost)"
ok "the upgraded manager started on the same data (setup stays complete)"

step "Remove keeps the data"
in_root "$R" dpkg -r patch-manager patch-agent > "$WORK/remove.log" 2>&1 || { cat "$WORK/remove.log"; fail "dpkg -r"; }
[ ! -e "$R/usr/bin/patch-manager" ] && [ ! -e "$R/usr/bin/patch-agent" ] || fail "binaries left after remove"
[ "$(sha256sum < "$R/var/lib/patch-manager/ca/ca.key")" = "$ca_before" ] || fail "remove touched the CA key"
[ -f "$R/var/lib/patch-manager/patch-manager.db" ] || fail "remove deleted the database"
[ -f "$R/etc/patch-agent/agent.toml" ] && [ -d "$R/etc/patch-agent/tls" ] || fail "remove deleted the agent's configuration"
[ -f "$R/etc/patch-manager/manager.toml" ] || fail "remove deleted the conffile"
ok "binaries gone; database, CA keys and configuration kept"

step "Purge deletes it"
in_root "$R" dpkg -P patch-manager patch-agent > "$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; fail "dpkg -P"; }
for gone in /var/lib/patch-manager /etc/patch-manager /etc/patch-agent /var/lib/patch-agent /var/log/patch-agent \
  /etc/systemd/system/multi-user.target.wants/patch-manager.service; do
  [ ! -e "$R$gone" ] || fail "$gone is left after purge"
done
ok "data, keys and configuration deleted; units disabled"

step "Package tests passed"
