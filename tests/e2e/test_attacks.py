"""Attacks on a running tunnel (issue 5), each with the real binaries and a real
user tunnel beside it: token brute force (the per-source backoff observed),
slowloris on the bind port and on a remote port, a connection flood on the
bind port. After each: both daemons alive, the real user's tunnel unaffected,
no token in any log (the harness checks that for every test)."""

import os
import socket
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ATTACKER = "127.0.0.3"  # another host, as far as the server can tell
LOG_THROTTLED = (r"rejected {addr}:\d+: too many failed logins from {addr}: next attempt allowed "
                 r"in (?P<s>\d+) s")
LOG_FAILED = (r"rejected {addr}:\d+: group=home: authentication failed: wrong token "
              r"\(next attempt from {addr} allowed in (?P<s>\d+) s\)")

FLOOD_RATE = 5000      # connection attempts per second on the bind port
FLOOD_SECONDS = 10


def tls_client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def guess(port, group="home", source=ATTACKER):
    """One login attempt with a made-up proof, from `source`, over TLS.
    Returns ("challenge", error message) or ("no challenge", error message)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=h.STEP_S,
                                   source_address=(source, 0))
    with tls_client_context().wrap_socket(raw) as s:
        s.sendall(h.MAGIC)
        first = h.recv_frame(s)
        if first.get("type") != "challenge":
            return "no challenge", first.get("message", "")
        h.send_frame(s, {"type": "login", "group": group, "nonce": os.urandom(32).hex(),
                         "proof": os.urandom(32).hex()})
        return "challenge", h.recv_frame(s).get("message", "")


class AttackTest(h.TunnelTestCase):
    def setUp(self):
        super().setUp()
        self.echo = self.echo_server()
        self.server, self.client, ports = self.start_tunnel([h.app("web", self.echo.port, 0)])
        self.remote = ports["web"]
        self.assert_echo(self.remote)

    def assert_unharmed(self):
        self.assertTrue(self.server.alive(), "the server died")
        self.assertTrue(self.client.alive(), "the client died")
        self.assert_echo(self.remote, data=os.urandom(64 * 1024))

    def test_token_brute_force_is_slowed_per_source(self):
        port = self.server.bind_port
        addr = ATTACKER
        delays = []
        for n in range(1, 4):
            verdict, message = guess(port)
            self.assertEqual(verdict, "challenge", f"guess {n} was not heard: {message}")
            self.assertEqual(message, "authentication failed for group 'home'")
            m = self.server.wait_log(h.rx(LOG_FAILED, addr=addr), count=n)
            delays.append(int(m.group("s")))
            # At once again: no challenge, so no guess, and the wait is named.
            verdict, message = guess(port)
            self.assertEqual(verdict, "no challenge")
            self.assertRegex(message, r"^too many failed logins from this address: try again in "
                                      r"\d+ s$")
            self.server.wait_log(h.rx(LOG_THROTTLED, addr=addr))
            time.sleep(delays[-1] + 0.1)  # waiting out the backoff is what is tested
        self.assertEqual(delays, [1, 2, 4], "the backoff doubles from 1 s")

        # Meanwhile a client from another address is never slowed: a second
        # group logs in at once, and the first one's users are served.
        began = time.monotonic()
        other = self.start_client(self.client_config(
            self.server, [h.app("web2", self.echo.port, 0)], group="office"))
        self.wait_login(other)
        self.assertLess(time.monotonic() - began, 3.0)
        self.assert_unharmed()

    def test_slowloris_on_the_bind_port(self):
        """Connections that trickle a ClientHello one byte a second are cut at
        the 5 s handshake deadline; a real client logs in meanwhile."""
        hello = tls_client_context()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = hello.wrap_bio(incoming, outgoing)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        client_hello = outgoing.read()
        socks = [h.connect(self.server.bind_port) for _ in range(50)]
        stop = threading.Event()

        def trickle():
            for i in range(len(client_hello)):
                if stop.wait(1.0):
                    return
                for s in socks:
                    try:
                        s.send(client_hello[i:i + 1])
                    except OSError:
                        pass

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        self.addCleanup(stop.set)
        began = time.monotonic()
        other = self.start_client(self.client_config(
            self.server, [h.app("web2", self.echo.port, 0)], group="office"))
        self.wait_login(other)
        for s in socks:
            h.wait_closed(s, h.HANDSHAKE_TIMEOUT_S + 2 - (time.monotonic() - began), "slowloris")
        stop.set()
        self.server.wait_log(r"handshake not finished within 5 s")
        self.assert_unharmed()

    def test_slowloris_on_a_remote_port(self):
        """Users who connect and then say nothing, or trickle bytes, hold only
        their own streams: other users are served at once."""
        idle = [h.connect(self.remote) for _ in range(200)]
        self.addCleanup(lambda: [s.close() for s in idle])
        for i, s in enumerate(idle[:20]):
            s.sendall(bytes([i]))  # a trickle: one byte each
        for i, s in enumerate(idle[:20]):
            self.assertEqual(h.recv_exact(s, 1), bytes([i]), "a slow user lost its byte")
        began = time.monotonic()
        self.assert_echo(self.remote)
        self.assertLess(time.monotonic() - began, 2.0, "a real user waited behind idle ones")
        self.assert_unharmed()

    def test_connection_flood_on_the_bind_port(self):
        """5,000 connection attempts a second for 10 s (connect, then close at
        once or send garbage) while a real user keeps working."""
        stop = threading.Event()
        attempts = [0]

        def flood():
            deadline = time.monotonic() + FLOOD_SECONDS
            tick = time.monotonic()
            per_tick = FLOOD_RATE // 100
            while time.monotonic() < deadline and not stop.is_set():
                for i in range(per_tick):
                    s = socket.socket()
                    s.setblocking(False)
                    try:
                        s.connect_ex(("127.0.0.1", self.server.bind_port))
                        if i % 4 == 0:
                            s.send(b"GET / HTTP/1.0\r\n\r\n")
                    except OSError:
                        pass
                    s.close()
                    attempts[0] += 1
                tick += 0.01
                time.sleep(max(0.0, tick - time.monotonic()))

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        self.addCleanup(stop.set)
        served = 0
        while t.is_alive():
            self.assert_echo(self.remote)  # the real user, all along
            served += 1
            time.sleep(0.2)
        t.join()
        rate = attempts[0] / FLOOD_SECONDS
        sys.stderr.write(f"\n[attack] flood: {attempts[0]} attempts ({rate:.0f}/s), "
                         f"{served} echoes served meanwhile\n")
        self.assertGreaterEqual(rate, FLOOD_RATE * 0.8, "the flood did not reach its rate")
        self.assertGreaterEqual(served, FLOOD_SECONDS * 2)
        # A new login after the flood works at once.
        other = self.start_client(self.client_config(
            self.server, [h.app("web2", self.echo.port, 0)], group="office"))
        self.wait_login(other)
        self.assert_unharmed()


if __name__ == "__main__":
    unittest.main()
