"""What a socket on the bind port sees (docs/protocol.md): garbage closed at
once, wrong version answered, silent peers timed out, the login and data
handshakes proven, recorded handshakes not replayable."""

import json
import os
import re
import secrets
import select
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SILENT_PEERS = 200


# A log line a peer would like to forge, in the daemon's own format (a date in
# the past, so a line that got through is told from a real one).
FORGED = "1999-12-31 23:59:59.999 info  group=forged: logged in from 127.0.0.1:4242 over TLSv1.3"
LOG_LINE_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")


def log_safe(text):
    """What the server logs for peer-chosen `text` (log_safe, src/common/logging.cpp):
    its UTF-8 bytes with control characters, backslash and bytes past ASCII as
    \\xNN, cut at LOGGED_PEER_TEXT bytes with how many more there were."""
    raw = text.encode()
    shown = "".join(f"\\x{b:02x}" if b < 0x20 or b >= 0x7f or b == 0x5c else chr(b)
                    for b in raw[:h.LOGGED_PEER_TEXT])
    if len(raw) > h.LOGGED_PEER_TEXT:
        shown += f"... ({len(raw) - h.LOGGED_PEER_TEXT} more bytes)"
    return shown


def first_frame(data):
    """(frame bytes, parsed frame) of the first frame after the prefix."""
    if len(data) < 9 or data[:5] != h.MAGIC:
        return None, None
    n = int.from_bytes(data[5:9], "big")
    if len(data) < 9 + n:
        return None, None
    return bytes(data[5:9 + n]), json.loads(data[9:9 + n])


class WireTest(h.TunnelTestCase):
    # The wire format byte by byte, so plain TCP ("tls": false); test_tls.py
    # covers the same handshakes inside TLS.
    def server_config(self, **keys):
        return super().server_config(**{"tls": False, **keys})

    def client_config(self, server, apps, **keys):
        return super().client_config(server, apps, **{"tls": False, **keys})

    def setUp(self):
        super().setUp()
        self.server = self.start_server(self.server_config())
        self.bind = self.server.bind_port

    def assert_closed_fast(self, payload, what, bound=h.GARBAGE_CLOSE_S):
        with h.connect(self.bind) as s:
            s.sendall(payload)
            h.wait_closed(s, bound, what)

    def assert_refused_handshake(self, sock, what):
        """The server answers with an error frame or nothing, then closes."""
        try:
            frame = h.recv_frame(sock, timeout=h.HANDSHAKE_TIMEOUT_S + 1)
        except (AssertionError, ConnectionResetError):
            frame = None  # closed without a word
        if frame is not None:
            self.assertEqual(frame.get("type"), "error", f"{what}: got {frame}")
        h.wait_closed(sock, h.GARBAGE_CLOSE_S, what)  # at once, not at the handshake deadline

    def tunnel(self, server_port=None):
        echo = self.echo_server()
        remote = h.free_port()
        client = self.start_client(self.client_config(
            server_port or self.bind, [h.app("ssh", echo.port, remote)], token=self.server.token))
        self.wait_login(client)
        self.assertEqual(self.wait_app(client, "ssh"), remote)
        return client, remote

    # -- garbage --------------------------------------------------------

    def test_http_request_closed_at_once(self):
        self.assert_closed_fast(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP request")
        self.server.wait_log(h.LOG_SERVER_REJECTED)

    def test_random_bytes_closed_at_once(self):
        # Not 'N' (the magic) and not 0x16 (a future TLS ClientHello).
        first = bytes([secrets.choice([b for b in range(256) if b not in (0x4E, 0x16)])])
        self.assert_closed_fast(first + os.urandom(63), "random bytes")

    def test_wrong_magic_closed_without_waiting_for_five_bytes(self):
        self.assert_closed_fast(b"NTPX", "4 bytes with a wrong last magic byte")
        self.assert_closed_fast(b"X", "a single wrong byte")

    def test_wrong_version_gets_error_frame(self):
        with h.connect(self.bind) as s:
            s.sendall(b"NTPT\x02")
            start = time.monotonic()
            frame = h.recv_frame(s, timeout=h.GARBAGE_CLOSE_S)
            self.assertEqual(frame.get("type"), "error", frame)
            self.assertRegex(frame.get("message", ""), r"version.*\b1\b|\b1\b.*version",
                             "error should name the supported version")
            h.wait_closed(s, max(0.0, start + h.GARBAGE_CLOSE_S - time.monotonic()),
                          "connection after the version error")

    def test_rejections_are_logged_but_rate_limited(self):
        count = 100
        began = time.monotonic()
        for _ in range(count):
            self.assert_closed_fast(b"GET / HTTP/1.0\r\n\r\n", "HTTP request")
        elapsed = time.monotonic() - began
        # Each is logged before its close, so every line is in by now. reject_log_
        # lets REJECT_LOG_BURST through per window, and a new window opens no
        # sooner than REJECT_LOG_PERIOD_S after the last one did.
        windows = 1 + int(elapsed // h.REJECT_LOG_PERIOD_S)
        lines = self.server.count(h.LOG_SERVER_REJECTED)
        self.assertGreaterEqual(lines, min(count, h.REJECT_LOG_BURST),
                                "the first rejections of a window are logged")
        self.assertLessEqual(lines, h.REJECT_LOG_BURST * windows,
                             f"{count} rejections in {elapsed:.1f} s logged {lines} lines: "
                             f"above {h.REJECT_LOG_BURST} per {h.REJECT_LOG_PERIOD_S:.0f} s")

    # -- frames after the prefix -----------------------------------------

    def test_oversized_frame_closes(self):
        with h.connect(self.bind) as s:
            s.sendall(h.MAGIC)
            self.assertEqual(h.recv_frame(s)["type"], "challenge")
            s.sendall((h.FRAME_CAP + 1).to_bytes(4, "big") + b"{" * 1024)
            # At once, not after reading on to the handshake deadline.
            h.wait_closed(s, h.GARBAGE_CLOSE_S, "connection after a frame above the cap")

    def test_frame_that_is_not_a_json_object_closes(self):
        for body in (b"hello", b"[1,2,3]", b'{"no_type":1}'):
            with h.connect(self.bind) as s:
                s.sendall(h.MAGIC)
                self.assertEqual(h.recv_frame(s)["type"], "challenge")
                s.sendall(len(body).to_bytes(4, "big") + body)
                self.assert_refused_handshake(s, f"frame {body!r}")

    def test_silent_connections_do_not_block_login_and_time_out(self):
        silent, opened = [], {}
        self.addCleanup(lambda: [s.close() for s in silent])
        for i in range(SILENT_PEERS):
            s = h.connect(self.bind)
            if i % 2:
                s.sendall(h.MAGIC)  # half stop right after the prefix
            silent.append(s)
            opened[s] = time.monotonic()

        client, remote = self.tunnel()
        self.assert_echo(remote)
        # The tunnel came up while every silent connection still held its place:
        # login did not wait for them to be cut at their handshake deadline.
        cut = [s for s in silent if h.closed_now(s)]
        self.assertEqual(len(cut), 0, f"{len(cut)} silent connections were closed before the "
                                      "tunnel was up: login waited for their deadline")

        # Every one of them is closed by its handshake deadline, each counted
        # from its own connect (HANDSHAKE_CLOSE_S).
        pending = set(silent)
        while pending:
            ready, _, _ = select.select(list(pending), [], [], 0.2)
            now = time.monotonic()
            for s in list(pending):
                # Ready ones, and those past their deadline for a last look.
                if (s in ready or now >= opened[s] + h.HANDSHAKE_CLOSE_S) and h.closed_now(s):
                    pending.discard(s)
            late = [s for s in pending if now >= opened[s] + h.HANDSHAKE_CLOSE_S]
            if late:
                self.fail(f"{len(late)} of {SILENT_PEERS} silent connections still open "
                          f"{h.HANDSHAKE_CLOSE_S:.0f} s after they were opened")
        self.assert_echo(remote)

    def test_max_handshakes_drops_the_oldest_unauthenticated_connection(self):
        cap, extra = 20, 30
        server = self.server = self.start_server(self.server_config(max_handshakes=cap))
        self.bind = server.bind_port
        silent = [h.connect(self.bind) for _ in range(cap + extra)]
        self.addCleanup(lambda: [s.close() for s in silent])
        # The first `extra` make room for the later ones at once, long before the
        # 5 s handshake deadline; the newest `cap` stay open.
        for i, s in enumerate(silent[:extra]):
            h.wait_closed(s, h.GARBAGE_CLOSE_S, f"silent connection {i} (over max_handshakes)")
        server.wait_log(r"rejected the oldest unauthenticated connection from 127\.0\.0\.1: "
                        rf"max_handshakes \({cap}\) reached, and it holds the most")
        for s in silent[extra:]:
            s.setblocking(False)
            with self.assertRaises(BlockingIOError, msg="a connection within the cap was closed"):
                s.recv(1)
        client, remote = self.tunnel(server.bind_port)
        self.assert_echo(remote)

    # -- login ----------------------------------------------------------

    def raw_login(self, group, token):
        s = h.connect(self.bind)
        self.addCleanup(s.close)
        s.sendall(h.MAGIC)
        challenge = h.recv_frame(s)
        self.assertEqual(challenge.get("type"), "challenge", challenge)
        ns = challenge["nonce"]
        self.assertRegex(ns, r"^[0-9a-f]{64}$", "server nonce: 32 bytes, hex")
        nc = secrets.token_hex(32)
        h.send_frame(s, {"type": "login", "group": group, "nonce": nc,
                         "proof": h.proof(token, "ntp1 client", group, nc, ns, "")})
        return s, nc, ns

    def test_raw_login_register_ping_need_data(self):
        heartbeat_timeout_s = 7
        server = self.start_server(self.server_config(heartbeat_timeout_s=heartbeat_timeout_s))
        token = server.token
        self.bind = server.bind_port
        s, nc, ns = self.raw_login("raw", token)
        welcome = h.recv_frame(s)
        self.assertEqual(welcome.get("type"), "welcome", welcome)
        self.assertEqual(welcome.get("proof"), h.proof(token, "ntp1 server", "raw", nc, ns, ""),
                         "server proof")
        self.assertRegex(welcome.get("session", ""), r"^[0-9a-f]{32}$")
        self.assertEqual(welcome.get("heartbeat_timeout_s"), heartbeat_timeout_s)
        server.wait_log(h.rx(h.LOG_SERVER_LOGIN, group="raw"))

        remote = h.free_port()
        h.send_frame(s, {"type": "register", "apps": [{"name": "raw", "remote_port": remote},
                                                       {"name": "low", "remote_port": 80}]})
        registered = h.recv_frame(s)
        self.assertEqual(registered.get("type"), "registered", registered)
        apps = registered.get("apps", [])
        self.assertEqual([a.get("name") for a in apps], ["raw", "low"], registered)
        self.assertEqual(apps[0].get("remote_port"), remote, registered)
        self.assertIn("error", apps[1], registered)

        h.send_frame(s, {"type": "ping"})
        self.assertEqual(h.recv_frame(s).get("type"), "pong")

        with h.connect(remote):
            need = h.recv_frame(s)
            self.assertEqual(need.get("type"), "need_data", need)
            self.assertGreaterEqual(need.get("count", 0), 1, need)

        s.close()  # the session ends: its port is freed, not at the heartbeat timeout
        h.wait_port_refused(remote, timeout=heartbeat_timeout_s / 2)

    def test_raw_register_duplicate_name(self):
        # The client's config check forbids duplicate names, so only a raw
        # peer can send them: the server refuses the second, binds the first.
        s, nc, ns = self.raw_login("raw", self.server.token)
        self.assertEqual(h.recv_frame(s).get("type"), "welcome")
        first, second = h.free_port(), h.free_port()
        h.send_frame(s, {"type": "register", "apps": [{"name": "a", "remote_port": first},
                                                       {"name": "a", "remote_port": second}]})
        registered = h.recv_frame(s)
        apps = registered.get("apps", [])
        self.assertEqual(len(apps), 2, registered)
        self.assertEqual(apps[0].get("remote_port"), first, registered)
        self.assertRegex(apps[1].get("error", ""), h.REASON_DUPLICATE, registered)
        self.assertTrue(h.is_refused(second))

    # -- peer text in the server's log ---------------------------------------

    def raw_session(self, group="raw"):
        """A raw client logged in with the real proofs (plain TCP: no channel
        binding); the server now waits for its app list."""
        s, nc, ns = self.raw_login(group, self.server.token)
        self.assertEqual(h.recv_frame(s).get("type"), "welcome")
        self.server.wait_log(h.rx(h.LOG_SERVER_LOGIN, group=group))
        return s

    def assert_no_forged_line(self):
        """Every line of the server's log is one the server started: none is the
        peer's forgery, none starts without the server's stamp, and no raw
        escape character got through."""
        raw = self.server.log_path.read_bytes()
        self.assertNotIn(b"\x1b", raw, "a raw escape character from the peer was logged")
        for line in raw.decode(errors="replace").splitlines():
            self.assertFalse(line.startswith(FORGED[:23]), f"a forged line was logged: {line!r}")
            self.assertRegex(line, LOG_LINE_START, "a log line the server did not start")

    def test_error_message_from_the_peer_is_logged_escaped(self):
        s = self.raw_session()
        h.send_frame(s, {"type": "register", "apps": [{"name": "app", "remote_port": 0}]})
        self.assertEqual(h.recv_frame(s).get("type"), "registered")
        message = ("bye\n" + FORGED + "\r\n\x1b[31mred\x1b[0m \\ \x7f caf\u00e9 "
                   + "x" * 2 * h.LOGGED_PEER_TEXT)
        self.assertGreater(len(message.encode()), h.LOGGED_PEER_TEXT)  # the cap is tested
        h.send_frame(s, {"type": "error", "message": message})
        expected = log_safe(message)
        self.assertIn("\\x0a1999-12-31", expected)  # the forged line's start is within the cap
        self.assertTrue(expected.endswith(f"... ({len(message.encode()) - h.LOGGED_PEER_TEXT} "
                                          "more bytes)"))
        self.server.wait_log(r"(?m)group=raw: session ended: the client reported: "
                             + re.escape(expected) + "$")
        self.assert_no_forged_line()

    def test_invalid_app_name_is_logged_escaped(self):
        s = self.raw_session()
        # A name may be 256 bytes (the frame's reader, src/common/message.cpp): the
        # log's cap is what bounds the long one.
        long_name = "bad\n" + FORGED + "\x1b[2J\\"
        long_name += "y" * (256 - len(long_name.encode()))
        names = [long_name, "tab\there\u00e9"]
        h.send_frame(s, {"type": "register", "apps": [{"name": n, "remote_port": 0}
                                                       for n in names]
                                                      + [{"name": "good", "remote_port": 0}]})
        registered = h.recv_frame(s)
        self.assertEqual(registered.get("type"), "registered", registered)
        apps = registered.get("apps", [])
        self.assertEqual([a.get("error") for a in apps[:2]], ["invalid app name"] * 2, registered)
        self.assertIn("remote_port", apps[2], registered)
        for name in names:
            self.server.wait_log(r"(?m)group=raw app=" + re.escape(log_safe(name))
                                 + r": not registered: invalid app name$")
        self.assertTrue(log_safe(names[0]).endswith("more bytes)"))
        self.server.wait_log(h.rx(h.LOG_SERVER_APP_LISTENING, group="raw", app="good",
                                  port=apps[2]["remote_port"]))
        self.assert_no_forged_line()

    def test_raw_login_wrong_proof(self):
        s, nc, ns = self.raw_login("raw", self.token("wrong"))
        self.assert_refused_handshake(s, "login with a wrong proof")
        self.server.wait_log(h.rx(h.LOG_SERVER_AUTH_FAILED, group="raw"))

    def test_recorded_handshakes_cannot_be_replayed(self):
        proxy = h.RecordingProxy(self.bind)
        self.addCleanup(proxy.close)
        client, remote = self.tunnel(server_port=proxy.port)
        self.assert_echo(remote)
        h.wait_until(lambda: len(proxy.sent) >= 2 and first_frame(proxy.sent[1])[1],
                     h.STEP_S, "a data connection through the recording proxy")
        login_bytes, login = first_frame(proxy.sent[0])
        data_bytes, data = first_frame(proxy.sent[1])
        self.assertEqual(login.get("type"), "login", login)
        self.assertEqual(data.get("type"), "data", data)
        for rec in proxy.sent:
            self.assertNotIn(self.server.token.encode(), bytes(rec), "the token crossed the wire")

        # Each attempt from its own address: a failed proof slows its source down.
        with self.subTest("replayed data handshake, session still live"):
            with h.connect(self.bind, source="127.0.0.2") as s:
                s.sendall(bytes(proxy.sent[1][:5 + len(data_bytes)]))  # as recorded
                self.assert_refused_handshake(s, "replayed data handshake")

        with self.subTest("replayed data handshake after a challenge"):
            with h.connect(self.bind, source="127.0.0.5") as s:
                s.sendall(h.MAGIC)
                h.recv_frame(s)  # a fresh challenge, which a data proof does not use
                s.sendall(data_bytes)
                self.assert_refused_handshake(s, "replayed data handshake")

        with self.subTest("forged data handshake naming the live session"):
            with h.connect(self.bind, source="127.0.0.3") as s:
                # In one write, as ntp-client sends a data connection's first bytes.
                s.sendall(h.MAGIC + h.frame({"type": "data", "session": data["session"],
                                             "seq": data["seq"] + 1000,
                                             "proof": secrets.token_hex(32)}))
                self.assert_refused_handshake(s, "forged data handshake")
            self.assert_echo(remote)  # real users still get real data connections

        with self.subTest("replayed login"):
            self.assertEqual(client.stop(), 0)
            # Freed with the session, not when its heartbeat would have timed out.
            h.wait_port_refused(remote, timeout=h.HEARTBEAT_TIMEOUT_DEFAULT_S / 2)
            since = self.server.mark()
            with h.connect(self.bind, source="127.0.0.4") as s:
                s.sendall(h.MAGIC)
                h.recv_frame(s)
                s.sendall(login_bytes)
                self.assert_refused_handshake(s, "replayed login")
            self.server.wait_log(h.rx(h.LOG_SERVER_AUTH_FAILED, group=login["group"]), since=since)
            self.assertIsNone(self.server.find(h.rx(h.LOG_SERVER_LOGIN, group=login["group"]),
                                               since=since))


if __name__ == "__main__":
    unittest.main()
