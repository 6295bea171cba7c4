#!/usr/bin/env bash
# README's two commands on a bare Debian 12, as a new user runs them:
#
#   tests/fresh/run.sh [--keep] [--mirror URL]
#
# Builds a minimal Debian 12 root (mmdebstrap --variant=minbase: essential
# packages and apt, nothing else) in a temporary directory, copies a clean
# `git archive` of HEAD into it (so only what is committed is tried), and runs
# inside it, as root, exactly what README's Quick start says:
#
#   scripts/demo.sh --no-wait
#   scripts/test.sh
#
# printing each one's time and the last lines of its output. Exits 0 when both
# succeed, 1 when either fails, 2 on bad usage or when this is not root.
#
# Not part of the normal suite: it needs root (chroot, mounts) and the network
# to Debian's package mirror, and takes many minutes (a cold build and the whole
# suite inside the root). --keep keeps the root and the logs for a look.
# shellcheck disable=SC2317  # cleanup runs from a trap
set -euo pipefail

readonly SUITE=bookworm
readonly TAIL_LINES=15
readonly STEP_TIMEOUT=60m  # a hang is cut off, saying so

keep=0
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keep) keep=1 ;;
    --mirror)
      [[ $# -ge 2 ]] || { echo "fresh: --mirror needs a URL" >&2; exit 2; }
      mirror="$2"
      shift
      ;;
    -h | --help)
      awk 'NR > 1 && !/^#/ || /shellcheck/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) echo "fresh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

repo=$(cd "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
say() { printf '%s\n' "$*"; }
warn() { printf 'fresh: %s\n' "$*" >&2; }

[[ $(id -u) -eq 0 ]] || { warn "needs root (it builds a Debian root and chroots into it)"; exit 2; }
if [[ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]]; then
  warn "the work tree has uncommitted changes: only HEAD ($(git -C "$repo" rev-parse --short HEAD)) is tried"
fi

# shellcheck source=scripts/deps.sh
source "$repo/scripts/deps.sh"
ntp_install_packages mmdebstrap

work=$(mktemp -d /var/tmp/ntp-fresh.XXXXXX)
target="$work/root"

# Processes still running inside the root (a daemon a test left behind) would
# keep its mounts busy: stop them, then unmount, and delete the tree only when
# nothing is mounted under it any more (a bound /dev must never be deleted).
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in /proc/[0-9]*; do
    [[ "$(readlink "$pid/root" 2>/dev/null)" == "$target" ]] && kill -KILL "${pid#/proc/}" 2>/dev/null
  done
  for m in dev/pts dev proc sys; do
    mountpoint -q "$target/$m" 2>/dev/null && umount --recursive --lazy "$target/$m"
  done
  if findmnt -rn -o TARGET | grep -q "^$work"; then
    warn "something is still mounted under $work: left in place"
  elif [[ $keep -eq 1 ]]; then
    say "kept $work"
  else
    rm -rf --one-file-system -- "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "== a minimal Debian 12 root ($SUITE, minbase) in $target"
start=$SECONDS
mmdebstrap --quiet --mode=root --variant=minbase "$SUITE" "$target" \
  "deb $mirror $SUITE main" "deb $mirror $SUITE-updates main" "deb $security $SUITE-security main" \
  >"$work/mmdebstrap.log" 2>&1 || {
  warn "mmdebstrap failed; its last lines:"
  tail -n "$TAIL_LINES" "$work/mmdebstrap.log" >&2
  exit 1
}
say "   $((SECONDS - start)) s; $(chroot "$target" dpkg-query -W -f='.\n' | wc -l) packages installed"

cp /etc/resolv.conf "$target/etc/resolv.conf"
mkdir -p "$target/root/ntp"
git -C "$repo" archive --format=tar HEAD | tar -x -C "$target/root/ntp"
say "   HEAD $(git -C "$repo" rev-parse --short HEAD) copied to /root/ntp"

mount -t proc proc "$target/proc"
mount -t sysfs sysfs "$target/sys"
mount --rbind /dev "$target/dev"
mount --make-rslave "$target/dev"

# step NAME COMMAND: runs COMMAND in /root/ntp inside the root with a clean
# environment, prints its time, exit code and last lines; returns its exit code.
step() {
  local name="$1" cmd="$2" rc=0 log
  log="$work/$(tr -c 'a-z0-9\n' '_' <<<"$name").log"
  say "== $name"
  start=$SECONDS
  timeout --foreground "$STEP_TIMEOUT" chroot "$target" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/ntp && $cmd" >"$log" 2>&1 || rc=$?
  [[ $rc -eq 124 ]] && warn "$name did not finish within $STEP_TIMEOUT"
  say "   exit $rc after $((SECONDS - start)) s; its last $TAIL_LINES lines:"
  tail -n "$TAIL_LINES" "$log" | sed 's/^/   | /'
  return "$rc"
}

status=0
step "scripts/demo.sh --no-wait" "scripts/demo.sh --no-wait" || status=1
step "scripts/test.sh" "scripts/test.sh" || status=1
if [[ $status -eq 0 ]]; then
  say "== both of README's commands succeeded on a bare Debian 12"
else
  say "== FAILED: see above (--keep keeps the logs in $work)"
fi
exit "$status"
