"""Command lines, exit codes, config errors, --check, the generated token,
flags overriding files, the token floor, --gen-token, start-up warnings about
secrets other users can read."""

import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

BINARIES = {"server": h.SERVER_BIN, "client": h.CLIENT_BIN}
FOREIGN_GID = 12345  # a group the daemons (run by the tests as root) are not in


def config_path(daemon):
    """The -c file a daemon was started with."""
    return daemon.argv[daemon.argv.index("-c") + 1]


class CliTest(h.TunnelTestCase):
    # -- helpers ----------------------------------------------------------

    def good_client(self, **keys):
        cfg = self.client_config(h.free_port(), [h.app("ssh", 2222, h.free_port())],
                                 token=self.token("client"))
        cfg.update(keys)
        return {k: v for k, v in cfg.items() if v is not None}  # None: leave the key out

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
        cfg["apps"][0]["type"] = "sctp"
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
        self.assertRegex(token, rf"^[0-9a-f]{{{h.GENERATED_TOKEN_HEX}}}$",
                         "the generated token: kGeneratedTokenBytes random bytes, hex")
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

    # -- the token floor ----------------------------------------------------

    def short_token(self, length=7):
        """A token under the floor, registered so that no daemon log may show it."""
        token = ("s" + secrets.token_hex(length))[:length]
        self.secrets.add(token)
        return token

    def assert_short_token(self, binary, argv, where, token, env=None):
        """--check and a real start both exit 2 with a line naming `where` and
        the token's length, and the output never shows the token."""
        for mode in (["--check"], []):
            with self.subTest(where=where, args=mode):
                p = self.run_binary(binary, [*mode, *argv], env=env)
                out = p.stdout + p.stderr
                self.assertEqual(p.returncode, 2, f"exit code; output:\n{out}")
                self.assertRegex(out, h.rx(h.LOG_SHORT_TOKEN, where=where,
                                           min=h.MIN_TOKEN_LENGTH, length=len(token)))
                self.assertNotIn(token, out, "the message shows the token")

    def assert_check_ok(self, binary, argv, env=None, hidden=()):
        """--check passes; returns its output, which shows none of `hidden`."""
        p = self.run_binary(binary, ["--check", *argv], env=env)
        out = p.stdout + p.stderr
        self.assertEqual(p.returncode, 0, f"--check {argv}: exit code; output:\n{out}")
        for token in hidden:
            self.assertNotIn(token, out, "--check output shows a token")
        return out

    def test_short_server_tokens_are_errors_naming_their_source(self):
        short = self.short_token()
        with self.subTest("groups.NAME.token"):
            path = self.write_json("server.json", self.server_config(
                groups={"home": {"token": short}, "office": {"token": self.token()}}))
            self.assert_short_token(h.SERVER_BIN, ["-c", path], f"{path}: groups.home.token",
                                    short)
        with self.subTest("the file's server-wide token, the one in use"):
            path = self.write_json("server-wide.json", self.server_config(token=short))
            self.assert_short_token(h.SERVER_BIN, ["-c", path], f"{path}: token", short)
        with self.subTest("NTP_TOKEN, which beats the file's good token"):
            path = self.write_json("server-env.json", self.server_config())
            self.assert_short_token(h.SERVER_BIN, ["-c", path], "NTP_TOKEN", short,
                                    env={"NTP_TOKEN": short})
        with self.subTest("--token, which beats a good NTP_TOKEN"):
            self.assert_short_token(
                h.SERVER_BIN, ["--bind", f"127.0.0.1:{h.free_port()}", "--token", short],
                "--token", short, env={"NTP_TOKEN": self.token("env")})

    def test_short_client_tokens_are_errors_naming_their_source(self):
        short = self.short_token(9)
        with self.subTest("token"):
            path = self.write_json("apps.json", self.good_client(token=short))
            self.assert_short_token(h.CLIENT_BIN, ["-c", path], f"{path}: token", short)
        with self.subTest("NTP_TOKEN, which beats the file's good token"):
            path = self.write_json("apps-env.json", self.good_client())
            self.assert_short_token(h.CLIENT_BIN, ["-c", path], f"{path}: NTP_TOKEN", short,
                                    env={"NTP_TOKEN": short})
        with self.subTest("token_file, which beats the file's good token"):
            # The final newline an editor adds is not part of the token, nor of its length.
            token_file = self.write_file("token", short + "\n")
            path = self.write_json("apps-file.json", self.good_client(token_file=str(token_file)))
            self.assert_short_token(h.CLIENT_BIN, ["-c", path],
                                    f"{path}: token_file {token_file}", short)

    def test_only_the_token_in_use_is_checked(self):
        short = self.short_token()
        with self.subTest("server: a good --token beats a short NTP_TOKEN and file token"):
            path = self.write_json("server-flag.json", self.server_config(token=short))
            self.assert_check_ok(h.SERVER_BIN, ["-c", path, "--token", self.token("flag")],
                                 env={"NTP_TOKEN": short}, hidden=[short])
        with self.subTest("server: a good NTP_TOKEN beats a short file token"):
            path = self.write_json("server-env.json", self.server_config(token=short))
            self.assert_check_ok(h.SERVER_BIN, ["-c", path], env={"NTP_TOKEN": self.token("env")},
                                 hidden=[short])
        with self.subTest("server: with ready groups the server-wide token is not used"):
            for where, extra, env in (("file", {"token": short}, None),
                                      ("NTP_TOKEN", {"token": None}, {"NTP_TOKEN": short})):
                path = self.write_json(f"server-groups-{where}.json", self.server_config(
                    groups={"home": {"token": self.token("home")}}, **extra))
                out = self.assert_check_ok(h.SERVER_BIN, ["-c", path], env=env, hidden=[short])
                self.assertRegex(out, h.LOG_SERVER_TOKEN_IGNORED, f"{where}: no word that the "
                                 "server-wide token is ignored")
        with self.subTest("client: a good NTP_TOKEN beats a short token_file and token"):
            token_file = self.write_file("short-token", short)
            path = self.write_json("apps-env.json", self.good_client(
                token=short, token_file=str(token_file)))
            self.assert_check_ok(h.CLIENT_BIN, ["-c", path], env={"NTP_TOKEN": self.token("env")},
                                 hidden=[short])
        with self.subTest("client: a good token_file beats a short token"):
            token_file = self.write_file("good-token", self.token("file"))
            path = self.write_json("apps-file.json", self.good_client(
                token=short, token_file=str(token_file)))
            self.assert_check_ok(h.CLIENT_BIN, ["-c", path], hidden=[short])

    def test_the_floor_is_the_minimum_token_length(self):
        # One character under kMinTokenLength is refused; kMinTokenLength is enough,
        # and a tunnel logs in with it.
        under = self.short_token(h.MIN_TOKEN_LENGTH - 1)
        path = self.write_json("server-under.json", self.server_config(token=under))
        self.assert_short_token(h.SERVER_BIN, ["-c", path], f"{path}: token", under)
        path = self.write_json("apps-under.json", self.good_client(token=under))
        self.assert_short_token(h.CLIENT_BIN, ["-c", path], f"{path}: token", under)

        enough = self.short_token(h.MIN_TOKEN_LENGTH)
        server = self.start_server(self.server_config(token=enough, tls=False))
        echo = self.echo_server()
        client = self.start_client(self.client_config(
            server, [h.app("ssh", echo.port, h.free_port())], tls=False))
        self.wait_login(client)
        self.assert_echo(self.wait_app(client, "ssh"))

    def test_short_stored_token_stops_the_server(self):
        state = self.tmp / "state"
        state.mkdir(mode=0o700)
        stored = state / "token"
        short = self.short_token(10)
        stored.write_text(short + "\n")
        stored.chmod(0o600)
        port = h.free_port()
        server = self.start_server(args=["--bind", f"127.0.0.1:{port}"],
                                   env={"STATE_DIRECTORY": str(state)}, wait_ready=False)
        self.assertEqual(server.wait_exit(h.STEP_S), 2, "exit code for a short stored token")
        self.assertRegex(server.log(), h.rx(h.LOG_SHORT_TOKEN, where=stored,
                                            min=h.MIN_TOKEN_LENGTH, length=len(short)))
        self.assertEqual(stored.read_text(), short + "\n", "the stored token was replaced")
        self.assertIsNone(server.find(h.LOG_SERVER_GENERATED))
        self.assertIsNone(server.find(h.rx(h.LOG_SERVER_READY, port=port)),
                          "the server listened with a short token")

    # -- --gen-token ------------------------------------------------------------

    def test_gen_token_prints_a_fresh_token_that_works(self):
        tokens = []
        for _ in range(2):
            p = self.run_binary(h.SERVER_BIN, ["--gen-token"])
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout, rf"\A[0-9a-f]{{{h.GENERATED_TOKEN_HEX}}}\n\Z",
                             "one token of kGeneratedTokenBytes, hex, on stdout")
            self.assertEqual(p.stderr, "")
            tokens.append(p.stdout.strip())
            self.secrets.add(tokens[-1])
        self.assertNotEqual(tokens[0], tokens[1], "two runs printed the same token")

        server = self.start_server(self.server_config(token=tokens[0]))
        echo = self.echo_server()
        client = self.start_client(self.client_config(
            server, [h.app("ssh", echo.port, h.free_port())]))
        self.wait_login(client)
        self.assert_echo(self.wait_app(client, "ssh"))

    # -- warnings about secrets other users can read -------------------------------

    # (mode, group owner, the chmod the warning names or None for no warning).
    # "own": the daemon's own gid, which a packaged 0640 root:ntp-tunnel file shares.
    EXPOSURE_CASES = [(0o644, "own", "o"), (0o604, "own", "o"), (0o640, "foreign", "g"),
                      (0o644, "foreign", "go"), (0o600, "own", None), (0o640, "own", None),
                      (0o600, "foreign", None)]

    def exposure_cases(self, cases=None):
        for mode, owner, who in cases or self.EXPOSURE_CASES:
            if owner == "foreign":
                if os.geteuid() != 0:
                    self.skipTest("chown to another group needs root")
                self.assertNotIn(FOREIGN_GID, [os.getegid(), *os.getgroups()],
                                 f"gid {FOREIGN_GID} must be a group the tests are not in")
            yield mode, os.getegid() if owner == "own" else FOREIGN_GID, who

    def assert_exposure(self, out, path, mode, who):
        """`out` warns once about `path` naming its mode and the chmod `who`-rwx
        when `who` is set; otherwise says nothing about readable secrets."""
        if who is None:
            self.assertNotRegex(out, h.LOG_EXPOSED_ANY, f"{path} ({mode:04o}): warned about")
            return
        self.assertRegex(out, h.rx(h.LOG_EXPOSED, file=path, mode=f"{mode:04o}", who=who))
        self.assertEqual(len(re.findall(h.LOG_EXPOSED_ANY, out)), 1, f"one warning only:\n{out}")

    def test_server_files_holding_a_token_warn_when_others_can_read_them(self):
        for i, (mode, gid, who) in enumerate(self.exposure_cases()):
            for what, keys in (("token", {}),
                               ("groups", {"token": None,
                                           "groups": {"home": {"token": self.token()}}})):
                with self.subTest(mode=f"{mode:04o}", gid=gid, holds=what):
                    cfg = self.server_config(**keys)
                    path = self.write_json(f"server-{what}-{i}.json", cfg, mode, gid)
                    out = self.assert_check_ok(h.SERVER_BIN, ["-c", path], hidden=self.secrets)
                    self.assert_exposure(out, path, mode, who)
        with self.subTest("a file without a token holds no secret"):
            path = self.write_json("server-no-token.json", self.server_config(token=None),
                                   0o644)
            out = self.assert_check_ok(h.SERVER_BIN, ["-c", path],
                                       env={"NTP_TOKEN": self.token("env")}, hidden=self.secrets)
            self.assert_exposure(out, path, 0o644, None)

    def test_server_warns_at_start_up(self):
        # --check above, a real start here: the warning comes before "listening on".
        exposed = self.start_server(self.server_config(), config_mode=0o644)
        self.assert_exposure(exposed.log(), config_path(exposed), 0o644, "o")
        private = self.start_server(self.server_config(), config_mode=0o600)
        self.assert_exposure(private.log(), config_path(private), 0o600, None)
        echo = self.echo_server()
        client = self.start_client(self.client_config(
            exposed, [h.app("ssh", echo.port, h.free_port())]))
        self.assert_echo(self.wait_app(client, "ssh"))  # a warning, not an error

    def test_token_on_the_command_line_is_warned_about(self):
        flag = self.start_server(args=["--bind", f"127.0.0.1:{h.free_port()}",
                                       "--token", self.token("flag")])
        self.assertIsNotNone(flag.find(h.LOG_TOKEN_ON_CMDLINE), "no warning about --token")
        env = self.start_server(args=["--bind", f"127.0.0.1:{h.free_port()}"],
                                env={"NTP_TOKEN": self.token("env")})
        self.assertIsNone(env.find(h.LOG_TOKEN_ON_CMDLINE), "warned about --token with none")
        self.assertIsNone(env.find(h.LOG_EXPOSED_ANY))

    def start_client_and_wait(self, config, **kw):
        """A client with no server to log in to: its warnings come before its
        "starting" line, and it is stopped once it has tried to connect (by then
        it handles SIGTERM: it is in its loop). Returned."""
        client = self.start_client(config, **kw)
        starting = client.wait_log(h.rx(h.LOG_CLIENT_STARTING, group=client.group))
        client.wait_log(h.rx(h.LOG_CLIENT_RETRY, group=client.group), since=starting.end())
        self.assertEqual(client.stop(), 0)
        return client

    def test_client_secret_files_warn_when_others_can_read_them(self):
        for i, (mode, gid, who) in enumerate(self.exposure_cases()):
            with self.subTest("apps.json with its own token", mode=f"{mode:04o}", gid=gid):
                cfg = self.good_client(tls=False)
                name = f"inline-{i}"
                client = self.start_client_and_wait(cfg, name=name, config_mode=mode,
                                                    config_gid=gid)
                self.assert_exposure(client.log(), config_path(client), mode, who)
            with self.subTest("token_file", mode=f"{mode:04o}", gid=gid):
                token_file = self.write_file(f"token-{i}", self.token("file") + "\n", mode, gid)
                cfg = self.good_client(token=None, token_file=str(token_file), tls=False)
                # apps.json, readable by all, holds no token: only the token file counts.
                client = self.start_client_and_wait(cfg, name=f"file-{i}", config_mode=0o644)
                self.assert_exposure(client.log(), token_file, mode, who)
            with self.subTest("apps.json with a token NTP_TOKEN overrides", mode=f"{mode:04o}",
                              gid=gid):
                # Not the token in use, but a secret in the file all the same; and
                # --check says so too.
                cfg = self.good_client(tls=False)
                path = self.write_json(f"unused-{i}.json", cfg, mode, gid)
                out = self.assert_check_ok(h.CLIENT_BIN, ["-c", path], hidden=self.secrets,
                                           env={"NTP_TOKEN": self.token("env")})
                self.assert_exposure(out, path, mode, who)

    def make_key_pair(self):
        if not shutil.which("openssl"):
            self.fail("the openssl command is needed (Debian package openssl)")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out",
                        "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1"],
                       cwd=self.tmp, check=True, capture_output=True, timeout=60)
        return self.tmp / "cert.pem", self.tmp / "key.pem"

    def test_tls_keys_readable_by_others_are_warned_about(self):
        cert, key = self.make_key_pair()
        tls = {"cert": str(cert), "key": str(key)}
        for mode, gid, who in self.exposure_cases([(0o644, "own", "o"), (0o640, "foreign", "g"),
                                                   (0o600, "own", None)]):
            os.chown(key, -1, gid)
            key.chmod(mode)
            with self.subTest("server tls.key", mode=f"{mode:04o}", gid=gid):
                # The config itself is private: only the key is in question.
                path = self.write_json(f"server-{mode:o}-{gid}.json",
                                       self.server_config(tls=tls), 0o600)
                out = self.assert_check_ok(h.SERVER_BIN, ["-c", path], hidden=self.secrets)
                self.assert_exposure(out, key, mode, who)
            with self.subTest("client tls.key", mode=f"{mode:04o}", gid=gid):
                client = self.start_client_and_wait(
                    self.good_client(tls=tls), name=f"client-{mode:o}-{gid}", config_mode=0o600)
                self.assert_exposure(client.log(), key, mode, who)

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
