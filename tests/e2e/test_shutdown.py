"""SIGTERM: listeners close at once, live streams get a 3 s grace period,
exit code 0."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# "At once" against the grace period, which a daemon that closed its listeners
# only on the way out would keep them open through.
LISTENER_CLOSE_S = h.GRACE_S / 2
# Once its streams are closed a daemon exits at once; one that did not would be
# stopped by its last resort FORCED_EXIT_S later (and say so in its log).
EXIT_AFTER_CLOSE_S = h.FORCED_EXIT_S / 2
# A stream the grace period's end did not close would go only with that forced
# exit, FORCED_EXIT_S after the grace.
CLOSED_AFTER_GRACE_S = h.GRACE_S + h.FORCED_EXIT_S / 2


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
        return max(0.0, deadline - time.monotonic())

    def assert_clean_exit(self, daemon, timeout=EXIT_AFTER_CLOSE_S):
        """After what it had to close is closed: exit 0 within its own bound, by
        itself rather than by the last resort."""
        self.assertEqual(daemon.wait_exit(timeout), 0, f"{daemon.name} exit code")
        self.assertIsNone(daemon.find(h.LOG_FORCED_EXIT), f"{daemon.name} had to be forced out")
        self.assertTrue(daemon.find(h.LOG_STOPPED), f"{daemon.name} did not log its stop")

    def test_server_sigterm_with_live_stream(self):
        server, client, port, user = self.live_stream()
        server.send_signal(signal.SIGTERM)
        start = time.monotonic()
        h.wait_port_refused(port, timeout=self.left(start + LISTENER_CLOSE_S))
        h.wait_port_refused(server.bind_port, timeout=self.left(start + LISTENER_CLOSE_S))

        self.assertEqual(h.roundtrip(user, b"in grace", timeout=self.left(start + h.GRACE_S)),
                         b"in grace", "a live stream must keep working during the grace period")
        h.wait_closed(user, self.left(start + CLOSED_AFTER_GRACE_S),
                      "live stream after the grace period")
        self.assert_clean_exit(server)

    def test_client_sigterm_with_live_stream(self):
        server, client, port, user = self.live_stream()
        client.send_signal(signal.SIGTERM)
        start = time.monotonic()
        self.assertEqual(h.roundtrip(user, b"in grace", timeout=self.left(start + h.GRACE_S)),
                         b"in grace", "a live stream must keep working during the grace period")
        h.wait_closed(user, self.left(start + CLOSED_AFTER_GRACE_S),
                      "live stream after the grace period")
        self.assert_clean_exit(client)
        # The client is gone, so the server frees its ports with the session, not
        # when its heartbeat would have timed out.
        h.wait_port_refused(port, timeout=h.HEARTBEAT_TIMEOUT_DEFAULT_S / 2)

    def test_idle_stop_is_prompt(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        self.assert_echo(ports["ssh"])  # the user is done: nothing is live
        for daemon in (client, server):
            start = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            # Time enough to wait out the grace, so that is what a bug shows as.
            self.assert_clean_exit(daemon, timeout=CLOSED_AFTER_GRACE_S)
            self.assertLess(time.monotonic() - start, h.GRACE_S,
                            f"{daemon.name} waited for a grace period with nothing live")

    def test_server_sigterm_while_users_wait(self):
        # A user waiting for a data connection (client frozen) is closed and
        # does not hold up the exit: it is no live stream, so no grace for it.
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        client.send_signal(signal.SIGSTOP)
        since = server.mark()
        user = h.connect(ports["ssh"])
        self.addCleanup(user.close)
        # It gets a pooled data connection and waits for the client's answer.
        server.wait_log(h.rx(h.LOG_SERVER_USER, group="home", app="ssh"), since=since)
        server.send_signal(signal.SIGTERM)
        # At once: a user taken for a live stream would be held through the grace.
        h.wait_closed(user, h.GRACE_S / 2, "waiting user after SIGTERM")
        self.assert_clean_exit(server)


class StartUpSignalTest(h.TunnelTestCase):
    """A service manager may stop a unit the moment it has started it: SIGTERM
    from the first moments of main(), long before the daemon's loop runs, must
    still be a clean stop (exit 0), never a death by the signal. The daemon
    holds SIGINT and SIGTERM back from main()'s first line (hold_stop_signals),
    which its /proc status shows: the signal is sent the moment it does."""

    ROUNDS = 10
    STOP_SIGNALS = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))

    def held(self, pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("SigBlk:"):
                        return int(line.split()[1], 16) & self.STOP_SIGNALS == self.STOP_SIGNALS
        except FileNotFoundError:
            pass
        return False

    def stop_at_start(self, start):
        caught = []
        for i in range(self.ROUNDS):
            d = start(i)
            # Holding them back is brief: a daemon seen past it (it has logged)
            # is stopped all the same; most rounds catch it within.
            early = h.wait_until(lambda: ("held" if self.held(d.pid) else None) or
                                 ("running" if d.log() or not d.alive() else None), h.STEP_S,
                                 f"{d.name} to start", interval=0.0005)
            caught.append(early == "held")
            d.send_signal(signal.SIGTERM)
            self.assertEqual(d.wait_exit(h.GRACE_S + h.FORCED_EXIT_S), 0,
                             f"{d.name}: SIGTERM during start-up; log:\n{d.log()}")
            self.assertTrue(d.find(h.LOG_STOPPED), f"{d.name} did not log its stop")
        sys.stderr.write(f"\n[shutdown] SIGTERM sent while held back in {sum(caught)} of "
                         f"{self.ROUNDS} start-ups\n")
        self.assertGreater(sum(caught), 0, "the daemon never held SIGTERM back at start-up")

    def test_server(self):
        self.stop_at_start(lambda i: self.start_server(
            self.server_config(), name=f"server-{i}", wait_ready=False))

    def test_client(self):
        # A server that is not there: the client is still starting up.
        self.stop_at_start(lambda i: self.start_client(
            self.client_config(h.free_port(), [h.app("a", h.free_port(), 0)], token=self.token()),
            name=f"client-{i}"))


if __name__ == "__main__":
    unittest.main()
