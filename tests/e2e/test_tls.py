"""TLS by default (issue 5): the generated certificate and its fingerprint, the
login proofs bound to the TLS session (a man in the middle with another
certificate fails on both sides), pinning, CA verification, mutual TLS, plain
and TLS peers told apart with a clear error on both sides, and no user byte or
token in clear on the wire."""

import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

FINGERPRINT = r"SHA256:[0-9a-f]{64}"
LOG_FINGERPRINT = r"certificate fingerprint (?P<fp>" + FINGERPRINT + ")"
LOG_CLIENT_OVER_TLS = r"group={group}: logged in to \S+ over TLSv1\.3"
LOG_SERVER_OVER_TLS = r"group={group}: logged in from \S+ over TLSv1\.3"
LOG_CLIENT_MITM = r"could not prove it knows the group token: wrong server or man in the middle"
LOG_CLIENT_PIN_MISMATCH = r"certificate is SHA256:[0-9a-f]{64}, not the tls\.server_fingerprint"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class MitmProxy(h.RecordingProxy):
    """Terminates the client's TLS with its own certificate and opens its own
    TLS connection to the real server, relaying the bytes in between: a man in
    the middle who can read everything, as a stolen or self-made certificate
    would allow."""

    half_close = False  # a TLS socket cannot shut down one way here

    def __init__(self, target_port, cert, key):
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(cert, key)
        self.client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client_ctx.check_hostname = False
        self.client_ctx.verify_mode = ssl.CERT_NONE
        super().__init__(target_port)

    def _open(self, raw):
        down = self.server_ctx.wrap_socket(raw, server_side=True)
        up = self.client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.target_port)))
        return down, up

    @property
    def relayed(self):  # connections relayed both ways
        return len(self.sent)


class TlsTest(h.TunnelTestCase):
    def state_dir(self, server):
        return self.tmp / f"{server.name}-home" / ".local" / "state" / "ntp-server"

    def fingerprint(self, server):
        return server.wait_log(LOG_FINGERPRINT).group("fp")

    def echo_tunnel(self, server, **client_keys):
        echo = self.echo_server()
        client = self.start_client(self.client_config(
            server, [h.app("web", echo.port, h.free_port())], **client_keys))
        return client

    # -- the default ------------------------------------------------------

    def test_default_is_tls_with_a_generated_certificate_kept_across_restarts(self):
        server = self.start_server(self.server_config())
        server.wait_log(r"generated a self-signed TLS certificate")
        fp = self.fingerprint(server)
        state = self.state_dir(server)
        key, cert = state / "tls-key.pem", state / "tls-cert.pem"
        self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600, "the key must be private")
        self.assertEqual(stat.S_IMODE(cert.stat().st_mode), 0o600)
        self.assertIn("BEGIN CERTIFICATE", cert.read_text())

        client = self.echo_tunnel(server)
        client.wait_log(h.rx(LOG_CLIENT_OVER_TLS, group="home"))
        server.wait_log(h.rx(LOG_SERVER_OVER_TLS, group="home"))
        self.assert_echo(self.wait_app(client, "web"), data=os.urandom(256 * 1024))
        self.assertIsNone(server.find(r"(?i)TLS is off"))
        self.assertIsNone(client.find(r"(?i)TLS is off"))

        # The same state directory: the same certificate, so pins stay valid.
        self.assertEqual(client.stop(), 0)
        self.assertEqual(server.stop(), 0)
        again = self.start_server(dict(server.config), name="server",
                                  env={"HOME": str(self.tmp / f"{server.name}-home")})
        again.wait_log(r"using the self-signed TLS certificate")
        self.assertEqual(self.fingerprint(again), fp)

    def test_user_bytes_and_token_never_cross_the_wire_in_clear(self):
        server = self.start_server(self.server_config())
        proxy = h.RecordingProxy(server.bind_port)
        self.addCleanup(proxy.close)
        echo = self.echo_server()
        client = self.start_client(self.client_config(
            proxy.port, [h.app("web", echo.port, h.free_port())], token=server.token))
        remote = self.wait_app(client, "web")
        marker = b"MARKER-" + os.urandom(8).hex().encode() + b"-END"
        self.assert_echo(remote, data=marker * 50)  # it has crossed the proxy both ways
        wire = b"".join(bytes(r) for r in proxy.sent)
        self.assertGreater(len(wire), 0)
        self.assertNotIn(marker, wire, "a user's bytes crossed the wire in clear")
        self.assertNotIn(server.token.encode(), wire, "the token crossed the wire")
        self.assertNotIn(b"NTPT", wire, "the ntp prefix is visible: not inside TLS")
        self.assertTrue(all(bytes(r[:1]) in (b"", b"\x16") for r in proxy.sent),
                        "every connection starts with a TLS ClientHello")

    # -- man in the middle --------------------------------------------------

    def mitm_certificate(self):
        """Another server's generated certificate: what a man in the middle has."""
        other = self.start_server(self.server_config(), name="mitm-source")
        self.fingerprint(other)
        state = self.state_dir(other)
        return other, str(state / "tls-cert.pem"), str(state / "tls-key.pem")

    def test_man_in_the_middle_with_another_certificate_fails_on_both_sides(self):
        server = self.start_server(self.server_config())
        _, cert, key = self.mitm_certificate()
        mitm = MitmProxy(server.bind_port, cert, key)
        self.addCleanup(mitm.close)
        echo = self.echo_server()
        remote = h.free_port()
        client = self.start_client(self.client_config(
            mitm.port, [h.app("web", echo.port, remote)], token=server.token))
        # The client's proof was made for its TLS session with the proxy: the
        # server, on its own session with the proxy, cannot verify it.
        server.wait_log(h.rx(h.LOG_SERVER_AUTH_FAILED, group="home"))
        client.wait_log(r"login refused by the server: authentication failed")
        self.assertGreaterEqual(mitm.relayed, 1, "the proxy never relayed a connection")
        self.assertIsNone(server.find(h.rx(h.LOG_SERVER_LOGIN, group="home")))
        self.assertIsNone(client.find(h.rx(h.LOG_CLIENT_LOGIN, group="home", port=mitm.port)))
        self.assertTrue(h.is_refused(remote), "a port opened through a man in the middle")
        self.assertTrue(server.alive() and client.alive())

    def test_impostor_that_accepts_any_login_is_named_plainly(self):
        """A TLS server that welcomes any login (it cannot know the token, so
        it makes up the server proof): the client drops it and says why,
        before sending its apps."""
        _, cert, key = self.mitm_certificate()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        seen = {"after": b""}

        def impostor():
            raw, _ = listener.accept()
            with ctx.wrap_socket(raw, server_side=True) as s:
                try:
                    self.assertEqual(h.recv_exact(s, 5), h.MAGIC)
                    h.send_frame(s, {"type": "challenge", "nonce": os.urandom(32).hex()})
                    h.recv_frame(s)
                    h.send_frame(s, {"type": "welcome", "session": os.urandom(16).hex(),
                                     "proof": os.urandom(32).hex(), "heartbeat_timeout_s": 30})
                    s.settimeout(h.STEP_S)
                    seen["after"] = s.recv(65536)
                except (OSError, ssl.SSLError, AssertionError):
                    pass

        threading.Thread(target=impostor, daemon=True).start()
        port = listener.getsockname()[1]
        client = self.start_client(self.client_config(
            port, [h.app("web", h.free_port(), h.free_port())], token=self.token("real")))
        client.wait_log(LOG_CLIENT_MITM)
        self.assertNotIn(b"register", seen["after"], "apps sent to an unproven server")

    def test_pinned_fingerprint(self):
        server = self.start_server(self.server_config())
        fp = self.fingerprint(server)
        with self.subTest("the printed fingerprint, pasted as is"):
            client = self.echo_tunnel(server, tls={"server_fingerprint": fp})
            client.wait_log(r"the server's certificate must be " + fp)
            self.assert_echo(self.wait_app(client, "web"))
            self.assertEqual(client.stop(), 0)
        with self.subTest("upper-case hex is the same fingerprint"):
            upper = "SHA256:" + fp[7:].upper()
            client = self.echo_tunnel(server, tls={"server_fingerprint": upper})
            self.wait_login(client)
            self.assertEqual(client.stop(), 0)
        with self.subTest("another certificate behind the right address"):
            _, cert, key = self.mitm_certificate()
            mitm = MitmProxy(server.bind_port, cert, key)
            self.addCleanup(mitm.close)
            since = server.mark()
            client = self.start_client(self.client_config(
                mitm.port, [h.app("web", h.free_port(), h.free_port())], token=server.token,
                tls={"server_fingerprint": fp}))
            m = client.wait_log(LOG_CLIENT_PIN_MISMATCH + r".*man in the middle")
            self.assertIn(fp, m.string[m.start():].splitlines()[0])
            # Nothing keyed by the token was sent: the server saw no login at all.
            self.assertIsNone(server.find(h.rx(h.LOG_SERVER_AUTH_FAILED, group="home"),
                                          since=since))

    # -- plain and TLS peers told apart ------------------------------------

    def assert_told_before_the_handshake_timeout(self, client, told):
        """From the client's start-up line (it connects next) to the line saying
        what is wrong, by the client's own clock: less than the handshake
        timeout, which a mismatch nobody noticed would wait out."""
        began = h.log_time(client.wait_log(r"ntp-client \S+ starting"))
        self.assertLess(h.log_time(told) - began, h.HANDSHAKE_TIMEOUT_S,
                        "a mismatch must not wait for a timeout")

    def test_plain_client_to_tls_server(self):
        server = self.start_server(self.server_config())
        client = self.start_client(self.client_config(
            server, [h.app("web", h.free_port(), h.free_port())], tls=False))
        client.wait_log(r"TLS is off")
        told = client.wait_log(r"login refused by the server: this server requires TLS: remove "
                               r"\"tls\": false")
        server.wait_log(r"rejected 127\.0\.0\.1:\d+: a plain-TCP ntp client, but this server "
                        r"requires TLS")
        self.assert_told_before_the_handshake_timeout(client, told)

    def test_tls_client_to_plain_server(self):
        server = self.start_server(self.server_config(tls=False))
        server.wait_log(r"TLS is off")
        client = self.start_client(self.client_config(
            server, [h.app("web", h.free_port(), h.free_port())]))
        told = client.wait_log(r"TLS handshake: the server did not answer in TLS: it runs with "
                               r"\"tls\": false")
        server.wait_log(r"rejected 127\.0\.0\.1:\d+: it speaks TLS, but this server runs with "
                        r"\"tls\": false")
        self.assert_told_before_the_handshake_timeout(client, told)

    def test_plain_on_both_sides_works_and_warns(self):
        server = self.start_server(self.server_config(tls=False))
        client = self.echo_tunnel(server, tls=False)
        self.assert_echo(self.wait_app(client, "web"))
        client.wait_log(r"group=home: logged in to \S+ over plain TCP")
        for d in (server, client):
            d.wait_log(r"warning TLS is off \(\"tls\": false\)")

    # -- certificates from a CA ---------------------------------------------

    def make_pki(self):
        """A CA, a server certificate for 127.0.0.1 and a client certificate."""
        if not shutil.which("openssl"):
            self.fail("the openssl command is needed (Debian package openssl)")
        d = self.tmp / "pki"
        d.mkdir()
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=ntp test CA", cwd=d)
        for name, ext in (("server", "subjectAltName=IP:127.0.0.1"),
                          ("client", "extendedKeyUsage=clientAuth")):
            openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=ntp {name}",
                    cwd=d)
            (d / f"{name}.ext").write_text(ext + "\n")
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                    "-extfile", f"{name}.ext", cwd=d)
        return {k: str(d / v) for k, v in {
            "ca": "ca.pem", "server_cert": "server.pem", "server_key": "server.key",
            "client_cert": "client.pem", "client_key": "client.key"}.items()}

    def test_server_certificate_verified_against_a_ca(self):
        pki = self.make_pki()
        server = self.start_server(self.server_config(
            tls={"cert": pki["server_cert"], "key": pki["server_key"]}))
        self.assertIsNone(server.find(r"self-signed"))
        with self.subTest("tls.ca: the chain and the address are checked"):
            client = self.echo_tunnel(server, tls={"ca": pki["ca"]})
            client.wait_log(r"certificate must chain to tls\.ca")
            self.assert_echo(self.wait_app(client, "web"))
            self.assertEqual(client.stop(), 0)
        with self.subTest("a server whose certificate the CA did not sign"):
            other = self.start_server(self.server_config(), name="self-signed")
            client = self.echo_tunnel(other, tls={"ca": pki["ca"]})
            client.wait_log(r"TLS handshake: certificate verify failed")
            self.assertIsNone(other.find(h.rx(h.LOG_SERVER_LOGIN, group="home")))

    def test_mutual_tls(self):
        pki = self.make_pki()
        server = self.start_server(self.server_config(tls={"client_ca": pki["ca"]}))
        with self.subTest("a client without a certificate is refused in the handshake"):
            client = self.echo_tunnel(server)
            server.wait_log(r"rejected 127\.0\.0\.1:\d+: TLS handshake: peer did not return a "
                            r"certificate")
            # The TLS 1.3 client finishes its side first: it sees the server's
            # alert, or the connection closing under the alert.
            client.wait_log(r"login: (tlsv13 alert certificate required|the server closed the "
                            r"connection .*tls\.cert and tls\.key)")
            self.assertIsNone(server.find(h.rx(h.LOG_SERVER_LOGIN, group="home")))
            self.assertEqual(client.stop(), 0)
        with self.subTest("a client with a certificate the CA signed"):
            client = self.echo_tunnel(
                server, tls={"cert": pki["client_cert"], "key": pki["client_key"]})
            self.assert_echo(self.wait_app(client, "web"))

    # -- configuration --------------------------------------------------------

    def test_tls_config_errors_exit_2_naming_the_key(self):
        pki = self.make_pki()
        cases = [
            (h.SERVER_BIN, {"tls": {"cert": pki["server_cert"]}},
             r"server\.json: tls\.key: expected \"cert\" and \"key\" together"),
            (h.SERVER_BIN, {"tls": {"crt": "x"}},
             r"server\.json: tls\.crt: expected one of the keys cert, client_ca, key"),
            (h.SERVER_BIN, {"tls": "yes"}, r"server\.json: tls: expected false, true or an object"),
            (h.SERVER_BIN, {"tls": {"cert": pki["server_cert"], "key": pki["client_key"]}},
             r"server\.json: tls: .*tls\.key .*(does not match|mismatch)"),
            (h.CLIENT_BIN, {"tls": {"server_fingerprint": "ab:cd"}},
             r"apps\.json: tls\.server_fingerprint: expected \"SHA256:\" followed by 64 hex"),
            (h.CLIENT_BIN, {"tls": {"ca": str(self.tmp / "missing.pem")}},
             r"apps\.json: tls\.ca: expected a readable file, got .*missing\.pem"),
        ]
        for binary, keys, expected in cases:
            with self.subTest(keys=keys):
                if binary == h.SERVER_BIN:
                    path = self.write_json("server.json", {"bind": "127.0.0.1:0", **keys})
                else:
                    path = self.write_json("apps.json", {
                        "server": "127.0.0.1:1", "group": "g", "token": "t",
                        "apps": [h.app("a", 1, 0)], **keys})
                r = self.run_binary(binary, ["--check", "-c", path])
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertRegex(r.stderr, expected)

    def test_shipped_examples_with_certificate_files_pass_check(self):
        """configs/server-tls-files.json and apps-mtls.json, with the files they
        name made (in a temp dir standing in for /etc/ntp-tunnel)."""
        pki = self.make_pki()
        files = {"server.pem": pki["server_cert"], "server.key": pki["server_key"],
                 "clients-ca.pem": pki["ca"], "ca.pem": pki["ca"],
                 "client.pem": pki["client_cert"], "client.key": pki["client_key"]}
        creds = self.tmp / "credentials"
        creds.mkdir()
        for name, src in files.items():
            shutil.copy(src, creds / name)
        (creds / "home.token").write_text("home-9f2c4e7a1b6d8035\n")
        configs = h.REPO_ROOT / "configs"
        for example, binary, extra in (("server-tls-files.json", h.SERVER_BIN,
                                        ["--bind", "127.0.0.1:0"]),
                                       ("apps-mtls.json", h.CLIENT_BIN, [])):
            with self.subTest(example=example):
                text = (configs / example).read_text()
                text = re.sub(r"/etc/ntp-tunnel(/tls)?", str(creds), text)
                path = self.write_file(example, text)
                r = self.run_binary(binary, ["--check", "-c", path, *extra])
                self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
