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
HEARTBEAT_S = 1                         # the tool's --heartbeat: a ping this often per session
# Three pings' worth, as ntp-client's defaults (10 s pings, 30 s timeout): a
# loaded machine's stall of a ping or two is no drop.
HEARTBEAT_TIMEOUT_S = 3 * HEARTBEAT_S
HOLD_S = 2 * HEARTBEAT_TIMEOUT_S + 1    # more than twice the timeout
# The tool gives up on a login after 30 s and on a pong after 10 s
# (bench/groups_load.cpp): it is done by then beyond its hold.
TOOL_SLACK_S = 30 + 10
LOG_LOGIN = r"group=(?P<g>load-\d+): logged in from"
LOG_ENDED = r"group=(?P<g>load-\d+): session ended: (?P<why>.*)"


def figures(stdout):
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


class GroupsLoadTest(h.TunnelTestCase):
    def test_many_groups_held_past_the_heartbeat_timeout(self):
        # Held for more than twice heartbeat_timeout_s, so a missed heartbeat
        # would drop a session before the end.
        server = self.start_server(self.server_config(heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S))
        r = self.run_binary(LOAD_BIN, [
            "--server", f"127.0.0.1:{server.bind_port}", "--token", server.token,
            "--groups", GROUPS, "--hold", HOLD_S, "--rate", 500, "--server-pid", server.pid,
            "--heartbeat", HEARTBEAT_S], timeout=HOLD_S + TOOL_SLACK_S)
        f = figures(r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(int(f["logged_in"]), GROUPS)
        # Every ping the tool sent was answered: a dropped session fails its next
        # write or waits for a pong in vain, and counts as dropped.
        self.assertEqual(int(f["dropped"]), 0, r.stdout)
        self.assertEqual(int(f["pongs"]), int(f["pings"]), r.stdout)
        self.assertGreaterEqual(int(f["pings"]), GROUPS, r.stdout)
        self.assertGreater(int(f["server_rss_kib_held"]), 0)
        logins = {m.group("g"): h.log_time(m) for m in server.findall(LOG_LOGIN)}
        self.assertEqual(len(logins), GROUPS)
        # Each session ended when the tool let it go, never by the watchdog, and
        # lasted longer than the timeout (by the server's own clock), so the
        # heartbeats are what kept it.
        server.wait_log(LOG_ENDED, count=GROUPS)
        ends = {m.group("g"): (h.log_time(m), m.group("why")) for m in server.findall(LOG_ENDED)}
        self.assertEqual(sorted(ends), sorted(logins))
        for g, (at, why) in ends.items():
            self.assertNotIn("no heartbeat", why, g)
            self.assertGreater(at - logins[g], HEARTBEAT_TIMEOUT_S,
                               f"{g} was not held past heartbeat_timeout_s")
        self.assertTrue(server.alive())

    def test_a_wrong_token_is_reported_and_fails(self):
        server = self.start_server(self.server_config())
        r = self.run_binary(LOAD_BIN, [
            "--server", f"127.0.0.1:{server.bind_port}", "--token", "wrong",
            "--groups", 3, "--hold", 1], timeout=1 + TOOL_SLACK_S)
        f = figures(r.stdout)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(int(f["logged_in"]), 0)
        self.assertIn("authentication failed", f["first_error"])


if __name__ == "__main__":
    unittest.main()
