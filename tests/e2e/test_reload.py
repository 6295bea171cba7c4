"""SIGHUP: both daemons re-read the file they were started with. Only what
changed is touched; a removed group, or one whose token changed, loses its
session and its live streams at once; a broken file changes nothing."""

import hashlib
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# The summary lines (CommonServer::reload, Client::reload).
LOG_SERVER_RELOAD = r"(?m)reload: (?P<what>(?:groups: |open mode).*)$"
LOG_CLIENT_RELOAD = (r"(?m)reload: (?P<added>\d+) apps? added, (?P<removed>\d+) removed, "
                     r"(?P<changed>\d+) changed, (?P<unchanged>\d+) unchanged(?P<rest>.*)$")
LOG_RELOAD_INVALID = r"reload: {file} is not valid; the running configuration stays"
LOG_RELOAD_FINGERPRINT = r"reload: TLS certificate fingerprint (?P<fp>SHA256:[0-9A-F:a-f]+)"
LOG_FINGERPRINT = r"certificate fingerprint (?P<fp>SHA256:[0-9A-Fa-f:]+)"

# A paced transfer that outlasts the reloads: BULK_BYTES at BULK_RATE bytes/s
# (the app's "bandwidth", enforced by the server) takes BULK_BYTES / BULK_RATE
# seconds, long enough for both daemons to reload while it runs.
BULK_RATE_MIB = 4
BULK_RATE = BULK_RATE_MIB << 20
BULK_BYTES = 24 << 20
BULK_TIMEOUT_S = BULK_BYTES / BULK_RATE + 4 * h.STEP_S


class Transfer(threading.Thread):
    """h.stream_sha256 in the background."""

    def __init__(self, port, total):
        super().__init__(daemon=True)
        self.port, self.total, self.result, self.error = port, total, None, None

    def run(self):
        try:
            self.result = h.stream_sha256(self.port, self.total, chunk_size=256 << 10,
                                          timeout=BULK_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 (reported by the test)
            self.error = e


class ReloadTest(h.TunnelTestCase):
    def rewrite(self, daemon, config):
        """Replace the file `daemon` was started with, as an editor would."""
        path = self.tmp / f"{daemon.name}.json"
        self.write_json(path.name, config)
        for g in (config.get("groups") or {}).values():
            self.secrets.add(g["token"])
        if config.get("token"):
            self.secrets.add(config["token"])
        daemon.config = config
        return path

    def reload(self, daemon, pattern=None):
        """SIGHUP `daemon`; returns its summary line's match."""
        since = daemon.mark()
        daemon.send_signal(signal.SIGHUP)
        if pattern is None:
            pattern = LOG_SERVER_RELOAD if daemon.name.startswith("server") else LOG_CLIENT_RELOAD
        return daemon.wait_log(pattern, since=since)

    # -- apps, log level and live streams ------------------------------------

    def test_sighup_on_both_daemons_changes_apps_and_log_level_while_a_transfer_runs(self):
        bulk, gone, kept, new = (self.echo_server() for _ in range(4))
        apps = [h.app("bulk", bulk.port, h.free_port(), bandwidth=f"{BULK_RATE_MIB}MiB/s"),
                h.app("gone", gone.port, h.free_port()),
                h.app("kept", kept.port, h.free_port())]
        server, client, ports = self.start_tunnel(apps)
        gone_user = h.connect(ports["gone"])
        self.addCleanup(gone_user.close)
        self.assertEqual(h.roundtrip(gone_user, b"live"), b"live")
        kept_user = h.connect(ports["kept"])
        self.addCleanup(kept_user.close)
        self.assertEqual(h.roundtrip(kept_user, b"live"), b"live")

        transfer = Transfer(ports["bulk"], BULK_BYTES)
        transfer.start()
        server.wait_log(h.rx(h.LOG_SERVER_STREAM_OPEN, group="home", app="bulk"))

        self.rewrite(server, dict(server.config, log_level="info"))
        new_remote = h.free_port()
        self.rewrite(client, dict(client.config, log_level="info", apps=[
            apps[0], apps[2], h.app("new", new.port, new_remote)]))
        since = client.mark()
        line = self.reload(server).group("what")
        self.assertIn("open mode", line)
        self.assertIn("changed: log_level", line)
        m = self.reload(client)
        self.assertEqual((m["added"], m["removed"], m["changed"], m["unchanged"]),
                         ("1", "1", "0", "2"), m.group(0))
        self.assertIn("1 stream of removed apps ended", m["rest"])
        self.assertEqual(self.wait_app(client, "new", since=since), new_remote)
        self.assert_echo(new_remote)
        h.wait_port_refused(ports["gone"])
        h.wait_closed(gone_user, h.STEP_S, "the removed app's live user")
        server.wait_log(r"group=home app=gone port=\d+: closed: the client no longer serves "
                        r"the app")
        self.assertTrue(transfer.is_alive(),
                        "the transfer ended before the reloads: raise BULK_BYTES")

        # The untouched app's user is the same connection as before, and the
        # new log level holds: no debug line for a new user.
        self.assertEqual(h.roundtrip(kept_user, b"after"), b"after")
        since = server.mark()
        self.assert_echo(ports["kept"])
        self.assertEqual(server.count(h.rx(h.LOG_SERVER_STREAM_OPEN, group="home", app="kept"),
                                      since=since), 0, "debug lines after the reload to info")

        transfer.join(BULK_TIMEOUT_S)
        self.assertFalse(transfer.is_alive(), "the transfer did not finish")
        self.assertIsNone(transfer.error)
        sent, got, n = transfer.result
        self.assertEqual(n, BULK_BYTES)
        self.assertEqual(sent, got, "the transfer's bytes changed")
        self.assertEqual(server.count(h.rx(h.LOG_SERVER_LOGIN, group="home")), 1,
                         "the reloads started a new session")

    def test_client_changed_local_sends_new_users_to_it_and_leaves_live_ones(self):
        before, after = self.echo_server(prefix=b"1:"), self.echo_server(prefix=b"2:")
        app = h.app("web", before.port, h.free_port())
        server, client, ports = self.start_tunnel([app])
        user = h.connect(ports["web"])
        self.addCleanup(user.close)
        self.assertEqual(h.recv_exact(user, 2), b"1:")
        self.rewrite(client, dict(client.config, apps=[dict(app, local=f"127.0.0.1:{after.port}")]))
        m = self.reload(client)
        self.assertEqual((m["added"], m["removed"], m["changed"], m["unchanged"]),
                         ("0", "0", "1", "0"), m.group(0))
        self.assert_echo(ports["web"], b"new user", prefix=b"2:")
        self.assertEqual(h.roundtrip(user, b"old user"), b"old user")

    def test_client_limits_change_in_place(self):
        echo = self.echo_server()
        app = h.app("web", echo.port, h.free_port())
        server, client, ports = self.start_tunnel([app])
        user = h.connect(ports["web"])
        self.addCleanup(user.close)
        self.assertEqual(h.roundtrip(user, b"first"), b"first")
        # The live user counts against the new limit of one: a second is refused,
        # the first goes on.
        self.rewrite(client, dict(client.config, apps=[dict(app, max_conns=1)]))
        self.reload(client)
        server.wait_log(r"group=home app=web port=\d+: the client changed the app's limits")
        self.assertEqual(h.roundtrip(user, b"still"), b"still")
        with h.connect(ports["web"]) as second:
            h.wait_closed(second, h.STEP_S, "a user past the new max_conns")
        self.assertEqual(server.count(h.rx(h.LOG_SERVER_APP_LISTENING, group="home", app="web",
                                           port=ports["web"])), 2,
                         "one line at login, one for the reloaded list; never a new socket")

    def test_client_new_server_or_token_starts_a_new_session(self):
        echo = self.echo_server()
        app = h.app("web", echo.port, h.free_port())
        server, client, ports = self.start_tunnel([app])
        user = h.connect(ports["web"])
        self.addCleanup(user.close)
        self.assertEqual(h.roundtrip(user, b"live"), b"live")
        other = self.start_server(self.server_config(), name="server")
        since = client.mark()
        self.rewrite(client, dict(client.config, server=f"127.0.0.1:{other.bind_port}",
                                  token=other.token))
        m = self.reload(client)
        self.assertIn("starting a new session", m["rest"])
        client.wait_log(h.rx(h.LOG_CLIENT_LOGIN, group="home", port=other.bind_port),
                        since=since)
        self.assertEqual(self.wait_app(client, "web", since=since), ports["web"])
        self.assertEqual(h.roundtrip(user, b"old stream"), b"old stream",
                         "the live stream on the first server ended")
        self.assertEqual(client.count(h.LOG_CLIENT_RETRY.replace("{group}", "home"), since=since),
                         0, "the new session waited for a backoff")

    # -- server: groups, tokens, ports, certificates ---------------------------

    def ready_groups(self, **groups):
        return self.server_config(token=None, groups={
            name: {"token": token, **extra} for name, (token, extra) in groups.items()})

    def test_removed_group_and_changed_token_lose_their_session_and_streams_at_once(self):
        home_t, office_t, lab_t, shop_t = (self.token(n) for n in ("home", "office", "lab", "shop"))
        cfg = self.ready_groups(home=(home_t, {}), office=(office_t, {}), shop=(shop_t, {}))
        server = self.start_server(cfg)
        users, clients = {}, {}
        for group, token in (("home", home_t), ("office", office_t), ("shop", shop_t)):
            echo = self.echo_server()
            port = h.free_port()
            clients[group] = client = self.start_client(self.client_config(
                server, [h.app("web", echo.port, port)], group=group, token=token))
            self.wait_app(client, "web")
            users[group] = h.connect(port)
            self.addCleanup(users[group].close)
            self.assertEqual(h.roundtrip(users[group], b"live"), b"live")

        new_shop = self.token("shop2")
        self.rewrite(server, self.ready_groups(home=(home_t, {}), lab=(lab_t, {}),
                                               shop=(new_shop, {})) | {"bind": cfg["bind"]})
        since = server.mark()
        line = self.reload(server).group("what")
        self.assertIn("groups: 1 added, 1 removed, 1 with a new token, 1 unchanged", line)
        self.assertIn("2 sessions and 2 streams ended", line)
        h.wait_closed(users["office"], h.STEP_S, "the removed group's live stream")
        h.wait_closed(users["shop"], h.STEP_S, "the live stream of the group with a new token")
        self.assertEqual(h.roundtrip(users["home"], b"untouched"), b"untouched")
        server.wait_log(h.rx(h.LOG_SERVER_AUTH_FAILED, group="office"), since=since)
        server.wait_log(h.rx(h.LOG_SERVER_AUTH_FAILED, group="shop"), since=since)
        self.assertEqual(server.count(h.rx(h.LOG_SERVER_LOGIN, group="home")), 1)

        lab_echo = self.echo_server()
        lab = self.start_client(self.client_config(
            server, [h.app("web", lab_echo.port, h.free_port())], group="lab", token=lab_t))
        self.assert_echo(self.wait_app(lab, "web"))
        # The shop's client, given the new token by its own reload, is back at once.
        since = clients["shop"].mark()
        self.rewrite(clients["shop"], dict(clients["shop"].config, token=new_shop))
        self.assertIn("starting a new session", self.reload(clients["shop"])["rest"])
        self.assert_echo(self.wait_app(clients["shop"], "web", since=since))

    def test_narrowed_allow_ports_closes_the_port_no_longer_allowed(self):
        a_port, b_port = h.free_port(), h.free_port()
        cfg = self.server_config(allow_ports=[str(a_port), str(b_port)])
        echo = self.echo_server()
        server, client, ports = self.start_tunnel(
            [h.app("a", echo.port, a_port), h.app("b", echo.port, b_port)], server_config=cfg)
        since = client.mark()
        self.rewrite(server, dict(cfg, allow_ports=[str(a_port)]))
        line = self.reload(server).group("what")
        self.assertIn("1 app closed (port no longer allowed)", line)
        self.assertIn("changed: allow_ports", line)
        h.wait_port_refused(b_port)
        self.wait_app_refused(client, "b", rf"port {b_port} is no longer allowed", since=since)
        self.assert_echo(a_port)

    def make_certificate(self, name):
        d = self.tmp / "pki"
        d.mkdir(exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key", "-out",
                        f"{name}.pem", "-days", "2", "-subj", f"/CN={name}"],
                       cwd=d, check=True, capture_output=True, timeout=60)
        der = ssl.PEM_cert_to_DER_cert((d / f"{name}.pem").read_text())
        return d / f"{name}.pem", d / f"{name}.key", hashlib.sha256(der).hexdigest()

    @staticmethod
    def served_certificate(port):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with h.connect(port) as raw, ctx.wrap_socket(raw) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()

    def test_new_certificate_files_serve_new_connections_and_keep_sessions(self):
        cert_a, key_a, fp_a = self.make_certificate("a")
        cert_b, key_b, fp_b = self.make_certificate("b")
        cert, key = self.tmp / "server.pem", self.tmp / "server.key"
        cert.write_bytes(cert_a.read_bytes())
        key.write_bytes(key_a.read_bytes())
        key.chmod(0o600)
        echo = self.echo_server()
        cfg = self.server_config(tls={"cert": str(cert), "key": str(key)})
        server, client, ports = self.start_tunnel([h.app("web", echo.port, h.free_port())],
                                                  server_config=cfg)
        self.assertEqual(self.served_certificate(server.bind_port), fp_a)
        cert.write_bytes(cert_b.read_bytes())
        key.write_bytes(key_b.read_bytes())
        self.reload(server)
        fp = server.wait_log(LOG_RELOAD_FINGERPRINT)["fp"]
        self.assertEqual(fp.replace("SHA256:", "").replace(":", "").lower(), fp_b)
        self.assertEqual(self.served_certificate(server.bind_port), fp_b)
        self.assert_echo(ports["web"])  # the session's data connections come on the new one
        self.assertEqual(server.count(h.rx(h.LOG_SERVER_LOGIN, group="home")), 1)

    # -- a broken file ---------------------------------------------------------

    def test_a_broken_file_changes_nothing_and_logs_what_check_prints(self):
        echo = self.echo_server()
        app = h.app("web", echo.port, h.free_port())
        server, client, ports = self.start_tunnel([app])
        good_server, good_client = dict(server.config), dict(client.config)
        cases = (
            (server, h.SERVER_BIN, dict(good_server, allow_ports=["70000"], max_groups="x")),
            (client, h.CLIENT_BIN, dict(good_client, apps=[dict(app, remote_port="web")],
                                        heartbeat_interval_s=0)),
        )
        for daemon, binary, broken in cases:
            with self.subTest(daemon.name):
                path = self.rewrite(daemon, broken)
                check = self.run_binary(binary, ["--check", "-c", path])
                self.assertEqual(check.returncode, 2, check.stderr)
                problems = check.stderr.strip().splitlines()
                self.assertGreaterEqual(len(problems), 2, check.stderr)
                since = daemon.mark()
                daemon.send_signal(signal.SIGHUP)
                daemon.wait_log(h.rx(LOG_RELOAD_INVALID, file=str(path)), since=since)
                for p in problems:
                    daemon.wait_log(r"(?m)error\s+" + re.escape(p) + "$",
                                    since=since)
                self.assertIsNone(daemon.find(LOG_SERVER_RELOAD if daemon is server
                                              else LOG_CLIENT_RELOAD, since=since))
                self.assert_echo(ports["web"])
        # Fixed, the files reload as usual and nothing was lost meanwhile.
        self.rewrite(server, good_server)
        self.rewrite(client, good_client)
        self.assertIn("no other setting changed", self.reload(server).group("what"))
        m = self.reload(client)
        self.assertEqual((m["added"], m["removed"], m["changed"]), ("0", "0", "0"))
        self.assert_echo(ports["web"])
        self.assertEqual(server.count(h.rx(h.LOG_SERVER_LOGIN, group="home")), 1)


if __name__ == "__main__":
    unittest.main()
