#!/usr/bin/env bash
# A whole tunnel on loopback, to see ntp work in a minute:
#
#   web app (python3 -m http.server) 127.0.0.1:WEB
#     ◀── ntp-client ══ control/data ══▶ ntp-server 127.0.0.1:7000
#                                          └ AppServer 127.0.0.1:6080 ◀── you
#
#   scripts/demo.sh [--no-wait] [--bin-dir DIR] [--keep]
#
#   --no-wait      exit after the self-check request (for tests and CI); the
#                  exit code then also says whether both daemons stopped
#                  cleanly (exit 0) on SIGTERM
#   --bin-dir DIR  use ntp-server and ntp-client from DIR, do not build
#   --keep         keep the temporary directory (configs and logs) on exit
#
# Without --bin-dir it first installs the Debian packages the build needs
# (scripts/deps.sh: only those missing, with sudo when not root), then builds
# the same way as scripts/test.sh. Ports
# 7000 and 6080 are used when free, else free ones are picked. Everything
# listens on 127.0.0.1 only.
# shellcheck disable=SC2317  # cleanup, stop and show_log run from traps
set -euo pipefail

readonly TUNNEL_DEADLINE_S=30  # the client retries within about 1 s; 30 s is plenty
readonly STOP_DEADLINE_S=5     # the daemons give streams 3 s, then exit

no_wait=0
keep=0
bin_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-wait) no_wait=1 ;;
    --keep) keep=1 ;;
    --bin-dir)
      [[ $# -ge 2 ]] || { echo "demo: --bin-dir needs a directory" >&2; exit 2; }
      bin_dir="$2"
      shift
      ;;
    -h | --help)
      # The header comment, up to the shellcheck line.
      awk 'NR > 1 && !/^#/ || /shellcheck/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) echo "demo: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

root=$(cd "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

if [[ -z "$bin_dir" ]]; then
  # shellcheck source=scripts/deps.sh
  source "$root/scripts/deps.sh"
  ntp_deps build
fi
for tool in python3 setsid; do
  command -v "$tool" >/dev/null || { echo "demo: $tool not found" >&2; exit 1; }
done

if [[ -z "$bin_dir" ]]; then
  echo "== building (as scripts/test.sh does)"
  (cd "$root" && cmake --preset release && cmake --build --preset release)
  bin_dir="$root/build/bin"
fi
[[ -d "$bin_dir" ]] || { echo "demo: $bin_dir is not a directory" >&2; exit 1; }
bin_dir=$(cd "$bin_dir" && pwd)
for b in ntp-server ntp-client; do
  [[ -x "$bin_dir/$b" ]] || { echo "demo: $bin_dir/$b not found or not executable" >&2; exit 1; }
done

umask 077  # the configs below hold the token
work=$(mktemp -d "${TMPDIR:-/tmp}/ntp-demo.XXXXXX")
mkdir "$work/www"

# --- children and cleanup ------------------------------------------------------
# Each child runs in its own session (setsid), so a Ctrl-C reaches only this
# script, which then stops the children itself with SIGTERM and checks how
# they exit. setsid does not fork here (a background job of a non-interactive
# shell is no process group leader), so $! is the child's own pid.
web_pid="" server_pid="" client_pid=""
failed=0
user_stop=0

say() { printf '%s\n' "$*"; }
warn() { printf 'demo: %s\n' "$*" >&2; }

show_log() {  # name file
  [[ -s "$2" ]] || return 0
  warn "last lines of the $1 log ($2):"
  tail -n 20 "$2" | sed 's/^/    /' >&2
}

stop() {  # name pid: SIGTERM, wait up to STOP_DEADLINE_S, then SIGKILL
  local name="$1" pid="$2" rc i how="on its own"
  [[ -n "$pid" ]] || return 0
  if kill -TERM "$pid" 2>/dev/null; then
    how="after SIGTERM"
    for ((i = 0; i < STOP_DEADLINE_S * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      warn "$name (pid $pid) still running ${STOP_DEADLINE_S} s after SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      failed=1
    fi
  fi
  rc=0
  wait "$pid" 2>/dev/null || rc=$?
  # Only the daemons' exit codes are part of ntp's contract (0 on SIGTERM);
  # http.server dies of the signal, which is fine.
  if [[ "$name" == ntp-* ]]; then
    if [[ $rc -eq 0 ]]; then
      say "   $name stopped (exit 0)"
    else
      warn "$name exited with $rc $how, expected 0 after SIGTERM"
      failed=1
    fi
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n "$client_pid$server_pid$web_pid" ]] && say "== stopping"
  stop ntp-client "$client_pid"
  stop ntp-server "$server_pid"
  stop web-app "$web_pid"
  if [[ $user_stop -eq 1 && ( $rc -eq 130 || $rc -eq 143 ) ]]; then
    rc=0  # Ctrl-C (or a plain kill) is how the demo is meant to end
  fi
  if [[ $failed -ne 0 && $rc -eq 0 ]]; then
    rc=1
  fi
  if [[ $rc -ne 0 ]]; then
    show_log ntp-server "$work/ntp-server.log"
    show_log ntp-client "$work/ntp-client.log"
    keep=1
  fi
  if [[ $keep -eq 1 ]]; then
    say "   kept $work"
  else
    rm -rf -- "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- ports, token, files -------------------------------------------------------
# One python3 call picks all three so they differ: the preferred port when it
# can be bound, else one the kernel chooses; the sockets stay open until all
# are chosen. SO_REUSEADDR as the daemons' acceptors use it, so a port left in
# TIME_WAIT by the last run counts as free and 6080 stays 6080.
read -r web_port bind_port remote_port < <(python3 - <<'PY'
import socket
held = []
def pick(preferred):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", preferred))
    except OSError:
        s.bind(("127.0.0.1", 0))
    held.append(s)
    return s.getsockname()[1]
print(pick(0), pick(7000), pick(6080))
PY
)

token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
printf '%s\n' "$token" >"$work/demo.token"

cat >"$work/server.json" <<EOF
{
  "bind": "127.0.0.1:$bind_port",
  "token": "$token",
  "proxy_bind_addr": "127.0.0.1",
  "allow_ports": ["$remote_port"],
  "heartbeat_timeout_s": 30,
  "log_level": "info"
}
EOF

cat >"$work/apps.json" <<EOF
{
  "server": "127.0.0.1:$bind_port",
  "group": "demo",
  "token_file": "$work/demo.token",
  "heartbeat_interval_s": 10,
  "apps": [
    { "name": "web", "local": "127.0.0.1:$web_port", "remote_port": $remote_port, "type": "tcp" }
  ],
  "log_level": "info"
}
EOF

readonly greeting="hello through ntp"
cat >"$work/www/index.html" <<EOF
<!doctype html>
<html><head><title>ntp demo</title></head>
<body><h1>$greeting</h1>
<p>Served by python3 -m http.server on 127.0.0.1:$web_port, reached through
ntp-server's AppServer on 127.0.0.1:$remote_port.</p></body></html>
EOF

# fetch URL: print the body, or fail quietly. Proxies are bypassed on purpose:
# an http_proxy in the environment must not intercept loopback.
fetch() {
  python3 - "$1" <<'PY'
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(sys.argv[1], timeout=2) as r:
        sys.stdout.write(r.read().decode("utf-8", "replace"))
except Exception:
    sys.exit(1)
PY
}

# wait_for NAME URL: poll until URL answers with the greeting, within the
# deadline, while every child is still alive.
wait_for() {
  local what="$1" url="$2" body end=$((SECONDS + TUNNEL_DEADLINE_S)) pid
  while :; do
    if body=$(fetch "$url") && [[ "$body" == *"$greeting"* ]]; then
      return 0
    fi
    for pid in $web_pid $server_pid $client_pid; do
      if ! kill -0 "$pid" 2>/dev/null; then
        warn "a process exited while waiting for $what (pid $pid)"
        return 1
      fi
    done
    if ((SECONDS >= end)); then
      warn "$what did not answer at $url within ${TUNNEL_DEADLINE_S} s"
      return 1
    fi
    sleep 0.2
  done
}

# --- start ----------------------------------------------------------------------
# NTP_TOKEN would override the files' tokens: keep a caller's value out.
unset NTP_TOKEN

say "== starting on 127.0.0.1 (files in $work)"
setsid python3 -m http.server "$web_port" --bind 127.0.0.1 --directory "$work/www" \
  </dev/null >"$work/web-app.log" 2>&1 &
web_pid=$!
wait_for "the web app" "http://127.0.0.1:$web_port/"
say "   web app     127.0.0.1:$web_port   pid $web_pid"

setsid "$bin_dir/ntp-server" -c "$work/server.json" </dev/null >"$work/ntp-server.log" 2>&1 &
server_pid=$!
say "   ntp-server  127.0.0.1:$bind_port  pid $server_pid"

setsid "$bin_dir/ntp-client" -c "$work/apps.json" </dev/null >"$work/ntp-client.log" 2>&1 &
client_pid=$!
say "   ntp-client  group=demo app=web remote_port=$remote_port  pid $client_pid"

wait_for "the tunnel" "http://127.0.0.1:$remote_port/"

say "== self-check: GET http://127.0.0.1:$remote_port/ through the tunnel answered:"
fetch "http://127.0.0.1:$remote_port/" | sed 's/^/   | /'
say ""
if [[ $no_wait -eq 1 && $keep -eq 0 ]]; then
  say "The tunnel works. Logs (removed on exit; --keep keeps them):"
else
  say "The tunnel works. Logs:"
fi
say "   ntp-server  $work/ntp-server.log"
say "   ntp-client  $work/ntp-client.log"
say "   web app     $work/web-app.log"

if [[ $no_wait -eq 1 ]]; then
  exit 0
fi

say ""
say "Try:   curl http://127.0.0.1:$remote_port/"
say "       tail -f $work/ntp-server.log $work/ntp-client.log"
if [[ $keep -eq 0 ]]; then
  say "Press Ctrl-C to stop (files are removed then; --keep keeps them)."
else
  say "Press Ctrl-C to stop."
fi

user_stop=1
# Returns when a child exits on its own, or when Ctrl-C runs the INT trap.
status=0
wait -n "$web_pid" "$server_pid" "$client_pid" || status=$?
user_stop=0
warn "a process exited on its own (status $status); stopping the rest"
exit 1
