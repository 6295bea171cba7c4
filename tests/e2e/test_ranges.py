"""The new forms of an app in apps.json: a port range ("remote_port":
"6000-6009" with "local": "127.0.0.1:7000-7009" registers NAME-6000 ...
NAME-6009, each to its own local port; allow_ports covering part of it; the
config errors of a range) and a Unix-socket local app ("local": "unix:/path")
with a real program (socat) listening on it."""

import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SOCAT = "/usr/bin/socat"  # Debian socat

COUNT = 10


class RangesTest(h.TunnelTestCase):
    def range_apps(self, name="web"):
        """10 local echo servers on consecutive ports, each answering with its
        own port number first, and the app entry ranging over them onto 10
        consecutive remote ports. Returns (app entry, first remote, first local)."""
        remote, local = h.free_port_range(COUNT), h.free_port_range(COUNT)
        for i in range(COUNT):
            self.echo_server(prefix=f"<{local + i}>".encode(), port=local + i)
        entry = {"name": name, "remote_port": f"{remote}-{remote + COUNT - 1}",
                 "local": f"127.0.0.1:{local}-{local + COUNT - 1}"}
        return entry, remote, local

    def test_each_remote_port_of_a_range_reaches_its_own_local_port(self):
        entry, remote, local = self.range_apps()
        names = [f"web-{remote + i}" for i in range(COUNT)]
        server = self.start_server(self.server_config())
        client = self.start_client(self.client_config(server, [entry]))
        self.wait_login(client)
        for i, name in enumerate(names):
            self.assertEqual(self.wait_app(client, name), remote + i, name)
            server.wait_log(h.rx(h.LOG_SERVER_APP_LISTENING, group="home", app=name,
                                 port=remote + i))
        # In reverse order, so a mix-up of the pairs cannot pass for order.
        for i in reversed(range(COUNT)):
            self.assert_echo(remote + i, f"to {remote + i}".encode(),
                             prefix=f"<{local + i}>".encode())

    def test_allow_ports_covering_part_of_a_range(self):
        entry, remote, local = self.range_apps()
        inside = range(remote, remote + 4)
        server = self.start_server(self.server_config(allow_ports=[f"{remote}-{remote + 3}"]))
        client = self.start_client(self.client_config(server, [entry]))
        self.wait_login(client)
        for i in range(COUNT):
            name, port = f"web-{remote + i}", remote + i
            if port in inside:
                self.assertEqual(self.wait_app(client, name), port)
            else:
                reason = self.wait_app_refused(client, name, h.REASON_NOT_ALLOWED)
                self.assertEqual(reason, f"port {port} is not allowed "
                                         f"(allow_ports: {remote}-{remote + 3})")
        for i in range(COUNT):
            port = remote + i
            if port in inside:
                self.assert_echo(port, b"inside", prefix=f"<{local + i}>".encode())
            else:
                self.assertTrue(h.is_refused(port), f"port {port} outside allow_ports is open")
        self.assertEqual(server.count(h.rx(r"group=home app=web-\d+ port=\d+: listening")), 4)

    # -- config errors ---------------------------------------------------

    def check(self, apps):
        path = self.write_json("apps.json", self.client_config(
            h.free_port(), apps, token=self.token("client")), mode=0o600)
        r = self.run_binary(h.CLIENT_BIN, ["--check", "-c", path])
        return r.returncode, r.stdout + r.stderr

    def assert_config_error(self, apps, *expected):
        code, out = self.check(apps)
        self.assertEqual(code, 2, f"exit code of ntp-client --check; output:\n{out}")
        for regex in expected:
            self.assertRegex(out, r"apps\.json: " + regex)

    def test_range_config_errors_name_the_json_path(self):
        cases = {
            "lengths differ": (
                [{"name": "web", "remote_port": "6000-6009", "local": "127.0.0.1:7000-7008"}],
                [r"apps\[0\]\.local: expected a port range as long as remote_port's \(10 ports\), "
                 r"not 9"]),
            "remote range reversed": (
                [{"name": "web", "remote_port": "6009-6000", "local": "127.0.0.1:7000-7009"}],
                [r"apps\[0\]\.remote_port: expected .*first <= last, got \"6009-6000\""]),
            "local range reversed": (
                [{"name": "web", "remote_port": "6000-6009", "local": "127.0.0.1:7009-7000"}],
                [r"apps\[0\]\.local: expected .*, got \"127\.0\.0\.1:7009-7000\""]),
            "a range on one side only": (
                [{"name": "web", "remote_port": "6000-6009", "local": "127.0.0.1:7000"}],
                [r"apps\[0\]\.local: expected a port range as long as remote_port's"]),
            f"over {h.MAX_PORT_RANGE} ports": (
                [{"name": "web", "remote_port": "6000-7000", "local": "127.0.0.1:8000-9000"}],
                [rf"apps\[0\]\.remote_port: expected a range of at most {h.MAX_PORT_RANGE} ports"]),
            "generated name over 64 characters": (
                [{"name": "n" * 60, "remote_port": "6000-6001", "local": "127.0.0.1:7000-7001"}],
                [r"apps\[0\]\.name: expected a name that stays within 64 characters with "
                 r"\"-6000\" added"]),
            "generated name taken": (
                [{"name": "web", "remote_port": "6000-6009", "local": "127.0.0.1:7000-7009"},
                 h.app("web-6005", 7100, 6100)],
                [r"apps\[1\]\.name: expected a name unique within the group \(apps\[0\] has it "
                 r"too\)"]),
            "a port of the range taken": (
                [h.app("ssh", 22, 6005),
                 {"name": "web", "remote_port": "6000-6009", "local": "127.0.0.1:7000-7009"}],
                [r"apps\[1\]\.remote_port: expected a port no other tcp app uses \(apps\[0\] has "
                 r"6005 too\)"]),
        }
        for what, (apps, expected) in cases.items():
            with self.subTest(what):
                self.assert_config_error(apps, *expected)
        with self.subTest("a tcp and a udp range over the same ports are fine"):
            code, out = self.check([
                {"name": "web", "remote_port": "6000-6009", "local": "127.0.0.1:7000-7009"},
                {"name": "dns", "type": "udp", "remote_port": "6000-6009",
                 "local": "127.0.0.1:7000-7009"}])
            self.assertEqual(code, 0, out)

    # -- a Unix-socket local app -------------------------------------------

    def test_unix_socket_app_with_socat(self):
        path = self.tmp / "app.sock"
        socat = self.start_program("socat", [SOCAT, "-d", "-d", f"UNIX-LISTEN:{path},fork",
                                             "EXEC:cat"], "socat")
        h.wait_until(lambda: path.exists(), h.STEP_S,
                     lambda: f"socat listens on {path}; log:\n{socat.tail(10)}")
        missing = self.tmp / "missing.sock"
        server, client, ports = self.start_tunnel([
            h.app("unix", 0, 0, local=f"unix:{path}"),
            h.app("gone", 0, 0, local=f"unix:{missing}"),
            h.app("stale", 0, 0, local=f"unix:{self.tmp / 'stale.sock'}")])
        # Bytes through the tunnel, through the socket, through cat, and back.
        self.assert_echo(ports["unix"], os.urandom(1 << 20))
        with h.connect(ports["unix"]) as a, h.connect(ports["unix"]) as b:
            self.assertEqual(h.roundtrip(a, b"first"), b"first")
            self.assertEqual(h.roundtrip(b, b"second"), b"second")
        socat.wait_log(r"accepting connection from .* on AF=1 ", count=3)

        # No socket file: the user is closed at once, and the client says why,
        # naming the path.
        with h.connect(ports["gone"]) as s:
            try:
                s.sendall(b"hello")
            except OSError:
                pass
            h.wait_closed(s, h.LOCAL_DOWN_CLOSE_S, "a user of an app whose socket is missing")
        client.wait_log(h.rx(r"group=home app=gone conn=\d+: connect unix:{path}: "
                             r"No such file or directory", path=missing))
        server.wait_log(h.rx(r"group=home app=gone conn=\d+: closing user 127\.0\.0\.1:\d+: "
                             r"the client cannot reach the local app: connect unix:{path}: ",
                             path=missing))
        # A socket file nobody listens on: refused, said the same way.
        stale = self.tmp / "stale.sock"
        with socket.socket(socket.AF_UNIX) as leftover:
            leftover.bind(str(stale))  # bound, never listening: connect is refused
            mark = client.mark()
            with h.connect(ports["stale"]) as s:
                h.wait_closed(s, h.LOCAL_DOWN_CLOSE_S, "a user of an app nobody listens for")
            client.wait_log(h.rx(r"group=home app=stale conn=\d+: connect unix:{path}: "
                                 r"Connection refused", path=stale), since=mark)

if __name__ == "__main__":
    unittest.main()
