"""PROXY protocol ("proxy_protocol": "v1" | "v2" in apps.json): a real nginx
with `listen ... proxy_protocol` behind the tunnel logs the user's real address
(IPv4 and IPv6 users, both versions) and refuses a tunnel that sends no
header; a udp app's v2 header, in front of each datagram, checked byte by byte."""

import http.client
import os
import re
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

NGINX = "/usr/sbin/nginx"  # Debian nginx-light

NGINX_CONF = """\
# Started by test_proxy_protocol.py: everything under {dir}, nothing privileged.
user root root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  log_format pp 'uri=$request_uri user=$proxy_protocol_addr port=$proxy_protocol_port '
                'dst=$proxy_protocol_server_addr dport=$proxy_protocol_server_port '
                'peer=$remote_addr status=$status';
  server {{
    listen 127.0.0.1:{port} proxy_protocol;
    access_log {dir}/access.log pp;
    location / {{ return 200 "hello from nginx\\n"; }}
  }}
}}
"""
LOG_ACCESS = (r"(?m)^uri={uri} user=(?P<user>\S*) port=(?P<port>\S*) dst=(?P<dst>\S*) "
              r"dport=(?P<dport>\S*) peer=(?P<peer>\S+) status=(?P<status>\d+)$")
LOG_BROKEN_HEADER = r"broken header"  # nginx's error log, a connection without the header


class Nginx:
    """nginx run as a user would (its own prefix, config, pid file and logs)."""

    def __init__(self, test):
        self.dir = test.tmp / "nginx"
        self.dir.mkdir()
        self.port = h.free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir, port=self.port))
        self.proc = test.start_program("nginx", [
            NGINX, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log"),
            "-g", "daemon off;"], "nginx-light")
        # It writes its pid file once its listening socket is bound.
        h.wait_until(lambda: (self.dir / "nginx.pid").exists() or not self.proc.alive(), h.STEP_S,
                     "nginx writes its pid file")
        if not self.proc.alive():
            raise AssertionError(f"nginx exited: {self.proc.tail(20)}\n{self.error_log()}")

    def access_log(self):
        try:
            return (self.dir / "access.log").read_text()
        except FileNotFoundError:
            return ""

    def error_log(self):
        try:
            return (self.dir / "error.log").read_text()
        except FileNotFoundError:
            return ""

    def wait_access(self, uri):
        pattern = h.rx(LOG_ACCESS, uri=uri)
        return h.wait_until(lambda: pattern.search(self.access_log()), h.STEP_S,
                            lambda: f"nginx logs {uri}; access log:\n{self.access_log()}")


def get(host, port, uri, source):
    """GET `uri` as a user at `source`; (status, body, the user's own address)."""
    conn = http.client.HTTPConnection(host, port, timeout=h.STEP_S, source_address=(source, 0))
    try:
        conn.connect()
        user = conn.sock.getsockname()[:2]
        conn.request("GET", uri)
        r = conn.getresponse()
        return r.status, r.read(), user
    finally:
        conn.close()


class ProxyProtocolTest(h.TunnelTestCase):
    def nginx_tunnel(self, server_keys=None, with_plain=False):
        nginx = Nginx(self)
        apps = [h.app("v1", nginx.port, 0, proxy_protocol="v1"),
                h.app("v2", nginx.port, 0, proxy_protocol="v2")]
        if with_plain:
            apps.append(h.app("plain", nginx.port, 0))
        server, client, ports = self.start_tunnel(
            apps, server_config=self.server_config(**(server_keys or {})))
        return nginx, ports

    def assert_nginx_saw(self, nginx, ports, host, source):
        for version in ("v1", "v2"):
            with self.subTest(version=version, user=source):
                uri = f"/{version}/{source.replace(':', '_')}"
                status, body, user = get(host, ports[version], uri, source)
                self.assertEqual((status, body), (200, b"hello from nginx\n"))
                m = nginx.wait_access(uri)
                # The user's real address and port, and the remote port it
                # reached, as nginx read them from the header; the TCP peer nginx
                # saw is the client daemon.
                self.assertEqual((m.group("user"), m.group("port")), (user[0], str(user[1])),
                                 m.group(0))
                self.assertEqual((m.group("dst"), m.group("dport")), (host, str(ports[version])),
                                 m.group(0))
                self.assertEqual(m.group("peer"), "127.0.0.1", m.group(0))

    def test_nginx_logs_the_ipv4_users_address_v1_and_v2(self):
        # From 127.0.0.2, so the address nginx logs cannot be the client daemon's.
        nginx, ports = self.nginx_tunnel()
        self.assert_nginx_saw(nginx, ports, "127.0.0.1", "127.0.0.2")

    def test_nginx_logs_the_ipv6_users_address_v1_and_v2(self):
        # A dual-stack remote port: an IPv6 user, and an IPv4 one (whose
        # v4-mapped address the header gives as IPv4).
        nginx, ports = self.nginx_tunnel({"proxy_bind_addr": "::"})
        self.assert_nginx_saw(nginx, ports, "::1", "::1")
        self.assert_nginx_saw(nginx, ports, "127.0.0.1", "127.0.0.2")

    def test_without_the_header_nginx_refuses_the_request(self):
        # The same nginx, through an app without proxy_protocol: nginx reads the
        # request line as a header, finds it broken and closes.
        nginx, ports = self.nginx_tunnel(with_plain=True)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError,
                                http.client.BadStatusLine)):
            get("127.0.0.1", ports["plain"], "/plain", "127.0.0.2")
        h.wait_until(lambda: re.search(LOG_BROKEN_HEADER, nginx.error_log()), h.STEP_S,
                     lambda: f"nginx logs a broken header; error log:\n{nginx.error_log()}")
        self.assertNotIn("uri=/plain ", nginx.access_log(), "nginx served the request")
        # And with the header, the same nginx serves.
        self.assertEqual(get("127.0.0.1", ports["v1"], "/v1", "127.0.0.2")[0], 200)

    # -- udp: a v2 header in front of each datagram ----------------------

    # HAProxy's spec, section 2.2: family and transport byte, address block length.
    V2_UDP = {socket.AF_INET: (0x12, 12, "UDP over IPv4"), socket.AF_INET6: (0x22, 36, "UDP over IPv6")}

    @classmethod
    def parse_v2(cls, datagram, family):
        """(src, sport, dst, dport, payload) of a PROXY v2 header for UDP over
        `family`; raises ValueError saying what is wrong."""
        want, size, name = cls.V2_UDP[family]
        if len(datagram) < 16:
            raise ValueError(f"{len(datagram)} bytes: no room for the 16-byte header")
        sig, ver_cmd, fam, length = struct.unpack("!12sBBH", datagram[:16])
        if sig != h.PROXY_V2_SIGNATURE:
            raise ValueError(f"signature {sig!r}")
        if ver_cmd != 0x21:
            raise ValueError(f"version/command 0x{ver_cmd:02x}, expected 0x21 (v2, PROXY)")
        if fam != want:
            raise ValueError(f"family/transport 0x{fam:02x}, expected 0x{want:02x} ({name}); "
                             f"addresses {datagram[16:16 + length].hex()}")
        if length != size:
            raise ValueError(f"address length {length}, expected {size}")
        n = 4 if family == socket.AF_INET else 16
        src, dst = datagram[16:16 + n], datagram[16 + n:16 + 2 * n]
        sport, dport = struct.unpack("!HH", datagram[16 + 2 * n:16 + size])
        return (socket.inet_ntop(family, src), sport, socket.inet_ntop(family, dst), dport,
                datagram[16 + size:])

    def v2_app(self):
        """A udp local app that reads the v2 header of each datagram (for UDP
        over self.user_family, the family of the user's address) and answers
        with the payload, or with what is wrong with the header."""
        seen = []

        def handler(data, sender):
            try:
                src, sport, dst, dport, payload = self.parse_v2(data, self.user_family)
            except ValueError as e:
                return b"BAD HEADER: " + str(e).encode()
            seen.append((src, sport, dst, dport, len(payload)))
            return payload
        self.user_family = socket.AF_INET
        return self.udp_echo_server(handler=handler), seen

    def test_udp_v2_header_in_front_of_each_datagram(self):
        echo, seen = self.v2_app()
        server, client, ports = self.start_tunnel(
            [h.udp_app("dns", echo.port, 0, proxy_protocol="v2", udp_idle_s=2)])
        remote = ports["dns"]
        # The user at 127.0.0.3: not the client daemon's address.
        user = h.udp_socket("127.0.0.3", connect_to=("127.0.0.1", remote))
        self.addCleanup(user.close)
        me = user.getsockname()
        payloads = [b"x", os.urandom(1200), b"", os.urandom(4096),
                    os.urandom(h.UDP_MAX_DATAGRAM - 28)]  # the most a datagram has room for
        for p in payloads:
            self.assertEqual(h.udp_request(user, p), p, f"{len(p)}-byte payload")
        # The same header, every datagram: the user's address and port, and the
        # remote port it sent to (proxy_bind_addr 127.0.0.1).
        self.assertEqual(seen, [("127.0.0.3", me[1], "127.0.0.1", remote, len(p))
                                for p in payloads])

        # One 28-byte header longer than a datagram may be: the client cannot
        # send it to the app and counts it dropped; the next one goes through.
        user.send(os.urandom(h.UDP_MAX_DATAGRAM - 28 + 1))
        self.assertEqual(h.udp_request(user, b"after"), b"after",
                         "the answer to the datagram after the one too big for its header")
        m = client.wait_log(h.rx(h.LOG_CLIENT_FLOW_CLOSED, group="home", app="dns"))
        self.assertEqual((m.group("inn"), m.group("out"), m.group("dropped")),
                         (str(len(payloads) + 1), str(len(payloads) + 1), "1"), m.group(0))

    def test_udp_v2_header_on_a_dual_stack_port(self):
        # proxy_bind_addr "::": the header names the address the user sent to,
        # as a tcp app's header does (the accepted socket's own address), in the
        # user's family: an IPv4 user's v4-mapped address is IPv4 (as for tcp).
        echo, seen = self.v2_app()
        server, client, ports = self.start_tunnel(
            [h.udp_app("dns", echo.port, 0, proxy_protocol="v2")],
            server_config=self.server_config(proxy_bind_addr="::"))
        remote = ports["dns"]
        for family, source, target in ((socket.AF_INET6, "::1", "::1"),
                                       (socket.AF_INET, "127.0.0.3", "127.0.0.1")):
            with self.subTest(user=source):
                self.user_family = family
                del seen[:]
                with h.udp_socket(source, connect_to=(target, remote)) as user:
                    self.assertEqual(h.udp_request(user, b"hello"), b"hello")
                    self.assertEqual(seen, [(source, user.getsockname()[1], target, remote, 5)])


if __name__ == "__main__":
    unittest.main()
