"""Remote ports: allow_ports, port 0, taken ports, per-group limits. One bad
app never stops the others."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class BindPortTest(h.TunnelTestCase):
    def app_results(self, client, names):
        """Wait for every app's result line; returns {name: port or None}."""
        out = {}
        for name in names:
            m = client.wait_log(h.rx(h.LOG_CLIENT_APP, group=client.group, app=name))
            out[name] = int(m.group("port")) if m.group("port") else None
        return out

    def test_allow_ports_inside_outside_and_zero(self):
        lo = h.free_port_range(10)
        hi = lo + 9
        single = h.free_port()
        outside = h.free_port()
        server = self.start_server(self.server_config(allow_ports=[f"{lo}-{hi}", str(single)]))
        echo = self.echo_server()
        client = self.start_client(self.client_config(server, [
            h.app("inside", echo.port, lo + 3),
            h.app("outside", echo.port, outside),
            # Registered in order: "single" takes its port before "any" is
            # placed, so "any" can only land in the range (it did take the
            # single port once, 1 run in 11, when it came first).
            h.app("single", echo.port, single),
            h.app("any", echo.port, 0),
        ]))
        self.assertEqual(self.wait_app(client, "inside"), lo + 3)
        self.wait_app_refused(client, "outside", h.REASON_NOT_ALLOWED)
        chosen = self.wait_app(client, "any")
        self.assertTrue(lo <= chosen <= hi, f"port {chosen} chosen for remote_port 0 is outside {lo}-{hi}")
        self.assertNotEqual(chosen, lo + 3)
        self.assertEqual(self.wait_app(client, "single"), single)

        self.assertTrue(h.is_refused(outside), f"port {outside} outside allow_ports is open")
        self.assertIsNone(server.find(h.rx(h.LOG_SERVER_APP_LISTENING, group="home",
                                           app="outside", port=outside)))
        for port in (lo + 3, chosen, single):
            self.assert_echo(port)
        server.wait_log(h.rx(h.LOG_SERVER_APP_LISTENING, group="home", app="any", port=chosen))

    def test_remote_port_zero_without_allow_ports(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("any", echo.port, 0)])
        self.assertTrue(1024 <= ports["any"] <= 65535)
        self.assertNotEqual(ports["any"], server.bind_port)
        self.assert_echo(ports["any"])

    def test_port_taken_by_another_process(self):
        taken, free = h.free_port(), h.free_port()
        holder = h.hold_port(taken)
        self.addCleanup(holder.close)
        echo = self.echo_server()
        server = self.start_server(self.server_config())
        client = self.start_client(self.client_config(server, [
            h.app("web", echo.port, taken),
            h.app("ssh", echo.port, free),
        ]))
        self.wait_app_refused(client, "web", h.REASON_TAKEN)
        self.assertEqual(self.wait_app(client, "ssh"), free)
        self.assert_echo(free)
        # The other process still owns its port.
        with h.connect(taken):
            holder.settimeout(h.STEP_S)
            conn, _ = holder.accept()
            conn.close()

    def test_same_port_for_two_groups(self):
        port = h.free_port()
        echo_a, echo_b = self.echo_server(b"A"), self.echo_server(b"B")
        server = self.start_server(self.server_config())
        alpha = self.start_client(self.client_config(
            server, [h.app("ssh", echo_a.port, port)], group="alpha"), name="alpha")
        self.assertEqual(self.wait_app(alpha, "ssh"), port)
        beta = self.start_client(self.client_config(
            server, [h.app("ssh", echo_b.port, port), h.app("web", echo_b.port, 0)],
            group="beta"), name="beta")
        self.wait_app_refused(beta, "ssh", h.REASON_TAKEN)
        web = self.wait_app(beta, "web")
        self.assert_echo(port, b"x", prefix=b"A")
        self.assert_echo(web, b"y", prefix=b"B")

    def test_bind_port_and_privileged_port_not_allowed(self):
        echo = self.echo_server()
        server = self.start_server(self.server_config())
        ok = h.free_port()
        client = self.start_client(self.client_config(server, [
            h.app("ctl", echo.port, server.bind_port),
            h.app("low", echo.port, 80),
            h.app("ok", echo.port, ok),
        ]))
        self.wait_app_refused(client, "ctl", f"{h.REASON_NOT_ALLOWED}|{h.REASON_TAKEN}")
        self.wait_app_refused(client, "low", h.REASON_NOT_ALLOWED)
        self.assertEqual(self.wait_app(client, "ok"), ok)
        self.assert_echo(ok)

    def test_group_allow_ports_and_zero(self):
        lo = h.free_port_range(10)
        token = self.token("home")
        server = self.start_server(self.server_config(
            allow_ports=[f"{lo}-{lo + 9}"],
            groups={"home": {"token": token, "allow_ports": [f"{lo}-{lo + 4}"]}}))
        echo = self.echo_server()
        client = self.start_client(self.client_config(server, [
            h.app("in", echo.port, lo + 1),
            h.app("server_only", echo.port, lo + 7),
            h.app("any", echo.port, 0),
        ], token=token))
        self.assertEqual(self.wait_app(client, "in"), lo + 1)
        self.wait_app_refused(client, "server_only", h.REASON_NOT_ALLOWED)
        chosen = self.wait_app(client, "any")
        self.assertTrue(lo <= chosen <= lo + 4, f"chose {chosen}, group range is {lo}-{lo + 4}")
        self.assertTrue(h.is_refused(lo + 7))
        self.assert_echo(lo + 1)
        self.assert_echo(chosen)

    def test_group_max_apps(self):
        token = self.token("home")
        server = self.start_server(self.server_config(
            groups={"home": {"token": token, "max_apps": 2}}))
        echo = self.echo_server()
        apps = [h.app(f"a{i}", echo.port, h.free_port()) for i in range(3)]
        client = self.start_client(self.client_config(server, apps, token=token))
        results = self.app_results(client, [a["name"] for a in apps])
        bound = [p for p in results.values() if p]
        self.assertEqual(len(bound), 2, f"max_apps 2, results {results}")
        for a in apps:
            if results[a["name"]] is None:
                self.assertTrue(h.is_refused(a["remote_port"]))
        for p in bound:
            self.assert_echo(p)


if __name__ == "__main__":
    unittest.main()
