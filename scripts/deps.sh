# shellcheck shell=bash
# The Debian 12 packages ntp needs, in one place, and the one way they are
# installed. Sourced (not run) by scripts/demo.sh, scripts/test.sh, scripts/fuzz.sh,
# bench/run and .ci/run:
#
#   source scripts/deps.sh
#   ntp_deps build test     # install whatever of these lists is missing
#   ntp_install_packages iperf3 haproxy   # or of named packages
#
# Lists: build (compile both daemons), test (what the suite runs beyond that),
# fuzz (clang's libFuzzer and sanitizer runtimes). A second run finds nothing
# missing and prints nothing. Installing never starts a service on this machine:
# --no-install-recommends, library-only variants where Debian has them, and
# service start-up refused (policy-rc.d exiting 101) while packages that ship a
# daemon are unpacked. Exits 2, with the exact apt-get line, when it is neither
# root nor has sudo.

NTP_BUILD_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config python3
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev libcli11-dev libgtest-dev libssl-dev
)
# systemd-analyze (tests/systemd), openssl (certificates for the TLS e2e tests),
# and the real programs the e2e tests put behind the tunnel: dnsmasq (library
# variant: no service) answered by dig, nginx (its service never started here)
# reading PROXY protocol headers, socat on a Unix socket.
NTP_TEST_PACKAGES=(python3 systemd openssl util-linux dnsmasq-base bind9-dnsutils nginx-light socat)
NTP_FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)
# Packages that ship a service which installing would start: start-up is held
# off while any of them is installed.
NTP_SERVICE_PACKAGES=(openssh-server haproxy iperf3 nginx-light nginx dnsmasq prometheus systemd)

# Where Debian's invoke-rc.d looks (a variable so that tests can point it elsewhere).
NTP_POLICY_RC_D=${NTP_POLICY_RC_D:-/usr/sbin/policy-rc.d}

ntp_deps_say() { printf 'deps: %s\n' "$*" >&2; }

ntp_package_installed() {  # dpkg -s also succeeds for removed packages that left config files
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

# Prints the packages of "$@" that are not installed, one a line.
ntp_missing_packages() {
  local p
  for p in "$@"; do
    ntp_package_installed "$p" || printf '%s\n' "$p"
  done
}

# Installs the packages of "$@" that are missing; returns 0 when none was.
ntp_install_packages() {
  local missing=() p
  if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    ntp_deps_say "not a Debian system (no dpkg-query/apt-get): make sure these are installed: $*"
    return 0
  fi
  mapfile -t missing < <(ntp_missing_packages "$@" | awk '!seen[$0]++')
  ((${#missing[@]} > 0)) || return 0

  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null; then
      ntp_deps_say "missing packages, and this is not root and has no sudo. As root, run:"
      printf '  apt-get install -y --no-install-recommends %s\n' "${missing[*]}" >&2
      exit 2
    fi
    sudo=(sudo)
  fi

  local daemons=0 rc=0
  for p in "${missing[@]}"; do
    [[ " ${NTP_SERVICE_PACKAGES[*]} " == *" $p "* ]] && daemons=1
  done
  ntp_deps_say "installing ${#missing[@]} missing Debian packages: ${missing[*]}"
  # In a subshell, so that its EXIT trap removes our policy-rc.d even when
  # apt-get fails or the user presses Ctrl-C. One that was there already is the
  # machine owner's: it is used and left alone.
  (
    if [[ $daemons -eq 1 && ! -e $NTP_POLICY_RC_D ]]; then
      trap '"${sudo[@]}" rm -f "$NTP_POLICY_RC_D"' EXIT
      printf '#!/bin/sh\n# ntp scripts/deps.sh: no service starts while packages install\nexit 101\n' |
        "${sudo[@]}" tee "$NTP_POLICY_RC_D" >/dev/null || exit
      "${sudo[@]}" chmod 755 "$NTP_POLICY_RC_D" || exit
    fi
    # set -e does not hold left of ||: each step stops the subshell itself.
    "${sudo[@]}" apt-get update -q || exit
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" || exit
  ) >&2 || rc=$?
  if [[ $rc -ne 0 ]]; then
    ntp_deps_say "apt-get failed (exit $rc) installing: ${missing[*]}"
    exit 1
  fi
  mapfile -t missing < <(ntp_missing_packages "${missing[@]}")
  if ((${#missing[@]} > 0)); then
    ntp_deps_say "apt-get succeeded but these are still not installed: ${missing[*]}"
    exit 1
  fi
}

# ntp_deps LIST... with LIST one of build, test, fuzz.
ntp_deps() {
  local want=() list
  for list in "$@"; do
    case "$list" in
      build) want+=("${NTP_BUILD_PACKAGES[@]}") ;;
      test) want+=("${NTP_TEST_PACKAGES[@]}") ;;
      fuzz) want+=("${NTP_FUZZ_PACKAGES[@]}") ;;
      *) ntp_deps_say "unknown package list '$list' (build, test, fuzz)"; exit 2 ;;
    esac
  done
  ntp_install_packages "${want[@]}"
}
