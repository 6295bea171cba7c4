"""Faults: a client killed or frozen, a server restarted, a local app down,
a second login for a live group."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

HEARTBEAT_TIMEOUT_S = 3    # server drops a silent session after this
HEARTBEAT_INTERVAL_S = 1   # client pings this often


class FaultsTest(h.TunnelTestCase):
    def fast_heartbeat_tunnel(self, local_port, remote):
        server = self.start_server(self.server_config(heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S))
        client = self.start_client(self.client_config(
            server, [h.app("ssh", local_port, remote)], heartbeat_interval_s=HEARTBEAT_INTERVAL_S))
        self.wait_login(client)
        self.assertEqual(self.wait_app(client, "ssh"), remote)
        return server, client

    def test_client_killed_frees_ports_then_restart_works(self):
        echo = self.echo_server()
        remote = h.free_port()
        server, client = self.fast_heartbeat_tunnel(echo.port, remote)
        self.assert_echo(remote)

        client.kill()
        # The kill closes its connections: freed at once, not by the watchdog.
        h.wait_port_refused(remote, timeout=HEARTBEAT_TIMEOUT_S / 2)

        again = self.start_client(client.config)
        self.wait_login(again)
        self.assertEqual(self.wait_app(again, "ssh"), remote, "same port after restart")
        self.assert_echo(remote)

    def test_frozen_client_dropped_after_heartbeat_timeout(self):
        # SIGSTOP: the host is gone but nothing closes the TCP connections,
        # so only the heartbeat watchdog can notice.
        echo = self.echo_server()
        remote = h.free_port()
        server, client = self.fast_heartbeat_tunnel(echo.port, remote)
        self.assert_echo(remote)

        since = server.mark()
        client.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        user = h.connect(remote)  # waits for a client that will never answer
        self.addCleanup(user.close)
        # By the watchdog's deadline; one that never fires leaves the port open
        # for good, so a second timeout's worth is room for a loaded machine.
        h.wait_port_refused(remote, timeout=2 * HEARTBEAT_TIMEOUT_S)
        dropped_after = time.monotonic() - start
        # The last ping came at most an interval before the freeze, one more
        # interval is room for a client running late: a watchdog that did not
        # count the pings would drop sooner.
        self.assertGreater(dropped_after, HEARTBEAT_TIMEOUT_S - 2 * HEARTBEAT_INTERVAL_S,
                           "session dropped well before heartbeat_timeout_s")
        with self.subTest("a user waiting for the frozen client is closed"):
            # With the session, not when its own wait for the client runs out
            # (kDataWait or kLocalWait, 10 s each, src/server/app_server.cpp).
            h.wait_closed(user, h.DATA_WAIT_S / 2, "user waiting for a frozen client after "
                                                   "its session was dropped")
        with self.subTest("the server logs why the session ended"):
            server.wait_log(h.rx(h.LOG_SERVER_SESSION_TIMEOUT, group="home"), since=since)

        client.kill()
        again = self.start_client(client.config)
        self.assertEqual(self.wait_app(again, "ssh"), remote)
        self.assert_echo(remote)

    def test_spliced_stream_survives_session_drop(self):
        echo = self.echo_server()
        remote = h.free_port()
        server, client = self.fast_heartbeat_tunnel(echo.port, remote)
        user = h.connect(remote)
        self.addCleanup(user.close)
        self.assertEqual(h.roundtrip(user, b"before"), b"before")

        client.send_signal(signal.SIGSTOP)
        h.wait_port_refused(remote, timeout=2 * HEARTBEAT_TIMEOUT_S)  # dropped by the watchdog
        since = client.mark()
        client.send_signal(signal.SIGCONT)
        self.wait_login(client, since=since, timeout=h.RECONNECT_S)
        self.assertEqual(self.wait_app(client, "ssh", since=since), remote)

        self.assertEqual(h.roundtrip(user, b"after"), b"after",
                         "a spliced stream must outlive its session")
        self.assert_echo(remote)

    def test_server_restart_client_returns(self):
        echo = self.echo_server()
        remote = h.free_port()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, remote)])
        self.assert_echo(remote)

        since = client.mark()
        self.assertEqual(server.stop(), 0)
        # An outage of three failed attempts, so the client's backoff grows
        # (Backoff's ceiling doubles from 1 s: they take at most 1 + 2 s).
        client.wait_log(h.rx(h.LOG_CLIENT_RETRY, group="home"), since=since, count=3,
                        timeout=1 + 2 + h.STEP_S)
        self.start_server(server.config)  # same bind port
        self.wait_login(client, since=since, timeout=h.RECONNECT_S)
        self.assertEqual(self.wait_app(client, "ssh", since=since), remote)
        self.assert_echo(remote)

    def test_client_started_before_server(self):
        config = self.server_config()
        bind = int(config["bind"].rsplit(":", 1)[1])
        echo = self.echo_server()
        remote = h.free_port()
        client = self.start_client(self.client_config(
            bind, [h.app("ssh", echo.port, remote)], token=config["token"]))
        # The server comes up after the client found it down.
        client.wait_log(h.rx(h.LOG_CLIENT_RETRY, group="home"))
        self.start_server(config)
        self.wait_login(client, timeout=h.RECONNECT_S)
        self.assertEqual(self.wait_app(client, "ssh"), remote)
        self.assert_echo(remote)

    def test_local_app_down(self):
        down = h.free_port()  # nothing listens here
        server, client, ports = self.start_tunnel([h.app("ssh", down, h.free_port())])
        user = h.connect(ports["ssh"])
        self.addCleanup(user.close)
        try:
            user.sendall(b"hello")
        except OSError:
            pass  # already closed: fine
        h.wait_closed(user, h.LOCAL_DOWN_CLOSE_S, "user of an app whose local app is down")
        client.wait_log(h.rx(h.LOG_CLIENT_LOCAL_REFUSED, group="home", app="ssh"))
        server.wait_log(h.rx(h.LOG_SERVER_USER_FAILED, group="home", app="ssh"))

        # The local app comes back: no restart needed.
        self.echo_server(port=down)
        self.assert_echo(ports["ssh"])

    def test_second_login_refused_while_first_lives_then_takes_over(self):
        echo = self.echo_server()
        remote = h.free_port()
        server, first, ports = self.start_tunnel([h.app("ssh", echo.port, remote)])
        login = h.rx(h.LOG_SERVER_LOGIN, group="home")

        second = self.start_client(first.config, name="second")
        second.wait_log(h.rx(h.LOG_CLIENT_ALREADY, group="home"), timeout=h.PROBE_S + h.STEP_S)
        self.assert_echo(remote)
        self.assertEqual(server.count(login), 1, "the live session must be kept")
        self.assertIsNone(second.find(h.rx(h.LOG_CLIENT_LOGIN, group="home", port=server.bind_port)))

        # The first host vanishes without closing its connections.
        first.send_signal(signal.SIGSTOP)
        self.wait_login(second, timeout=h.RECONNECT_S + h.PROBE_S)
        self.assertEqual(self.wait_app(second, "ssh"), remote)
        self.assert_echo(remote)  # the first client is frozen: this went through the second
        self.assertEqual(server.count(login), 2)


if __name__ == "__main__":
    unittest.main()
