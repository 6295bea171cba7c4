"""Command lines, exit codes, config errors, --check, the generated token,
flags overriding files."""

import os
import stat
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

BINARIES = {"server": h.SERVER_BIN, "client": h.CLIENT_BIN}


class CliTest(h.TunnelTestCase):
    # -- helpers ----------------------------------------------------------

    def good_client(self, **keys):
        cfg = self.client_config(h.free_port(), [h.app("ssh", 2222, h.free_port())],
                                 token=self.token("client"))
        cfg.update(keys)
        return cfg

    def check(self, binary, config, filename, *extra):
        """Run `binary --check -c <filename>` and return (exit code, output)."""
        path = self.write_json(filename, config)
        p = self.run_binary(binary, ["--check", "-c", path, *extra])
        return p.returncode, p.stdout + p.stderr

    def assert_config_error(self, binary, config, filename, *expected):
        """--check and a normal start both exit 2; output names every regex in
        `expected` (file and JSON path)."""
        for args in (["--check"], []):
            with self.subTest(args=args):
                path = self.write_json(filename, config)
                p = self.run_binary(binary, [*args, "-c", path])
                out = p.stdout + p.stderr
                self.assertEqual(p.returncode, 2, f"exit code; output:\n{out}")
                for regex in expected:
                    self.assertRegex(out, regex)

    # -- --version, --help, usage ---------------------------------------

    def test_version(self):
        for name, binary in BINARIES.items():
            with self.subTest(name):
                p = self.run_binary(binary, ["--version"])
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertRegex(p.stdout, r"\d+\.\d+", "version on stdout")

    def test_help(self):
        expected = {"server": ["--bind", "-c", "--token", "--log-level", "--check", "--version"],
                    "client": ["-c", "--server", "--log-level", "--check", "--version"]}
        for name, binary in BINARIES.items():
            with self.subTest(name):
                p = self.run_binary(binary, ["--help"])
                self.assertEqual(p.returncode, 0, p.stderr)
                for flag in expected[name]:
                    self.assertIn(flag, p.stdout, f"{name} --help on stdout")

    def test_usage_errors_exit_2(self):
        # A real bind address and token on the server cases, so a server that
        # wrongly accepts the bad flag does not grab port 7000 meanwhile.
        bind = ["--bind", f"127.0.0.1:{h.free_port()}", "--token", self.token()]
        cases = [("server", ["--frobnicate", *bind]), ("client", ["--frobnicate"]),
                 ("client", []),  # -c is required
                 ("server", ["--log-level", "loud", *bind]),
                 ("server", ["--token", self.token(), "--bind", "nonsense"]),
                 ("server", ["--token", "", "--bind", f"127.0.0.1:{h.free_port()}"]),
                 ("client", ["-c", str(self.tmp / "missing.json")])]
        for name, args in cases:
            with self.subTest(name=name, args=args):
                p = self.run_binary(BINARIES[name], args)
                self.assertEqual(p.returncode, 2, f"output:\n{p.stdout}{p.stderr}")

    # -- config errors -----------------------------------------------------

    def test_bad_local_names_file_and_json_path(self):
        cfg = self.good_client()
        cfg["apps"].append({"name": "web", "local": "22", "remote_port": 6080})
        self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json",
                                 r'apps\.json: apps\[1\]\.local: .*"?22"?')

    def test_every_problem_is_reported(self):
        cfg = self.good_client()
        cfg["apps"] = [{"name": "a", "local": "nowhere", "remote_port": 6000},
                       {"name": "b", "local": "127.0.0.1:80", "remote_port": "x"}]
        self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json",
                                 r"apps\[0\]\.local", r"apps\[1\]\.remote_port")

    def test_unknown_keys_are_errors(self):
        cfg = self.good_client(colour="blue")
        self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json", r"apps\.json: .*colour")
        cfg = self.good_client()
        cfg["apps"][0]["nmae"] = "x"
        self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json", r"apps\[0\]\.nmae|nmae")
        scfg = self.server_config(bnid="0.0.0.0:7000")
        self.assert_config_error(h.SERVER_BIN, scfg, "server.json", r"server\.json: .*bnid")
        scfg = self.server_config(groups={"home": {"token": self.token(), "tokn": "x"}})
        self.assert_config_error(h.SERVER_BIN, scfg, "server.json", r"groups\.home\.tokn|tokn")

    def test_missing_or_empty_required_client_keys(self):
        cases = {"group": ("group", None), "apps": ("apps", []),
                 "remote_port": ("apps", [{"name": "a", "local": "127.0.0.1:22"}])}
        for what, (key, value) in cases.items():
            with self.subTest(what):
                cfg = self.good_client()
                if value is None:
                    del cfg[key]
                else:
                    cfg[key] = value
                self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json", what)

    def test_client_without_any_token(self):
        cfg = self.good_client()
        del cfg["token"]
        self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json", r"(?i)token")

    def test_empty_tokens_are_errors(self):
        self.assert_config_error(h.CLIENT_BIN, self.good_client(token=""), "apps.json", r"token")
        self.assert_config_error(h.SERVER_BIN, self.server_config(token=""), "server.json", r"token")
        scfg = self.server_config(groups={"home": {"token": ""}})
        self.assert_config_error(h.SERVER_BIN, scfg, "server.json", r"groups\.home\.token")
        scfg = self.server_config(groups={"home": {}})  # a ready group needs a token
        self.assert_config_error(h.SERVER_BIN, scfg, "server.json", r"groups\.home")

    def test_bad_names_are_errors(self):
        self.assert_config_error(h.CLIENT_BIN, self.good_client(group="bad name"), "apps.json",
                                 r"group")
        cfg = self.good_client()
        cfg["apps"][0]["name"] = "x" * 65
        self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json", r"apps\[0\]\.name")
        cfg = self.good_client()
        cfg["apps"].append(dict(cfg["apps"][0], remote_port=h.free_port()))
        self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json", r"(?i)apps\[1\]\.name|duplicate")
        scfg = self.server_config(groups={"bad/name": {"token": self.token()}})
        self.assert_config_error(h.SERVER_BIN, scfg, "server.json", r"groups")

    def test_bad_allow_ports_are_errors(self):
        for entry in (["7000-6000"], ["abc"], [6022], ["70000"]):
            with self.subTest(entry=entry):
                self.assert_config_error(h.SERVER_BIN, self.server_config(allow_ports=entry),
                                         "server.json", r"allow_ports\[0\]")
        scfg = self.server_config(allow_ports=["6000-6999"],
                                  groups={"home": {"token": self.token(),
                                                   "allow_ports": ["5000-5100"]}})
        self.assert_config_error(h.SERVER_BIN, scfg, "server.json", r"groups\.home\.allow_ports")

    def test_bad_values_are_errors(self):
        cases = [(h.SERVER_BIN, self.server_config(heartbeat_timeout_s=0), "server.json",
                  r"heartbeat_timeout_s"),
                 (h.SERVER_BIN, self.server_config(log_level="loud"), "server.json", r"log_level"),
                 (h.SERVER_BIN, self.server_config(bind="127.0.0.1"), "server.json", r"bind"),
                 (h.CLIENT_BIN, self.good_client(heartbeat_interval_s=-1), "apps.json",
                  r"heartbeat_interval_s"),
                 (h.CLIENT_BIN, self.good_client(server="nohost"), "apps.json", r"server")]
        for binary, cfg, filename, expected in cases:
            with self.subTest(expected):
                self.assert_config_error(binary, cfg, filename, expected)
        cfg = self.good_client()
        cfg["apps"][0]["type"] = "udp"
        self.assert_config_error(h.CLIENT_BIN, cfg, "apps.json", r"apps\[0\]\.type")

    def test_not_json_is_an_error(self):
        path = self.write_file("apps.json", '{"server": ')
        p = self.run_binary(h.CLIENT_BIN, ["--check", "-c", path])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("apps.json", p.stdout + p.stderr)

    # -- --check ----------------------------------------------------------

    def test_check_good_configs(self):
        code, out = self.check(h.SERVER_BIN, self.server_config(), "server.json")
        self.assertEqual(code, 0, out)
        code, out = self.check(h.CLIENT_BIN, self.good_client(), "apps.json")  # no server needed
        self.assertEqual(code, 0, out)

    def test_server_check_with_bind_port_in_use(self):
        cfg = self.server_config()
        port = int(cfg["bind"].rsplit(":", 1)[1])
        holder = h.hold_port(port)
        self.addCleanup(holder.close)
        code, out = self.check(h.SERVER_BIN, cfg, "server.json")
        self.assertEqual(code, 2, out)
        self.assertIn(str(port), out)

    def test_server_start_with_bind_port_in_use_exits_1(self):
        cfg = self.server_config()
        port = int(cfg["bind"].rsplit(":", 1)[1])
        holder = h.hold_port(port)
        self.addCleanup(holder.close)
        server = self.start_server(cfg, wait_ready=False)
        self.assertEqual(server.wait_exit(5.0), 1)
        self.assertIn(str(port), server.log())

    # -- tokens -----------------------------------------------------------

    def token_line(self, server):
        return server.wait_log(r".*generated.*").group(0)

    def test_generated_token_saved_and_reused(self):
        home = self.tmp / "state-home"
        path = home / ".local" / "state" / "ntp-server" / "token"
        bind = ["--bind", f"127.0.0.1:{h.free_port()}"]
        first = self.start_server(args=bind, env={"HOME": str(home)})
        line = self.token_line(first)
        self.assertTrue(path.is_file(), f"{path} not written")
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600, f"mode of {path}")
        token = path.read_text().strip()
        self.assertGreaterEqual(len(token), 16, "generated token too short")
        self.secrets.add(token)  # from now on it must not appear in any other line
        self.assertIn(token, line)
        self.assertIn(str(path), line)
        self.assertEqual(first.stop(), 0)

        second = self.start_server(args=bind, env={"HOME": str(home)})
        self.assertIsNone(second.find(h.LOG_SERVER_GENERATED), "token generated again")
        self.assertNotIn(token, second.log(), "a reused token must not be printed")
        self.assertEqual(path.read_text().strip(), token, "token file changed")

        second.token = token
        echo = self.echo_server()
        client = self.start_client(self.client_config(second, [h.app("ssh", echo.port, h.free_port())]))
        self.assert_echo(self.wait_app(client, "ssh"))

    def test_generated_token_goes_to_state_directory(self):
        state = self.tmp / "state"
        state.mkdir(mode=0o700)
        server = self.start_server(args=["--bind", f"127.0.0.1:{h.free_port()}"],
                                   env={"STATE_DIRECTORY": str(state)})
        line = self.token_line(server)
        path = state / "token"
        self.assertTrue(path.is_file(), f"{path} not written")
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertIn(str(path), line)
        self.assertFalse((self.tmp / "server-home" / ".local" / "state" / "ntp-server" / "token").exists())

    def test_no_file_bind_and_token_flags_make_a_working_server(self):
        token = self.token("flag")
        server = self.start_server(args=["--bind", f"127.0.0.1:{h.free_port()}", "--token", token])
        self.assertIsNone(server.find(h.LOG_SERVER_GENERATED))
        echo = self.echo_server()
        client = self.start_client(self.client_config(server, [h.app("ssh", echo.port, h.free_port())]))
        self.assert_echo(self.wait_app(client, "ssh"))

    # -- flags override the file --------------------------------------------

    def test_flags_override_file(self):
        cfg = self.server_config()
        file_port = int(cfg["bind"].rsplit(":", 1)[1])
        flag_port = h.free_port()
        server = self.start_server(cfg, args=["--bind", f"127.0.0.1:{flag_port}"])
        self.assertTrue(h.is_refused(file_port), "server listens on the file's bind port")

        echo = self.echo_server()
        ccfg = self.client_config(h.free_port(), [h.app("ssh", echo.port, h.free_port())],
                                  token=cfg["token"])
        client = self.start_client(ccfg, args=["--server", f"127.0.0.1:{flag_port}"])
        client.wait_log(h.rx(h.LOG_CLIENT_LOGIN, group="home", port=flag_port))
        self.assert_echo(self.wait_app(client, "ssh"))

    def test_log_level_flag_overrides_file(self):
        cfg = self.server_config(log_level="debug")
        server = self.start_server(cfg, args=["--log-level", "warn"], wait_ready=False)
        h.wait_port_open(server.bind_port)
        echo = self.echo_server()
        remote = h.free_port()
        client = self.start_client(
            self.client_config(server, [h.app("ssh", echo.port, remote)], log_level="debug"),
            args=["--log-level", "error"])
        h.wait_port_open(remote)
        self.assert_echo(remote)
        self.assertIsNone(server.find(h.rx(h.LOG_SERVER_READY, port=server.bind_port)),
                          "info line logged at --log-level warn")
        self.assertIsNone(client.find(h.rx(h.LOG_CLIENT_LOGIN, group="home", port=server.bind_port)),
                          "info line logged at --log-level error")


if __name__ == "__main__":
    unittest.main()
