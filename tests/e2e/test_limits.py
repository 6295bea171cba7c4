"""Limits the server enforces (issue 5): max_groups; per group (groups.NAME or,
in open mode, group_defaults) max_conns and bandwidth; per app (apps.json)
max_conns, bandwidth and allow_cidrs. A user over a limit or outside
allow_cidrs is accepted and closed at once with a log line naming the limit;
everyone else is unaffected."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LOG_CLOSED = r"group={group} app={app} conn=\d+: closing user {user}:\d+: {why}"


class LimitsTest(h.TunnelTestCase):
    def assert_closed_at_once(self, port, source=None):
        """The user is accepted, then closed without a byte: at once, not after
        waiting for the client (kDataWait), and not served (an echo would keep
        it open)."""
        with h.connect(port, source=source) as s:
            try:
                s.sendall(b"hello")
            except OSError:
                pass
            h.wait_closed(s, h.DATA_WAIT_S / 2, "a user over a limit")

    def test_max_groups(self):
        server = self.start_server(self.server_config(max_groups=1))
        echo = self.echo_server()
        first = self.start_client(self.client_config(server, [h.app("a", echo.port, 0)],
                                                     group="first"))
        self.wait_login(first)
        second = self.start_client(self.client_config(server, [h.app("b", echo.port, 0)],
                                                      group="second"))
        second.wait_log(r"login refused by the server: the server is full: max_groups \(1\) "
                        r"groups are logged in")
        server.wait_log(r"group=second: login from \S+ refused: max_groups \(1\)")
        # The group already in is not "another group": its users are served.
        self.assert_echo(self.wait_app(first, "a"))
        # Once the first group leaves, the second one gets in (it keeps retrying,
        # at most Backoff's cap apart).
        self.assertEqual(first.stop(), 0)
        self.wait_login(second, timeout=h.BACKOFF_CAP_S + h.STEP_S)

    def test_group_max_conns_over_all_its_apps(self):
        server = self.start_server(self.server_config(group_defaults={"max_conns": 2}))
        echo = self.echo_server()
        client = self.start_client(self.client_config(
            server, [h.app("one", echo.port, 0), h.app("two", echo.port, 0)]))
        one, two = self.wait_app(client, "one"), self.wait_app(client, "two")
        a, b = h.connect(one), h.connect(two)  # two users, one per app
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(h.roundtrip(a, b"a"), b"a")
        self.assertEqual(h.roundtrip(b, b"b"), b"b")
        self.assert_closed_at_once(one)
        server.wait_log(h.rx(LOG_CLOSED, group="home", app="one", user="127.0.0.1",
                             why="the group's max_conns (2) is reached"))
        self.assertEqual(h.roundtrip(a, b"still here"), b"still here")
        b.close()  # a place frees up
        h.wait_until(lambda: self._echo_ok(two), h.STEP_S, "a user after another left")

    def _echo_ok(self, port):
        try:
            return h.exchange(port, b"x", timeout=2) == b"x"
        except (AssertionError, OSError):
            return False

    def test_app_max_conns_and_allow_cidrs(self):
        server = self.start_server(self.server_config())
        echo = self.echo_server()
        client = self.start_client(self.client_config(server, [
            h.app("one", echo.port, 0, max_conns=1),
            h.app("lan", echo.port, 0, allow_cidrs=["127.0.0.2/32", "192.0.2.0/24"]),
            h.app("free", echo.port, 0)]))
        one, lan, free = (self.wait_app(client, n) for n in ("one", "lan", "free"))
        with self.subTest("app max_conns"):
            first = h.connect(one)
            self.addCleanup(first.close)
            self.assertEqual(h.roundtrip(first, b"1"), b"1")
            self.assert_closed_at_once(one)
            server.wait_log(h.rx(LOG_CLOSED, group="home", app="one", user="127.0.0.1",
                                 why="the app's max_conns (1) is reached"))
            self.assert_echo(free)  # other apps of the group are not affected
        with self.subTest("allow_cidrs"):
            self.assert_closed_at_once(lan, source="127.0.0.1")
            server.wait_log(h.rx(LOG_CLOSED, group="home", app="lan", user="127.0.0.1",
                                 why="not in the app's allow_cidrs (127.0.0.2/32, 192.0.2.0/24)"))
            with h.connect(lan, source="127.0.0.2") as s:
                self.assertEqual(h.roundtrip(s, b"inside"), b"inside")

    def test_bad_allow_cidrs_is_a_config_error(self):
        path = self.write_json("apps.json", self.client_config(
            h.free_port(), [h.app("x", 1, 0, allow_cidrs=["not-a-network"])], token="t"))
        r = self.run_binary(h.CLIENT_BIN, ["--check", "-c", path])
        self.assertEqual(r.returncode, 2)
        self.assertIn("apps[0].allow_cidrs[0]: expected an address or network", r.stderr)

    def test_bandwidth_limits_group_and_app(self):
        rate = 1024 * 1024  # 1 MiB/s
        size = 3 * 1024 * 1024
        server = self.start_server(self.server_config(group_defaults={"bandwidth": "1MiB/s"}))
        echo = self.echo_server()
        client = self.start_client(self.client_config(server, [
            h.app("limited", echo.port, 0), h.app("app", echo.port, 0, bandwidth="512KiB/s")]))
        limited = self.wait_app(client, "limited")
        began = time.monotonic()
        sent, received, n = h.stream_sha256(limited, size)
        elapsed = time.monotonic() - began
        self.assertEqual((received, n), (sent, size), "bytes corrupted under a bandwidth limit")
        # The burst is a tenth of a second's worth; the rest goes at the rate.
        self.assertGreaterEqual(elapsed, (size - rate / 10) / rate * 0.95,
                                f"{size} bytes echoed in {elapsed:.2f} s under 1 MiB/s")
        sys.stderr.write(f"\n[limits] 3 MiB echoed in {elapsed:.2f} s under the group's 1 MiB/s\n")
        app = self.wait_app(client, "app")
        began = time.monotonic()
        sent, received, n = h.stream_sha256(app, 1024 * 1024)
        elapsed = time.monotonic() - began
        self.assertEqual((received, n), (sent, 1024 * 1024))
        self.assertGreaterEqual(elapsed, (1024 * 1024 - 64 * 1024) / (512 * 1024) * 0.95,
                                "the app's own bandwidth (lower than the group's) applies")


if __name__ == "__main__":
    unittest.main()
