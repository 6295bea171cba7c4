"""The control-plane load tool (bench/groups_load.cpp) against the real
ntp-server: many groups logged in at once over TLS, heartbeats answered, none
dropped for longer than the server's heartbeat timeout. bench/run uses the same
tool with 1,000 groups; this keeps it (and the server's side of it) working."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LOAD_BIN = h.BIN_DIR / "ntp-groups-load"
GROUPS = 100
HOLD_S = 5


def figures(stdout):
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


class GroupsLoadTest(h.TunnelTestCase):
    def test_many_groups_held_past_the_heartbeat_timeout(self):
        # Held for more than twice heartbeat_timeout_s, so a missed heartbeat
        # would drop a session before the end.
        server = self.start_server(self.server_config(heartbeat_timeout_s=2))
        r = self.run_binary(LOAD_BIN, [
            "--server", f"127.0.0.1:{server.bind_port}", "--token", server.token,
            "--groups", GROUPS, "--hold", HOLD_S, "--rate", 500, "--server-pid", server.pid,
            "--heartbeat", 1], timeout=HOLD_S + 30)
        f = figures(r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(int(f["logged_in"]), GROUPS)
        self.assertEqual(int(f["dropped"]), 0)
        self.assertGreaterEqual(int(f["pongs"]), GROUPS * (HOLD_S - 1))
        self.assertGreater(int(f["server_rss_kib_held"]), 0)
        self.assertEqual(server.count(r"group=load-\d+: logged in from"), GROUPS)
        self.assertIsNone(server.find(r"session ended: no heartbeat"))
        self.assertTrue(server.alive())

    def test_a_wrong_token_is_reported_and_fails(self):
        server = self.start_server(self.server_config())
        r = self.run_binary(LOAD_BIN, [
            "--server", f"127.0.0.1:{server.bind_port}", "--token", "wrong",
            "--groups", 3, "--hold", 1], timeout=30)
        f = figures(r.stdout)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(int(f["logged_in"]), 0)
        self.assertIn("authentication failed", f["first_error"])


if __name__ == "__main__":
    unittest.main()
