#!/usr/bin/env bash
# Checks configs/systemd/*.service with systemd-analyze.
#
#   tests/systemd/verify_units.sh BIN_DIR [UNIT_DIR]
#
# BIN_DIR holds the built ntp-server and ntp-client (e.g. build/bin). UNIT_DIR
# defaults to configs/systemd next to this script.
#
# `systemd-analyze verify` insists that ExecStart's binary exists, and the
# units point at /usr/local/bin, where nothing is installed during a build. So
# the units are copied into a temporary directory with ExecStart rewritten to
# BIN_DIR, and verified there under their real names.
#
# systemd-analyze exits 0 even when it warns about a unit (an unknown key, a
# value it cannot parse: it ignores the line and carries on), so its output is
# read too: any line about our units fails the test. A second check,
# `systemd-analyze security --offline`, fails if the hardening of either unit
# regresses past an exposure score of MAX_EXPOSURE.
#
# Exit codes: 0 pass, 1 fail, 2 usage, 77 skipped (no systemd-analyze; ctest
# reads 77 as a skip when the test sets SKIP_RETURN_CODE 77).
# shellcheck disable=SC2001  # sed indents multi-line output
set -euo pipefail

readonly UNITS=(ntp-server ntp-client)
# systemd-analyze security scores 0 (locked down) to 10 (unprotected) but
# --threshold takes tenths as an integer: 20 means 2.0. Both units score 1.5.
readonly MAX_EXPOSURE=20
readonly MAX_EXPOSURE_SHOWN="$((MAX_EXPOSURE / 10)).$((MAX_EXPOSURE % 10))"

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 BIN_DIR [UNIT_DIR]" >&2
  exit 2
fi

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze not found (apt-get install systemd)" >&2
  exit 77
fi

bin_dir=$(realpath -- "$1")
unit_dir=$(realpath -- "${2:-$(dirname -- "${BASH_SOURCE[0]}")/../../configs/systemd}")

for u in "${UNITS[@]}"; do
  if [[ ! -x "$bin_dir/$u" ]]; then
    echo "FAIL: $bin_dir/$u is missing or not executable (build first)" >&2
    exit 1
  fi
  if [[ ! -f "$unit_dir/$u.service" ]]; then
    echo "FAIL: $unit_dir/$u.service not found" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=1
}

declare -A CONFIG_FILE=([ntp-server]=server.json [ntp-client]=apps.json)
for u in "${UNITS[@]}"; do
  src="$unit_dir/$u.service"
  if ! grep -q "^ExecStart=/usr/local/bin/$u " "$src"; then
    fail "$src: ExecStart must run /usr/local/bin/$u (where cmake --install puts it)"
  fi
  # A reload must see the edited file: the daemon reads it where it is (a
  # LoadCredential= copy is never refreshed by systemd 252), as the static
  # user the files are shared with, and ExecReload= sends the SIGHUP.
  if ! grep -q "^ExecStart=/usr/local/bin/$u -c /etc/ntp-tunnel/${CONFIG_FILE[$u]}\$" "$src"; then
    fail "$src: ExecStart must read /etc/ntp-tunnel/${CONFIG_FILE[$u]} in place"
  fi
  if grep -q "^LoadCredential=" "$src"; then
    fail "$src: LoadCredential= hands the daemon a copy that a reload would not see"
  fi
  if ! grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$src"; then
    fail "$src: ExecReload=/bin/kill -HUP \$MAINPID missing"
  fi
  for key in User Group; do
    if ! grep -qx "$key=ntp-tunnel" "$src"; then
      fail "$src: $key=ntp-tunnel missing (the files are 0640 root:ntp-tunnel)"
    fi
  done
  if grep -q "^DynamicUser=yes" "$src"; then
    fail "$src: DynamicUser=yes cannot share the files' group"
  fi
  sed "s|^ExecStart=/usr/local/bin/$u |ExecStart=$bin_dir/$u |" "$src" >"$work/$u.service"
done

# Plain output: no colours, no pager.
export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat SYSTEMD_LOG_COLOR=0

files=()
for u in "${UNITS[@]}"; do files+=("$work/$u.service"); done

# --- verify ------------------------------------------------------------------
set +e
out=$(systemd-analyze verify --man=no "${files[@]}" 2>&1)
rc=$?
set -e

# Lines naming our units (by temp path or unit name) are findings; anything
# else (a note about some unit of the host) is shown but does not fail.
ours=$(grep -E "$work/|ntp-(server|client)\.service" <<<"$out" || true)
others=$(grep -vE "$work/|ntp-(server|client)\.service" <<<"$out" | sed '/^$/d' || true)
if [[ -n "$others" ]]; then
  echo "note: systemd-analyze verify said about other units (ignored):" >&2
  sed 's/^/  /' <<<"$others" >&2
fi
if [[ $rc -ne 0 || -n "$ours" ]]; then
  fail "systemd-analyze verify (exit $rc):"
  sed 's/^/  /' <<<"${ours:-$out}" >&2
else
  echo "ok: systemd-analyze verify ${UNITS[*]}"
fi

# --- the user ------------------------------------------------------------------
# systemd-sysusers creates the units' user from the file cmake installs, in a
# scratch root: the file parses and names the user and group the units run as.
sysusers="$unit_dir/ntp-tunnel.sysusers"
if [[ ! -f "$sysusers" ]]; then
  fail "$sysusers not found"
elif command -v systemd-sysusers >/dev/null; then
  mkdir -p "$work/root/etc"
  if ! out=$(systemd-sysusers --root="$work/root" "$sysusers" 2>&1); then
    fail "systemd-sysusers $sysusers: $out"
  elif ! grep -q '^ntp-tunnel:' "$work/root/etc/passwd" ||
    ! grep -q '^ntp-tunnel:' "$work/root/etc/group"; then
    fail "systemd-sysusers $sysusers did not create user and group ntp-tunnel"
  else
    echo "ok: systemd-sysusers creates user and group ntp-tunnel"
  fi
fi

# --- security ----------------------------------------------------------------
# --offline judges the unit files alone (systemd >= 250); --threshold makes
# the exit code fail above MAX_EXPOSURE.
for f in "${files[@]}"; do
  set +e
  sec=$(systemd-analyze security --offline=true --threshold="$MAX_EXPOSURE" --no-pager "$f" 2>&1)
  rc=$?
  set -e
  score=$(grep -E 'Overall exposure level' <<<"$sec" | sed 's/^[^A-Za-z]*//' || true)
  if [[ $rc -ne 0 ]]; then
    # Only the settings that cost points, and the total.
    fail "systemd-analyze security $(basename -- "$f"): exposure above $MAX_EXPOSURE_SHOWN (exit $rc):"
    grep -vE '^[[:space:]]*✓' <<<"$sec" | sed 's/^/  /' >&2
  else
    echo "ok: ${score:-$(basename -- "$f"): exposure within $MAX_EXPOSURE_SHOWN}"
  fi
done

if [[ $failed -ne 0 ]]; then
  exit 1
fi
echo "PASS: ${UNITS[*]} units verified"
