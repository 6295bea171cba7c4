"""Shared helpers for the ntp end-to-end tests.

The tests start the real ntp-server and ntp-client binaries with real config
files, drive them over loopback and read their logs. Python 3 standard
library only.

Environment:
  NTP_BIN_DIR          directory holding ntp-server and ntp-client
                       (default: <repo>/build/bin)
  NTP_E2E_LOG_LEVEL    log level written into every config (default: debug,
                       so the token-leak check also covers debug lines)
  NTP_E2E_KEEP         keep each test's temp dir (configs, logs) when set
  NTP_E2E_LOG_LINES    how many log lines to print per daemon on failure
"""

import ctypes
import datetime
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("NTP_BIN_DIR") or REPO_ROOT / "build" / "bin")
SERVER_BIN = BIN_DIR / "ntp-server"
CLIENT_BIN = BIN_DIR / "ntp-client"
LOG_LEVEL = os.environ.get("NTP_E2E_LOG_LEVEL", "debug")
KEEP_TMP = bool(os.environ.get("NTP_E2E_KEEP"))
LOG_LINES_ON_FAILURE = int(os.environ.get("NTP_E2E_LOG_LINES", "120"))

# ---------------------------------------------------------------------------
# Bounds promised by DESIGN.md / protocol.md, and the daemon constant each is.
HANDSHAKE_TIMEOUT_S = 5.0   # prefix to welcome/data_ok (kHandshakeTimeout, include/ntp/frame.hpp)
GRACE_S = 3.0               # SIGTERM grace for live streams (kShutdownGrace, ntp/daemon.hpp)
FORCED_EXIT_S = 5.0         # after the grace, what still runs is stopped this much later
                            # (run_until_signalled, src/common/daemon.cpp)
RECONNECT_S = 15.0          # a client is back within ~15 s of its server
PROBE_S = 2.0               # old session must answer the probe (kProbeLimit, common_server.hpp)
DATA_WAIT_S = 10.0          # a user waits this long for a data connection (kDataWait,
                            # src/server/app_server.cpp)
LOCAL_CONNECT_TIMEOUT_S = 5.0  # the client's connect to its local app (kLocalConnectTimeout,
                               # src/client/local_app.hpp)
DATA_POOL_SIZE = 8          # idle data connections the server keeps (kDataPoolSize,
                            # include/ntp/message.hpp); the client's pool is as big
HEARTBEAT_TIMEOUT_DEFAULT_S = 30  # heartbeat_timeout_s default (include/ntp/config.hpp)
LOGIN_FIRST_DELAY_S = 1     # a source's wait after its first failed login, doubled per
                            # failure (LoginThrottle::kFirstDelay, src/server/login_throttle.hpp)
BACKOFF_CAP_S = 10.0        # the client's longest reconnect delay (Backoff, src/client/backoff.hpp)
REJECT_LOG_BURST = 20       # "rejected" lines per window (reject_log_,
REJECT_LOG_PERIOD_S = 10.0  # src/server/common_server.hpp)
FRAME_CAP = 65536
MIN_TOKEN_LENGTH = 16       # the shortest token any daemon accepts (kMinTokenLength,
                            # include/ntp/config.hpp)
GENERATED_TOKEN_HEX = 2 * 24  # --gen-token and the stored token: kGeneratedTokenBytes
                              # (include/ntp/auth.hpp) random bytes, hex
USER_LOG_BURST = 200        # lines about one app's users per window (AppServer::Users::log,
USER_LOG_PERIOD_S = 10.0    # RateLimit{200, 10 s}, src/server/app_server.hpp)
LOGGED_PEER_TEXT = 200      # bytes of peer-chosen text shown in a log line (kLoggedPeerText,
                            # include/ntp/logging.hpp)

# "Closed at once" is told apart from "closed by the timer a bug would leave it
# to" by half that timer: the other half is room for a loaded machine.
# Garbage, or a handshake the server refused, would otherwise be held until the
# handshake deadline.
GARBAGE_CLOSE_S = HANDSHAKE_TIMEOUT_S / 2
# A user of an unreachable local app: a client that did not take the refusal as
# the answer would give up at its local connect timeout at the earliest.
LOCAL_DOWN_CLOSE_S = LOCAL_CONNECT_TIMEOUT_S / 2
# A connection still in its handshake is closed HANDSHAKE_TIMEOUT_S after the
# server accepted it, which a loaded server may do a while after the test's
# connect() returned. One the deadline misses stays open for good, so a second
# deadline's worth of waiting tells the two apart.
HANDSHAKE_CLOSE_S = 2 * HANDSHAKE_TIMEOUT_S

# Generous bound for things that have no contract number but take a few
# milliseconds when all is well (start-up, login, one echo).
STEP_S = 10.0

# ---------------------------------------------------------------------------
# Log lines, all in one place. Templates: "{name}" is replaced by the
# re.escape()d value (see rx()); keep literal braces out of the templates.
# Matched with re.search, line by line ('.' never crosses a newline).
LOG_SERVER_READY = r"listening on \S*:{port}\b"
LOG_SERVER_GENERATED = r"\bgenerated token\b"
LOG_SERVER_TOKEN_IGNORED = r"(?i)(token.*ignor|ignor.*token)"
LOG_SERVER_APP_LISTENING = r"group={group} app={app} port={port}: listening"
LOG_SERVER_LOGIN = r"group={group}: logged in from 127\.0\.0\.1:\d+"
LOG_SERVER_USER = r"group={group} app={app} conn=(?P<conn>\d+): user 127\.0\.0\.1:\d+ connected"
LOG_SERVER_AUTH_FAILED = r"group={group}\b.*authentication failed"
LOG_SERVER_USER_FAILED = r"group={group} app={app} conn=\d+\b.*(refused|fail|error|unreachable)"
LOG_SERVER_SESSION_TIMEOUT = r"group={group}\b.*(heartbeat|timed out|timeout)"
LOG_SERVER_REJECTED = r"rejected"
LOG_CLIENT_LOGIN = r"group={group}: logged in to \S*:{port}\b"
LOG_CLIENT_LOGIN_FAILED = r"group={group}\b.*(fail|refused|rejected|denied|unauthori)"
LOG_CLIENT_APP = r"group={group} app={app}: (?:remote port (?P<port>\d+)|not registered: (?P<reason>.*))"
LOG_CLIENT_ALREADY = r"group={group}\b.*already logged in"
LOG_CLIENT_LOCAL_REFUSED = r"group={group} app={app} conn=\d+\b.*refused"
LOG_CLIENT_RETRY = r"group={group}: .*; reconnecting in \d"
# Debug level: set "log_level": "debug" where a test counts them.
LOG_SERVER_STREAM_OPEN = r"(?m)group={group} app={app} conn=\d+: stream open$"
LOG_STREAM_CLOSED = r"group={group} app={app} conn=\d+: stream closed\b"  # both daemons
LOG_SERVER_DATA_CONN = r"group={group}: data connection from "
# The last line of a daemon's shutdown, and the one it logs instead when its
# last resort had to stop the loop (src/common/daemon.cpp).
LOG_STOPPED = r"(?m)\binfo\s+stopped$"
LOG_FORCED_EXIT = r"stopped: something was still running"

# A token under MIN_TOKEN_LENGTH: `where` names its source ("NTP_TOKEN", "--token",
# "FILE: token", "FILE: groups.NAME.token", "FILE: token_file PATH", the stored
# token's file), never the token (token_problem, src/common/config.cpp).
LOG_SHORT_TOKEN = (r"(?m){where}: expected at least {min} characters "
                   r"\(ntp-server --gen-token makes one\), got {length}$")
# A file holding a secret that other users can read (exposure_warning,
# src/common/daemon.cpp); `who` is o, g or go.
LOG_EXPOSED = (r"(?m){file} holds a secret and other users can read it \(mode {mode}\): "
               r"chmod {who}-rwx {file}$")
LOG_EXPOSED_ANY = r"holds a secret and other users can read it"
LOG_TOKEN_ON_CMDLINE = (r"--token: other local users can read a token given on the command "
                        r"line \(ps, /proc/PID/cmdline\)")
LOG_CLIENT_STARTING = r"ntp-client \S+ starting: group {group}, "
# One line about a user of an app (AppServer::Users::note), with the count of
# those the rate limit dropped before it, if any.
LOG_SERVER_USER_LINE = (r"(?m)group={group} app={app} conn=(?P<conn>\d+): "
                        r"(?:user \S+ connected|closing user \S+: .*?)"
                        r"(?: \((?P<dropped>\d+) more lines about users not logged\))?$")

# Reasons in "not registered: <reason>".
REASON_TAKEN = r"taken"
REASON_NOT_ALLOWED = r"not allowed"
REASON_DUPLICATE = r"duplicate"

# -- udp apps (src/server/udp_app_server.cpp, src/client/udp_flow.cpp) --
UDP_MAX_DATAGRAM = 65507       # the largest datagram either daemon carries
                               # (UdpAppServer::kMaxDatagram, kMaxDatagram in udp_flow.cpp)
UDP_QUEUE_DATAGRAMS = 256      # a flow's queue towards the client, in datagrams
UDP_QUEUE_BYTES = 1024 * 1024  # and in bytes (UdpAppServer::kQueueDatagrams/kQueueBytes)
UDP_IDLE_DEFAULT_S = 60        # udp_idle_s default (LocalApp, include/ntp/config.hpp)
FLOW_DROP_LOG_PERIOD_S = 10.0  # one "dropping datagrams" line per window per app
                               # (UdpAppServer::drop_log_, RateLimit{1, 10 s})
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # HAProxy's spec (kSignature, proxy_protocol.cpp)
MAX_PORT_RANGE = 1000          # ports one "first-last" remote_port may span (kMaxPortRange,
                               # include/ntp/config.hpp)

# "user" is the user's address:port as the server saw it.
LOG_SERVER_FLOW_STARTED = (r"group={group} app={app} conn=(?P<conn>\d+): "
                           r"flow from (?P<user>\S+) started")
# Debug level, on flow end; WHY is "idle for N s", "the client closed the flow", ...
LOG_SERVER_FLOW_CLOSED = (r"(?m)group={group} app={app} conn=(?P<conn>\d+): flow from (?P<user>\S+) "
                          r"closed after (?P<secs>[\d.]+) s \((?P<why>[^)]*)\), (?P<inn>\d+) "
                          r"datagrams in, (?P<out>\d+) out, (?P<dropped>\d+) dropped$")
LOG_CLIENT_FLOW_OPEN = (r"group={group} app={app} conn=(?P<conn>\d+): flow open to udp \S+ "
                        r"for user (?P<user>\S+)")
LOG_CLIENT_FLOW_CLOSED = (r"(?m)group={group} app={app} conn=(?P<conn>\d+): flow closed after "
                          r"(?P<secs>[\d.]+) s, (?P<inn>\d+) datagrams in, (?P<out>\d+) out, "
                          r"(?P<dropped>\d+) dropped$")
# Warning, RateLimit{1, 10 s}: a line after the first of a window counts those before it.
LOG_SERVER_FLOWS_FULL = (r"(?m)group={group} app={app} port={port}: dropping datagrams from "
                         r"(?P<user>\S+): max_flows \({max}\) flows are open"
                         r"(?: \((?P<more>\d+) more dropped since\))?$")

MAGIC = b"NTPT\x01"


def rx(template, **values):
    """Compile a log template with its {placeholders} filled in literally."""
    escaped = {k: re.escape(str(v)) for k, v in values.items()}
    return re.compile(template.format(**escaped))


def log_time(match):
    """The daemon's own timestamp of the log line `match` is on, in seconds (for
    differences only): a duration between two lines of one daemon owes nothing
    to how soon the test got round to reading them."""
    text = match.string
    start = text.rfind("\n", 0, match.start()) + 1
    stamp = datetime.datetime.strptime(text[start:start + 23], "%Y-%m-%d %H:%M:%S.%f")
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()  # no DST step


# ---------------------------------------------------------------------------
# Waiting


def wait_until(predicate, timeout, what, interval=0.02):
    """Poll predicate until it returns something truthy; fail saying `what`
    (a string, or a callable giving one) did not happen within `timeout`
    seconds. Returns the truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s: {what() if callable(what) else what}")
        time.sleep(interval)


def wait_log(daemon, pattern, timeout=STEP_S, since=0):
    return daemon.wait_log(pattern, timeout=timeout, since=since)


# ---------------------------------------------------------------------------
# Ports and sockets

_handed_out = set()
_port_lock = threading.Lock()


def _bindable(port):
    """Free for tcp and for udp (udp apps, and a tcp and a udp app on one port)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port():
    """A port nobody listens on right now.

    Picked below the kernel's ephemeral range (32768-60999 by default) and
    checked by binding it, so the hundreds of outgoing connections the tests
    make cannot grab it between now and the daemon binding it (which a port
    from bind(0) is exposed to). Never hands out the same port twice."""
    rng = random.SystemRandom()
    with _port_lock:
        for _ in range(500):
            port = rng.randrange(20000, 32000)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        _handed_out.add(port)
        return port


def free_port_range(count):
    """`count` consecutive free ports; returns the first."""
    rng = random.SystemRandom()
    with _port_lock:
        for _ in range(500):
            base = rng.randrange(20000, 32000 - count)
            block = range(base, base + count)
            if not any(p in _handed_out for p in block) and all(map(_bindable, block)):
                _handed_out.update(block)
                return base
    raise AssertionError(f"no block of {count} free ports found")


def hold_port(port, host="127.0.0.1"):
    """A listening socket on host:port, as another process would hold it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, port))
    s.listen(16)
    return s


def connect(port, timeout=STEP_S, host="127.0.0.1", source=None):
    """`source`: connect from that loopback address ("127.0.0.2"), another host
    as far as the server's per-source login backoff can tell."""
    s = socket.create_connection((host, port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def is_refused(port, host="127.0.0.1"):
    """True when nothing accepts on host:port (connect refused)."""
    try:
        s = socket.create_connection((host, port), timeout=1.0)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def is_open(port, host="127.0.0.1"):
    try:
        s = socket.create_connection((host, port), timeout=1.0)
    except OSError:
        return False
    s.close()
    return True


def wait_port_open(port, timeout=STEP_S, host="127.0.0.1"):
    wait_until(lambda: is_open(port, host), timeout,
               f"{host}:{port} accepts connections", interval=0.05)


def wait_port_refused(port, timeout=STEP_S, host="127.0.0.1"):
    """Polls every 100 ms: each probe that still connects is a (short) user
    connection for the daemon, so keep them few."""
    wait_until(lambda: is_refused(port, host), timeout,
               f"{host}:{port} refuses connections", interval=0.1)


def recv_exact(sock, n, timeout=STEP_S):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {len(buf)} of {n} bytes within {timeout:.1f} s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def closed_now(sock):
    """Reads what `sock` holds without waiting, discarding it: True when the peer
    has closed it (EOF or reset). The socket is left non-blocking."""
    sock.setblocking(False)
    while True:
        try:
            if not sock.recv(65536):
                return True
        except BlockingIOError:
            return False
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return True


def wait_closed(sock, timeout, what="connection"):
    """Wait until the peer closes `sock` (EOF or reset), discarding any bytes
    that arrive first. Returns the seconds it took; fails after `timeout`. Reads
    at least once, so with a budget already spent (zero or less) a close that has
    come is still seen."""
    start = time.monotonic()
    deadline = start + timeout
    previous = sock.gettimeout()
    try:
        while True:
            remaining = deadline - time.monotonic()
            select.select([sock], [], [], min(max(remaining, 0.0), 0.2))
            if closed_now(sock):
                return time.monotonic() - start
            if remaining <= 0:
                raise AssertionError(f"{what} still open after {max(timeout, 0.0):.1f} s")
    finally:
        try:
            sock.settimeout(previous)
        except OSError:
            pass


def exchange(port, data, timeout=STEP_S, host="127.0.0.1"):
    """Connect as a user, send `data`, shut down writing and read until EOF.
    Sending runs in its own thread so a large payload cannot deadlock."""
    sock = connect(port, timeout=timeout, host=host)
    try:
        return exchange_on(sock, data, timeout)
    finally:
        sock.close()


def exchange_on(sock, data, timeout=STEP_S):
    got = bytearray()
    _pump_through(sock, [data], got.extend, timeout)
    return bytes(got)


def _pump_through(sock, chunks, on_recv, timeout):
    """Send every chunk from the iterable `chunks` (in a thread), shut down
    writing, and feed everything received until EOF to on_recv. Fails if EOF
    does not come within `timeout` seconds."""
    errors = []
    sock.settimeout(timeout)  # bounds the sender's sendall as a whole

    def send():
        try:
            for chunk in chunks:
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.monotonic() + timeout
    received = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no EOF within {timeout:.1f} s (received {received} bytes)")
        ready, _, _ = select.select([sock], [], [], min(remaining, 0.2))
        if not ready:
            continue
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        received += len(chunk)
        on_recv(chunk)
    sender.join(timeout=max(0.1, deadline - time.monotonic()))
    if sender.is_alive():
        raise AssertionError("EOF received while still sending")
    if errors:
        raise AssertionError(f"sending failed: {errors[0]!r}")


def stream_sha256(port, total, chunk_size=1 << 20, timeout=60.0):
    """Send `total` random bytes as a user, shut down writing, read the echo
    until EOF. Returns (sha256 sent, sha256 received, bytes received)."""
    sent_hash, recv_hash = hashlib.sha256(), hashlib.sha256()
    received = [0]

    def chunks():
        left = total
        while left:
            block = os.urandom(min(chunk_size, left))
            sent_hash.update(block)
            left -= len(block)
            yield block

    def on_recv(data):
        recv_hash.update(data)
        received[0] += len(data)

    sock = connect(port, timeout=timeout)
    try:
        _pump_through(sock, chunks(), on_recv, timeout)
    finally:
        sock.close()
    return sent_hash.hexdigest(), recv_hash.hexdigest(), received[0]


def roundtrip(sock, data, timeout=STEP_S):
    """On an open stream: send `data`, read exactly len(data) bytes back."""
    sock.settimeout(timeout)
    sock.sendall(data)
    return recv_exact(sock, len(data), timeout)


# ---------------------------------------------------------------------------
# Wire protocol helpers (raw sockets on the bind port)


def frame(obj):
    body = json.dumps(obj).encode()
    return len(body).to_bytes(4, "big") + body


def send_frame(sock, obj):
    sock.sendall(frame(obj))


def recv_frame(sock, timeout=STEP_S):
    length = int.from_bytes(recv_exact(sock, 4, timeout), "big")
    if length > FRAME_CAP:
        raise AssertionError(f"frame length {length} above the {FRAME_CAP} cap")
    return json.loads(recv_exact(sock, length, timeout))


def proof(key, *parts):
    """HMAC-SHA256 over the parts joined by '\\n', hex (protocol.md). The last
    part is the channel binding: "" over plain TCP."""
    if isinstance(key, str):
        key = key.encode()
    return hmac.new(key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------
# Local apps


class EchoServer:
    """Threaded TCP echo server on 127.0.0.1.

    Sends `prefix` first (so tests can tell apps apart), then echoes every
    byte. When the peer shuts down writing it finishes echoing, shuts down its
    own write side and closes (half-close)."""

    def __init__(self, prefix=b"", port=0):
        self.prefix = prefix
        self.sock = socket.create_server(("127.0.0.1", port), backlog=1024)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._conns = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._stopping:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.1)
                if not ready:
                    continue
                conn, _ = self.sock.accept()
            except (OSError, ValueError):
                return
            with self._lock:
                if self._stopping:
                    conn.close()
                    return
                self.accepted += 1
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.prefix:
                conn.sendall(self.prefix)
            while True:
                data = conn.recv(262144)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self):
        with self._lock:
            self._stopping = True
            conns = list(self._conns)
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)


class RecordingProxy:
    """TCP forwarder that records the bytes each connection's client sent.
    Subclasses may wrap each side (`_open`), e.g. a man in the middle."""

    half_close = True  # pass a FIN on; False: end both ways at the first end

    def __init__(self, target_port):
        self.target_port = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sent = []  # one bytearray per accepted connection, in order
        self._socks = []
        self._stopping = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while not self._stopping:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.1)
                if not ready:
                    continue
                raw, _ = self.sock.accept()
            except (OSError, ValueError):
                if self._stopping:
                    return
                continue
            try:
                down, up = self._open(raw)
            except OSError:  # ssl.SSLError is an OSError
                raw.close()
                continue
            record = bytearray()
            self.sent.append(record)
            self._socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up, record), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, None), daemon=True).start()

    def _open(self, raw):
        """(the accepted side, the side towards the target) for one connection."""
        return raw, socket.create_connection(("127.0.0.1", self.target_port))

    def _pump(self, src, dst, record):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    if self.half_close:
                        dst.shutdown(socket.SHUT_WR)
                        return
                    break
                if record is not None:
                    record += data
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._stopping = True
        self.sock.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# UDP


UDP_BUFFER = 4 * 1024 * 1024  # the tests' own udp sockets: room for bursts of big datagrams


def set_udp_buffers(sock, size=UDP_BUFFER):
    """Big receive and send buffers on a test's own socket, so that the kernel
    drops nothing on the tests' side of a burst (SO_RCVBUFFORCE as root, else
    up to net.core.rmem_max)."""
    for force, plain in ((getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF),
                         (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


def udp_socket(source="127.0.0.1", port=0, connect_to=None):
    """A udp socket bound to source:port (a user at that address), connected
    to `connect_to` ((host, port)) if given."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    set_udp_buffers(s)
    s.bind((source, port))
    if connect_to is not None:
        s.connect(connect_to)
    return s


def udp_recv(sock, timeout=STEP_S, size=65535):
    """One datagram (and its sender) from `sock` within `timeout` seconds."""
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        raise AssertionError(f"no datagram within {timeout:.1f} s on {sock.getsockname()}")
    return sock.recvfrom(size)


def udp_request(sock, data, timeout=STEP_S):
    """On a connected udp socket: send `data`, return the first datagram back."""
    sock.send(data)
    return udp_recv(sock, timeout)[0]


def kernel_udp_sockets(local_port=None, remote_port=None):
    """The kernel's view of the udp sockets of this network namespace (every
    process's: the daemons' too), from /proc/net/udp and udp6: dicts with
    local_port, remote_port, rx_queue (bytes waiting to be read) and drops
    (datagrams the kernel dropped because the socket's buffer was full)."""
    out = []
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            entry = {"local_port": int(f[1].rsplit(":", 1)[1], 16),
                     "remote_port": int(f[2].rsplit(":", 1)[1], 16),
                     "rx_queue": int(f[4].split(":")[1], 16),
                     "drops": int(f[12])}
            if local_port is not None and entry["local_port"] != local_port:
                continue
            if remote_port is not None and entry["remote_port"] != remote_port:
                continue
            out.append(entry)
    return out


def kernel_drops(local_port=None, remote_port=None):
    return sum(e["drops"] for e in kernel_udp_sockets(local_port, remote_port))


class UdpEchoServer:
    """Threaded udp echo server: answers each datagram, to its sender, with
    `prefix` + the datagram, or with handler(data, sender) when given (None: no
    answer; an exception is recorded in `errors` and the datagram not answered)."""

    def __init__(self, prefix=b"", host="127.0.0.1", port=0, handler=None):
        self.prefix = prefix
        self.handler = handler
        self.sock = udp_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.senders = set()
        self.errors = []
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stopping:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.1)
                if not ready:
                    continue
                data, sender = self.sock.recvfrom(65535)
            except (OSError, ValueError):
                if self._stopping:
                    return
                continue  # an ICMP error from an earlier answer
            self.received += 1
            self.senders.add(sender)
            try:
                reply = self.handler(data, sender) if self.handler else self.prefix + data
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(e)
                continue
            if reply is not None:
                try:
                    self.sock.sendto(reply, sender)
                except OSError:
                    pass

    def close(self):
        self._stopping = True
        self._thread.join(timeout=2)
        self.sock.close()


# ---------------------------------------------------------------------------
# Real programs behind the tunnel (Debian packages: scripts/deps.sh installs them)


def require_program(path, package):
    """Fail (not skip) when a program the test runs is not installed."""
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{path} not found: install the Debian package {package} "
                             f"(scripts/deps.sh installs it for scripts/test.sh)")
    return str(path)


# ---------------------------------------------------------------------------
# Daemons


def _die_with_parent():
    # If the test runner is killed (CTest timeout), take the daemon with it.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Daemon:
    """One running ntp-server or ntp-client; stderr goes to a log file."""

    def __init__(self, name, argv, env, workdir):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = workdir / f"{name}.log"
        self.out_path = workdir / f"{name}.stdout"
        self._err = open(self.log_path, "wb")
        self._out = open(self.out_path, "wb")
        self.expected_exit = False
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
            env=env, cwd=workdir, preexec_fn=_die_with_parent)
        self.pid = self.proc.pid

    def __repr__(self):
        return f"<{self.name} pid={self.pid}>"

    # -- logs --
    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def mark(self):
        """Offset for wait_log(since=...): only lines logged from now on."""
        return len(self.log())

    def find(self, pattern, since=0):
        if isinstance(pattern, str):
            pattern = re.compile(pattern)
        return pattern.search(self.log()[since:])

    def findall(self, pattern, since=0):
        if isinstance(pattern, str):
            pattern = re.compile(pattern)
        return list(pattern.finditer(self.log()[since:]))

    def count(self, pattern, since=0):
        return len(self.findall(pattern, since))

    def tail(self, lines=LOG_LINES_ON_FAILURE):
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_log(self, pattern, timeout=STEP_S, since=0, count=1):
        """Wait until `pattern` matched `count` times in the log after
        `since`; returns the last match. Fails at once if the daemon exited
        without logging it."""
        if isinstance(pattern, str):
            pattern = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            found = self.findall(pattern, since)
            if len(found) >= count:
                return found[count - 1]
            if exited:
                raise AssertionError(
                    f"{self.name} exited with code {self.proc.returncode} before logging "
                    f"/{pattern.pattern}/ (x{count}); log tail:\n{self.tail(30)}")
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.name} did not log /{pattern.pattern}/ (x{count}, got {len(found)}) "
                    f"within {timeout:.1f} s; log tail:\n{self.tail(30)}")
            time.sleep(0.02)

    # -- process --
    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Wait for the process to exit by itself; returns its exit code."""
        self.expected_exit = True
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running {timeout:.1f} s later; "
                                 f"log tail:\n{self.tail(30)}") from None

    def stop(self, sig=signal.SIGTERM, timeout=GRACE_S + 2):
        """Send `sig` and return the exit code (fails if it does not exit)."""
        self.expected_exit = True
        self.send_signal(sig)
        return self.wait_exit(timeout)

    def kill(self):
        self.expected_exit = True
        if self.alive():
            self.proc.kill()
        return self.proc.wait(timeout=5)

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cleanup(self):
        """Stop whatever is left: SIGCONT, SIGTERM, then SIGKILL."""
        note = None
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=GRACE_S + 2)
            except subprocess.TimeoutExpired:
                note = f"{self.name}: no exit {GRACE_S + 2:.0f} s after SIGTERM, SIGKILLed"
                self.proc.kill()
                self.proc.wait(timeout=5)
        elif not self.expected_exit:
            note = f"{self.name} exited on its own with code {self.proc.returncode}"
        self._err.close()
        self._out.close()
        return note


def app(name, local_port, remote_port, **extra):
    entry = {"name": name, "local": f"127.0.0.1:{local_port}", "remote_port": remote_port}
    entry.update(extra)
    return entry


def udp_app(name, local_port, remote_port, **extra):
    return app(name, local_port, remote_port, type="udp", **extra)


def make_token(label="tok"):
    return f"{label}-{secrets.token_hex(16)}"


# ---------------------------------------------------------------------------
# Test case base


class TunnelTestCase(unittest.TestCase):
    """Base class: a temp dir per test, daemons and echo servers that are
    always cleaned up, logs printed when the test fails, and a check that no
    token ever shows up in a log."""

    @classmethod
    def setUpClass(cls):
        missing = [str(p) for p in (SERVER_BIN, CLIENT_BIN) if not os.access(p, os.X_OK)]
        if missing:
            raise AssertionError(
                f"binaries not found: {', '.join(missing)} (build first, or set NTP_BIN_DIR)")

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ntp-e2e-{self._testMethodName}-"))
        self.daemons = []
        self.secrets = set()
        self._names = {}
        self.addCleanup(self._stop_daemons)

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            failed = len(result.failures) + len(result.errors) > before
            if failed:
                self._dump_logs()
            tmp = getattr(self, "tmp", None)
            if tmp is not None:
                if KEEP_TMP or failed:
                    sys.stderr.write(f"\n[e2e] files kept in {tmp}\n")
                else:
                    shutil.rmtree(tmp, ignore_errors=True)

    def _dump_logs(self):
        for d in getattr(self, "daemons", []):
            sys.stderr.write(
                f"\n----- {d.name} (pid {d.pid}, rc {d.proc.returncode}) "
                f"{' '.join(d.argv)}\n{d.tail()}\n")
        sys.stderr.flush()

    def _stop_daemons(self):
        notes = [n for n in (d.cleanup() for d in self.daemons) if n]
        leaks = []
        generated = re.compile(LOG_SERVER_GENERATED)
        for d in self.daemons:
            for line in d.log().splitlines() + d.stdout().splitlines():
                if generated.search(line):
                    continue  # the one line allowed to show a (generated) token
                for s in self.secrets:
                    if s in line:
                        leaks.append(f"{d.name} logged a token: {line.strip()[:200]}")
        problems = notes + leaks
        if problems:
            raise AssertionError("\n".join(problems))

    # -- files and env --
    def _unique(self, base):
        n = self._names.get(base, 0) + 1
        self._names[base] = n
        return base if n == 1 else f"{base}-{n}"

    @staticmethod
    def _protect(path, mode, gid):
        if gid is not None:
            os.chown(path, -1, gid)
        if mode is not None:
            path.chmod(mode)  # after chown, which may clear set-id bits
        return path

    def write_json(self, name, obj, mode=None, gid=None):
        """`mode`, `gid`: set on the file (default: as the umask makes it)."""
        path = self.tmp / name
        path.write_text(json.dumps(obj, indent=2))
        return self._protect(path, mode, gid)

    def write_file(self, name, text, mode=0o600, gid=None):
        path = self.tmp / name
        path.write_text(text)
        return self._protect(path, mode, gid)

    def token(self, label="tok"):
        t = make_token(label)
        self.secrets.add(t)
        return t

    def env(self, home, extra=None):
        env = dict(os.environ)
        for k in ("NTP_TOKEN", "STATE_DIRECTORY"):
            env.pop(k, None)
        env["HOME"] = str(home)
        home.mkdir(parents=True, exist_ok=True)
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        if env.get("NTP_TOKEN"):
            self.secrets.add(env["NTP_TOKEN"])
        return env

    # -- local apps --
    def echo_server(self, prefix=b"", port=0):
        echo = EchoServer(prefix, port)
        self.addCleanup(echo.close)
        return echo

    def udp_echo_server(self, prefix=b"", host="127.0.0.1", port=0, handler=None):
        echo = UdpEchoServer(prefix, host, port, handler)
        self.addCleanup(echo.close)
        return echo

    def start_program(self, name, argv, package):
        """A real program (dnsmasq, nginx, socat) run as a user would, its
        stdout and stderr in <name>.log and <name>.stdout, stopped (SIGTERM)
        when the test ends and shown with the daemons' logs when it fails."""
        require_program(argv[0], package)
        d = Daemon(self._unique(name), argv, self.env(self.tmp / f"{name}-home"), self.tmp)
        self.daemons.append(d)
        return d

    # -- configs --
    def server_config(self, **keys):
        cfg = {
            "bind": f"127.0.0.1:{free_port()}",
            "token": self.token("server"),
            "proxy_bind_addr": "127.0.0.1",
            "log_level": LOG_LEVEL,
        }
        cfg.update(keys)
        return {k: v for k, v in cfg.items() if v is not None}

    def client_config(self, server, apps, group="home", token=None, **keys):
        """server: a Daemon (its bind port is used) or a port number."""
        port = server.bind_port if isinstance(server, Daemon) else server
        if token is None and isinstance(server, Daemon):
            token = server.token
        cfg = {
            "server": f"127.0.0.1:{port}",
            "group": group,
            "token": token,
            "apps": apps,
            "log_level": LOG_LEVEL,
        }
        cfg.update(keys)
        return {k: v for k, v in cfg.items() if v is not None}

    # -- daemons --
    def start_server(self, config=None, args=(), env=None, name="server", wait_ready=True,
                     config_mode=None, config_gid=None):
        """Start ntp-server with `config` written to <name>.json (if given, with
        config_mode and config_gid if given) plus `args`; waits for its
        "listening on" line unless told not to."""
        name = self._unique(name)
        argv = [SERVER_BIN]
        if config is not None:
            argv += ["-c", self.write_json(f"{name}.json", config, config_mode, config_gid)]
            if config.get("token"):
                self.secrets.add(config["token"])
            for g in (config.get("groups") or {}).values():
                if isinstance(g, dict) and g.get("token"):
                    self.secrets.add(g["token"])
        args = [str(a) for a in args]
        argv += args
        if "--token" in args:
            self.secrets.add(args[args.index("--token") + 1])
        d = Daemon(name, argv, self.env(self.tmp / f"{name}-home", env), self.tmp)
        self.daemons.append(d)
        bind = (config or {}).get("bind", "0.0.0.0:7000")
        if "--bind" in args:
            bind = args[args.index("--bind") + 1]
        d.bind_port = int(bind.rsplit(":", 1)[1])
        d.config = config
        d.token = (config or {}).get("token")
        if "--token" in args:
            d.token = args[args.index("--token") + 1]
        if wait_ready:
            d.wait_log(rx(LOG_SERVER_READY, port=d.bind_port))
        return d

    def start_client(self, config, args=(), env=None, name="client", config_mode=None,
                     config_gid=None):
        name = self._unique(name)
        if config.get("token"):
            self.secrets.add(config["token"])
        argv = [CLIENT_BIN, "-c", self.write_json(f"{name}.json", config, config_mode,
                                                  config_gid)] + list(args)
        d = Daemon(name, argv, self.env(self.tmp / f"{name}-home", env), self.tmp)
        d.config = config
        d.group = config.get("group")
        self.daemons.append(d)
        return d

    def run_binary(self, binary, args, env=None, timeout=STEP_S, home="cli-home"):
        """Run a binary to completion (--help, --check, ...)."""
        return subprocess.run(
            [str(binary)] + [str(a) for a in args], stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, cwd=self.tmp,
            env=self.env(self.tmp / home, env))

    # -- waiting on daemons --
    def wait_login(self, client, since=0, timeout=STEP_S, count=1):
        port = int(client.config.get("server", ":0").rsplit(":", 1)[1])
        return client.wait_log(rx(LOG_CLIENT_LOGIN, group=client.group, port=port),
                               timeout=timeout, since=since, count=count)

    def _app_result(self, client, name, since, timeout):
        return client.wait_log(rx(LOG_CLIENT_APP, group=client.group, app=name),
                               timeout=timeout, since=since)

    def wait_app(self, client, name, since=0, timeout=STEP_S):
        """Wait for the client's result line for app `name`; it must say the
        app got a remote port. Returns that port."""
        m = self._app_result(client, name, since, timeout)
        if m.group("port") is None:
            raise AssertionError(f"{client.name}: app {name} not registered: {m.group('reason')}")
        return int(m.group("port"))

    def wait_app_refused(self, client, name, reason, since=0, timeout=STEP_S):
        """Wait for the client's result line for app `name`; it must say the
        app was not registered, for a reason matching `reason`."""
        m = self._app_result(client, name, since, timeout)
        if m.group("port") is not None:
            raise AssertionError(
                f"{client.name}: app {name} got port {m.group('port')}, expected refusal ({reason})")
        self.assertRegex(m.group("reason"), reason)
        return m.group("reason")

    def start_tunnel(self, apps, server_config=None, client_keys=None, **client_kw):
        """Server (open mode unless server_config says otherwise) + client
        with `apps`; waits until every app reported a remote port.
        Returns (server, client, {app name: remote port})."""
        server = self.start_server(server_config or self.server_config())
        client = self.start_client(
            self.client_config(server, apps, **(client_keys or {}), **client_kw))
        self.wait_login(client)
        ports = {a["name"]: self.wait_app(client, a["name"]) for a in apps}
        return server, client, ports

    def assert_echo(self, port, data=None, prefix=b"", timeout=STEP_S):
        data = os.urandom(1024) if data is None else data
        got = exchange(port, data, timeout)
        self.assertEqual(len(got), len(prefix) + len(data), "echo length differs")
        self.assertEqual(got, prefix + data, "echo content differs")
