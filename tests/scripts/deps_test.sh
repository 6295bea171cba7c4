#!/usr/bin/env bash
# scripts/deps.sh against fake dpkg-query, apt-get, id and sudo: what it
# installs, how, and what it says, without touching this machine's packages.
#   tests/scripts/deps_test.sh
# Each case runs deps.sh in a fresh bash whose PATH holds only the fakes and
# the few real tools deps.sh uses, so "no sudo" really means none.
set -euo pipefail

repo=$(cd "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
fakes="$work/bin"
mkdir "$fakes"
for tool in awk tee chmod rm env cat grep; do  # deps.sh's, and grep for the fakes
  ln -s "$(command -v "$tool")" "$fakes/$tool"
done

# dpkg-query -W -f=FORMAT PKG: "installed" when PKG is listed in $FAKE_STATUS.
cat >"$fakes/dpkg-query" <<'EOF'
#!/bin/bash
pkg="${!#}"
grep -qx -- "$pkg" "$FAKE_STATUS" 2>/dev/null && { printf installed; exit 0; }
exit 1
EOF
# apt-get: logs each call; an install checks policy-rc.d, then marks the
# packages installed (or fails with FAKE_APT_FAIL).
cat >"$fakes/apt-get" <<'EOF'
#!/bin/bash
echo "apt-get $* (DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-unset})" >>"$FAKE_LOG"
[[ " $* " == *" install "* ]] || exit 0
if [[ -x "$NTP_POLICY_RC_D" ]]; then
  "$NTP_POLICY_RC_D"; echo "policy-rc.d during install: exit $?" >>"$FAKE_LOG"
else
  echo "policy-rc.d during install: none" >>"$FAKE_LOG"
fi
[[ -n "${FAKE_APT_FAIL:-}" ]] && exit 100
for a in "$@"; do [[ $a == -* || $a == install || $a == Dpkg::* ]] || echo "$a" >>"$FAKE_STATUS"; done
EOF
cat >"$fakes/id" <<'EOF'
#!/bin/bash
echo "${FAKE_UID:-0}"
EOF
cat >"$fakes/sudo" <<'EOF'
#!/bin/bash
echo "sudo $1" >>"$FAKE_LOG"
exec "$@"
EOF
chmod +x "$fakes"/*

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# run [VAR=value...] -- BASH-CODE: runs the code after sourcing deps.sh; sets
# $out (stdout+stderr), $rc and $log (the fakes' calls).
run() {
  local vars=()
  while [[ $1 != -- ]]; do vars+=("$1"); shift; done
  shift
  : >"$work/log"
  rc=0
  out=$(/usr/bin/env -i PATH="$fakes" FAKE_STATUS="$work/status" FAKE_LOG="$work/log" \
    NTP_POLICY_RC_D="$work/policy-rc.d" "${vars[@]}" \
    /bin/bash -c "set -euo pipefail; source '$repo/scripts/deps.sh'; $1" 2>&1) || rc=$?
  log=$(cat "$work/log")
}

# 1. Everything there: nothing said, no apt-get.
printf '%s\n' libfoo-dev haproxy >"$work/status"
run -- 'ntp_install_packages libfoo-dev haproxy'
[[ $rc -eq 0 && -z "$out" && -z "$log" ]] && ok "nothing missing: silent, no apt-get" ||
  fail "nothing missing: rc=$rc out='$out' log='$log'"

# 2. As root, one library missing: update, then install without recommends,
# noninteractive; no policy-rc.d for a package without a service.
: >"$work/status"
run -- 'ntp_install_packages libfoo-dev'
expected="apt-get update -q (DEBIAN_FRONTEND=unset)
apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 libfoo-dev (DEBIAN_FRONTEND=noninteractive)
policy-rc.d during install: none"
[[ $rc -eq 0 && "$log" == "$expected" ]] && ok "root: apt-get update + install --no-install-recommends" ||
  fail "root install: rc=$rc log='$log'"
[[ "$out" == *"deps: installing 1 missing Debian packages: libfoo-dev"* ]] &&
  ok "says what it installs" || fail "install message: '$out'"
run -- 'ntp_install_packages libfoo-dev'
[[ $rc -eq 0 && -z "$out" && -z "$log" ]] && ok "second run: silent, no apt-get" ||
  fail "second run: rc=$rc out='$out' log='$log'"

# 3. A package with a service: policy-rc.d refuses start-up (101) during the
# install and is gone afterwards.
: >"$work/status"
run -- 'ntp_install_packages libfoo-dev haproxy'
[[ $rc -eq 0 && "$log" == *"policy-rc.d during install: exit 101"* && ! -e "$work/policy-rc.d" ]] &&
  ok "service package: start-up refused during the install, policy-rc.d removed" ||
  fail "service package: rc=$rc log='$log' policy left: $([[ -e $work/policy-rc.d ]] && echo yes || echo no)"

# 4. The machine's own policy-rc.d is used and left as it was.
: >"$work/status"
printf '#!/bin/sh\nexit 0\n' >"$work/policy-rc.d"
chmod +x "$work/policy-rc.d"
run -- 'ntp_install_packages haproxy'
[[ $rc -eq 0 && "$(cat "$work/policy-rc.d")" == $'#!/bin/sh\nexit 0' ]] &&
  ok "an existing policy-rc.d is left alone" || fail "existing policy-rc.d: rc=$rc, now '$(cat "$work/policy-rc.d")'"
rm -f "$work/policy-rc.d"

# 5. Not root, with sudo: apt-get through sudo.
: >"$work/status"
run FAKE_UID=1000 -- 'ntp_install_packages libfoo-dev'
[[ $rc -eq 0 && "$log" == "sudo apt-get"*"sudo env"* ]] && ok "not root: apt-get through sudo" ||
  fail "sudo: rc=$rc log='$log'"

# 6. Not root and no sudo: exit 2 with the exact line to run, no apt-get.
: >"$work/status"
rm "$fakes/sudo"
run FAKE_UID=1000 -- 'ntp_install_packages libfoo-dev libbar-dev'
[[ $rc -eq 2 && -z "$log" && "$out" == *"apt-get install -y --no-install-recommends libfoo-dev libbar-dev"* ]] &&
  ok "no root, no sudo: exit 2 and the apt-get line" || fail "no sudo: rc=$rc out='$out' log='$log'"

# 7. apt-get fails: exit 1 naming the packages, no policy-rc.d left behind.
: >"$work/status"
run FAKE_APT_FAIL=1 -- 'ntp_install_packages haproxy'
[[ $rc -eq 1 && "$out" == *"apt-get failed (exit 100) installing: haproxy"* && ! -e "$work/policy-rc.d" ]] &&
  ok "apt-get failure: exit 1, named, policy-rc.d removed" || fail "apt failure: rc=$rc out='$out'"

# 8. The lists: build and test installed means silent; an unknown list is usage.
# shellcheck source=scripts/deps.sh
source "$repo/scripts/deps.sh"
printf '%s\n' "${NTP_BUILD_PACKAGES[@]}" "${NTP_TEST_PACKAGES[@]}" >"$work/status"
run -- 'ntp_deps build test'
[[ $rc -eq 0 && -z "$out" && -z "$log" ]] && ok "ntp_deps build test: all there, silent" ||
  fail "lists: rc=$rc out='$out' log='$log'"
run -- 'ntp_deps build fuzz'
[[ $rc -eq 0 && "$log" == *"install"*"clang-14 libclang-rt-14-dev"* ]] &&
  ok "ntp_deps fuzz installs clang" || fail "fuzz list: rc=$rc log='$log'"
run -- 'ntp_deps everything'
[[ $rc -eq 2 && "$out" == *"unknown package list 'everything'"* ]] && ok "unknown list: exit 2" ||
  fail "unknown list: rc=$rc out='$out'"

[[ $failures -eq 0 ]] || { echo "$failures case(s) failed"; exit 1; }
echo "all cases passed"
