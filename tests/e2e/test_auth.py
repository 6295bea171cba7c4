"""Authentication: tokens, ready groups, token sources and precedence, the
client checking the server's proof. Every test also checks (in the base
class) that no token ever appears in a log."""

import os
import secrets
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# A refused login for a group the server does not know: the server may say
# "authentication failed" (best: tells an attacker nothing) or name the group
# as unknown.
LOG_SERVER_GROUP_REFUSED = r"group={group}\b.*(authentication failed|unknown|not allowed|refused|rejected|not configured)"


class AuthTest(h.TunnelTestCase):
    def login_ok(self, server, group="home", token=None, env=None, name="client", **keys):
        """Start a client for `group` with one echo app; assert it logs in and
        the tunnel works. Returns the client."""
        echo = self.echo_server()
        client = self.start_client(
            self.client_config(server, [h.app("app", echo.port, h.free_port())],
                               group=group, token=token, **keys),
            env=env, name=name)
        self.wait_login(client)
        port = self.wait_app(client, "app")
        self.assert_echo(port)
        return client

    def login_refused(self, server, group="home", token=None, env=None, name="client",
                      server_says=h.LOG_SERVER_AUTH_FAILED, **keys):
        """Start a client that must be refused: both sides log it and the
        app's remote port never opens."""
        remote = h.free_port()
        since = server.mark()
        # Refusals before this one make 127.0.0.1 wait: the last one says how
        # long (LoginThrottle, from kFirstDelay doubling). Attempts meanwhile are
        # turned away unheard, and the one after the wait comes at the client's
        # next retry, at most Backoff's cap later.
        throttled = server.findall(r"\(next attempt from 127\.0\.0\.1 allowed in (\d+) s\)")
        wait = int(throttled[-1].group(1)) if throttled else 0
        client = self.start_client(
            self.client_config(server, [h.app("app", h.free_port(), remote)],
                               group=group, token=token, **keys),
            env=env, name=name)
        # Retrying or exiting after a refused login are both acceptable.
        client.expected_exit = True
        server.wait_log(h.rx(server_says, group=group), since=since,
                        timeout=wait + h.BACKOFF_CAP_S + h.STEP_S)
        client.wait_log(h.rx(h.LOG_CLIENT_LOGIN_FAILED, group=group))
        self.assertIsNone(client.find(h.rx(h.LOG_CLIENT_LOGIN, group=group, port=server.bind_port)),
                          "refused client says it logged in")
        self.assertIsNone(server.find(h.rx(h.LOG_SERVER_LOGIN, group=group), since=since),
                          "server says the refused client logged in")
        self.assertTrue(h.is_refused(remote), f"app port {remote} opened for a refused login")
        client.kill()  # its retries would match the next refusal's log lines
        return client

    # -- open mode --------------------------------------------------------

    def test_wrong_token_refused_and_no_port_opens(self):
        server = self.start_server(self.server_config())
        wrong = self.token("wrong")
        client = self.login_refused(server, token=wrong)
        for d in (server, client):
            self.assertNotIn(server.token, d.log(), f"{d.name} logged the server token")
            self.assertNotIn(wrong, d.log(), f"{d.name} logged the wrong token")
        # The server keeps working for the right token.
        client.kill()
        self.login_ok(server, name="good")

    # -- ready groups -----------------------------------------------------

    def test_ready_groups(self):
        home, office = self.token("home"), self.token("office")
        server = self.start_server(self.server_config(
            groups={"home": {"token": home}, "office": {"token": office}}))
        server.wait_log(h.LOG_SERVER_TOKEN_IGNORED)  # the server-wide token is ignored

        with self.subTest("listed group with its own token works"):
            self.login_ok(server, group="home", token=home, name="home")
        # Before the refusals below: each failed login makes 127.0.0.1 wait
        # longer (1, 2, 4 s), which would hold up a good login after them.
        with self.subTest("second listed group with its own token works"):
            self.assertEqual(self.login_ok(server, group="office", token=office,
                                           name="office").stop(), 0)
        with self.subTest("group not listed is refused"):
            self.login_refused(server, group="guest", token=server.token, name="guest",
                               server_says=LOG_SERVER_GROUP_REFUSED)
        with self.subTest("server-wide token not accepted for a ready group"):
            self.login_refused(server, group="office", token=server.token, name="office-wide")
        with self.subTest("another group's token not accepted"):
            self.login_refused(server, group="office", token=home, name="office-home")

    def test_ready_groups_never_generate_a_token(self):
        server = self.start_server(self.server_config(
            token=None, groups={"home": {"token": self.token("home")}}))
        self.assertIsNone(server.find(h.LOG_SERVER_GENERATED), "a token was generated")
        state = self.tmp / "server-home" / ".local" / "state" / "ntp-server" / "token"
        self.assertFalse(state.exists(), f"{state} was written")
        self.login_ok(server, group="home", token=server.config["groups"]["home"]["token"])

    # -- server token precedence: --token, NTP_TOKEN, file ------------------

    def test_server_token_flag_beats_env_and_file(self):
        file_tok, env_tok, flag_tok = self.token("file"), self.token("env"), self.token("flag")
        server = self.start_server(self.server_config(token=file_tok),
                                   args=["--token", flag_tok], env={"NTP_TOKEN": env_tok})
        self.login_ok(server, group="g1", token=flag_tok, name="flag")
        self.login_refused(server, group="g2", token=env_tok, name="env")
        self.login_refused(server, group="g3", token=file_tok, name="file")

    def test_server_token_env_beats_file(self):
        file_tok, env_tok = self.token("file"), self.token("env")
        server = self.start_server(self.server_config(token=file_tok), env={"NTP_TOKEN": env_tok})
        self.login_ok(server, group="g1", token=env_tok, name="env")
        self.login_refused(server, group="g2", token=file_tok, name="file")

    # -- client token sources: NTP_TOKEN, token_file, token -----------------

    def test_client_token_from_env(self):
        server = self.start_server(self.server_config())
        self.login_ok(server, token=None, env={"NTP_TOKEN": server.token})

    def test_client_env_token_beats_config_token(self):
        server = self.start_server(self.server_config())
        self.login_ok(server, token=self.token("wrong"), env={"NTP_TOKEN": server.token})

    def test_client_token_file(self):
        server = self.start_server(self.server_config())
        path = self.write_file("token", server.token)
        self.login_ok(server, token=None, token_file=str(path))

    def test_client_token_file_with_trailing_newline(self):
        # A file written with `echo` or an editor ends in a newline.
        server = self.start_server(self.server_config())
        path = self.write_file("token", server.token + "\n")
        self.login_ok(server, token=None, token_file=str(path))

    def test_client_token_file_beats_config_token(self):
        server = self.start_server(self.server_config())
        path = self.write_file("token", server.token)
        self.login_ok(server, token=self.token("wrong"), token_file=str(path))

    def test_client_env_token_beats_token_file(self):
        server = self.start_server(self.server_config())
        path = self.write_file("token", self.token("wrong"))
        self.login_ok(server, token=None, token_file=str(path), env={"NTP_TOKEN": server.token})

    # -- mutual authentication ------------------------------------------

    def test_client_rejects_server_that_cannot_prove_the_token(self):
        # A fake server that answers the login with a made-up proof: the
        # client must drop the connection and never send its apps.
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        port = listener.getsockname()[1]
        seen = {"login": None, "after": bytearray(), "client_closed": False}
        done = threading.Event()

        def fake_server():
            conn, _ = listener.accept()
            with conn:
                try:
                    if h.recv_exact(conn, 5) != h.MAGIC:
                        return
                    h.send_frame(conn, {"type": "challenge", "nonce": secrets.token_hex(32)})
                    seen["login"] = h.recv_frame(conn)
                    h.send_frame(conn, {"type": "welcome", "session": secrets.token_hex(16),
                                        "proof": secrets.token_hex(32), "heartbeat_timeout_s": 30})
                    conn.settimeout(h.STEP_S)
                    while True:
                        data = conn.recv(65536)
                        if not data:
                            seen["client_closed"] = True
                            break
                        seen["after"] += data
                except (ConnectionResetError, BrokenPipeError):
                    seen["client_closed"] = True
                except (AssertionError, OSError, ValueError):
                    pass
                finally:
                    done.set()

        threading.Thread(target=fake_server, daemon=True).start()
        token = self.token("client")
        client = self.start_client(self.client_config(  # plain: the fake speaks no TLS
            port, [h.app("ssh", h.free_port(), h.free_port())], token=token, tls=False))
        client.expected_exit = True  # retrying or exiting are both fine
        self.assertTrue(done.wait(h.STEP_S + 2), "fake server never finished")
        self.assertIsNotNone(seen["login"], "client sent no login frame")
        self.assertEqual(seen["login"].get("type"), "login")
        self.assertTrue(seen["client_closed"], "client kept talking to a server with a bad proof")
        self.assertNotIn(b"register", bytes(seen["after"]),
                         "client sent its apps to an unproven server")
        self.assertIsNone(client.find(h.rx(h.LOG_CLIENT_LOGIN, group="home", port=port)))
        self.assertNotIn(token, str(seen["login"]), "the token crossed the wire")


if __name__ == "__main__":
    unittest.main()
