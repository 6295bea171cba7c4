"""SIGTERM: listeners close at once, live streams get a 3 s grace period,
exit code 0."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LISTENER_CLOSE_S = 1.0     # "close listeners at once"
EXIT_BOUND_S = h.GRACE_S + 1.0


class ShutdownTest(h.TunnelTestCase):
    def live_stream(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        user = h.connect(ports["ssh"])
        self.addCleanup(user.close)
        self.assertEqual(h.roundtrip(user, b"live"), b"live")
        return server, client, ports["ssh"], user

    @staticmethod
    def left(deadline):
        return max(0.05, deadline - time.monotonic())

    def test_server_sigterm_with_live_stream(self):
        server, client, port, user = self.live_stream()
        server.send_signal(signal.SIGTERM)
        start = time.monotonic()
        h.wait_port_refused(port, timeout=self.left(start + LISTENER_CLOSE_S))
        h.wait_port_refused(server.bind_port, timeout=self.left(start + LISTENER_CLOSE_S))

        self.assertEqual(h.roundtrip(user, b"in grace", timeout=1.0), b"in grace",
                         "a live stream must keep working during the grace period")
        h.wait_closed(user, self.left(start + EXIT_BOUND_S), "live stream after the grace period")
        self.assertEqual(server.wait_exit(self.left(start + EXIT_BOUND_S)), 0)

    def test_client_sigterm_with_live_stream(self):
        server, client, port, user = self.live_stream()
        client.send_signal(signal.SIGTERM)
        start = time.monotonic()
        self.assertEqual(h.roundtrip(user, b"in grace", timeout=1.0), b"in grace",
                         "a live stream must keep working during the grace period")
        h.wait_closed(user, self.left(start + EXIT_BOUND_S), "live stream after the grace period")
        self.assertEqual(client.wait_exit(self.left(start + EXIT_BOUND_S)), 0)
        # The client is gone, so the server frees its ports.
        h.wait_port_refused(port, timeout=2.0)

    def test_idle_stop_is_prompt(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        self.assert_echo(ports["ssh"])  # the user is done: nothing is live
        for daemon in (client, server):
            start = time.monotonic()
            self.assertEqual(daemon.stop(timeout=EXIT_BOUND_S), 0, f"{daemon.name} exit code")
            self.assertLess(time.monotonic() - start, 2.0,
                            f"{daemon.name} waited for a grace period with nothing live")

    def test_server_sigterm_while_users_wait(self):
        # A user waiting for a data connection (client frozen) is closed and
        # does not hold up the exit beyond the grace period.
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        client.send_signal(signal.SIGSTOP)
        user = h.connect(ports["ssh"])
        self.addCleanup(user.close)
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        h.wait_closed(user, EXIT_BOUND_S, "waiting user after SIGTERM")
        self.assertEqual(server.wait_exit(self.left(start + EXIT_BOUND_S)), 0)


if __name__ == "__main__":
    unittest.main()
