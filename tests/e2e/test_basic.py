"""Basic tunnelling: one app, several apps, clean stop."""

import os
import signal
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class BasicTest(h.TunnelTestCase):
    def test_echo_through_tunnel_then_sigterm_exits_0(self):
        echo = self.echo_server()
        remote = h.free_port()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, remote)])
        self.assertEqual(ports["ssh"], remote)

        server.wait_log(h.rx(h.LOG_SERVER_LOGIN, group="home"))
        server.wait_log(h.rx(h.LOG_SERVER_APP_LISTENING, group="home", app="ssh", port=remote))

        self.assert_echo(remote, os.urandom(100_000))
        server.wait_log(h.rx(h.LOG_SERVER_USER, group="home", app="ssh"))
        self.assertEqual(echo.accepted, 1, "the local app should see exactly one connection")

        self.assertEqual(client.stop(), 0, "client exit code on SIGTERM")
        self.assertEqual(server.stop(), 0, "server exit code on SIGTERM")

    def test_many_connections_in_a_row(self):
        # The pool of data connections must refill as it is used.
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        for i in range(30):
            self.assert_echo(ports["ssh"], f"message {i}".encode() * 10)
        self.assertEqual(echo.accepted, 30)
        pattern = h.rx(h.LOG_SERVER_USER, group="home", app="ssh")
        server.wait_log(pattern, count=30)
        users = server.findall(pattern)
        self.assertEqual(len({m.group("conn") for m in users}), 30,
                         "every user connection gets its own conn id")

    def test_four_apps_reach_their_own_local_app(self):
        echoes = [self.echo_server(prefix=f"<app{i}>".encode()) for i in range(4)]
        apps = [h.app(f"app{i}", e.port, h.free_port()) for i, e in enumerate(echoes)]
        server, client, ports = self.start_tunnel(apps)
        for i in range(4):
            server.wait_log(h.rx(h.LOG_SERVER_APP_LISTENING, group="home", app=f"app{i}",
                                 port=ports[f"app{i}"]))

        # Open one user per app first, then talk to them in reverse order, so
        # a router that mixes up pending users would show it.
        socks = [h.connect(ports[f"app{i}"]) for i in range(4)]
        try:
            for i in reversed(range(4)):
                payload = f"hello {i}".encode()
                got = h.exchange_on(socks[i], payload)
                self.assertEqual(got, f"<app{i}>".encode() + payload, f"app{i} routed wrongly")
        finally:
            for s in socks:
                s.close()
        for i, e in enumerate(echoes):
            self.assertEqual(e.accepted, 1, f"app{i}'s local app connection count")

        # And once more, sequentially, with bigger payloads.
        for i in range(4):
            self.assert_echo(ports[f"app{i}"], os.urandom(50_000), prefix=f"<app{i}>".encode())

    def test_sigint_exits_0(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        self.assert_echo(ports["ssh"])
        self.assertEqual(client.stop(signal.SIGINT), 0, "client exit code on SIGINT")
        self.assertEqual(server.stop(signal.SIGINT), 0, "server exit code on SIGINT")

    def test_user_closing_first_reaches_local_app(self):
        # A user that connects and closes without sending anything: the local
        # app sees EOF and the next user still works.
        echo = self.echo_server(prefix=b"hi")
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        with h.connect(ports["ssh"]) as s:
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(h.recv_exact(s, 2), b"hi")
            h.wait_closed(s, h.STEP_S, "user stream after both sides closed")
        self.assert_echo(ports["ssh"], b"again", prefix=b"hi")


if __name__ == "__main__":
    unittest.main()
