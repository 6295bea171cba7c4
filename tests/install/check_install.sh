#!/usr/bin/env bash
# `cmake --install` into a scratch root must put each daemon exactly where its
# systemd unit's ExecStart expects it, and the units and example configs beside.
#   tests/install/check_install.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: check_install.sh BUILD_DIR}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

DESTDIR="$root" cmake --install "$build" --prefix /usr/local >/dev/null

fail=0
for unit in ntp-server ntp-client; do
  file="$root/usr/local/lib/systemd/system/$unit.service"
  [[ -f "$file" ]] || { echo "FAIL: $unit.service not installed under lib/systemd/system"; fail=1; continue; }
  exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$file")
  if [[ -x "$root$exec_path" ]]; then
    echo "ok: $unit.service ExecStart=$exec_path is installed"
  else
    echo "FAIL: $unit.service runs $exec_path, which the install did not create"
    fail=1
  fi
done
if grep -q '^u ntp-tunnel ' "$root/usr/local/lib/sysusers.d/ntp-tunnel.conf" 2>/dev/null; then
  echo "ok: sysusers.d/ntp-tunnel.conf declares the units' user"
else
  echo "FAIL: lib/sysusers.d/ntp-tunnel.conf (the ntp-tunnel user) not installed"; fail=1
fi
for f in server.json apps.json apps-token-file.json; do
  if [[ -f "$root/usr/local/share/ntp-tunnel/examples/$f" ]]; then
    echo "ok: example $f installed"
  else
    echo "FAIL: example $f not installed"; fail=1
  fi
done
exit "$fail"
