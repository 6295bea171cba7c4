"""udp apps ("type": "udp" in apps.json): a real DNS server (dnsmasq) asked by
dig through the tunnel; 20,000 datagrams of mixed sizes over 50 flows, each
back byte-exact and in order; a flood of new source addresses stopped at
max_flows with one rate-limited line while an established flow is served;
flows ending after udp_idle_s; a client restart; a tcp and a udp app on one
port number."""

import os
import random
import select
import subprocess
import sys
import time
import unittest
from collections import deque
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

DNSMASQ = "/usr/sbin/dnsmasq"  # Debian dnsmasq-base
DIG = "/usr/bin/dig"           # Debian bind9-dnsutils

LOG_SESSION_ENDED = r"(?m)group={group}: session ended: "


def wait_read(port):
    """Until the server's socket on udp `port` holds nothing unread: the daemon
    has read (and acted on) every datagram sent to it so far."""
    h.wait_until(lambda: all(e["rx_queue"] == 0 for e in h.kernel_udp_sockets(local_port=port)),
                 h.STEP_S, f"the server reads what waits on udp port {port}", interval=0.005)


def flow_lines(daemon, pattern, **values):
    return daemon.findall(h.rx(pattern, **values))


class UdpTest(h.TunnelTestCase):
    # -- a real DNS server ------------------------------------------------

    def dig(self, port, name="tunnel.test", short=True):
        dig = h.require_program(DIG, "bind9-dnsutils")
        return subprocess.run(
            [dig, "@127.0.0.1", "-p", str(port), name, "A", "+tries=1", "+time=2"] +
            (["+short"] if short else []),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=h.STEP_S)

    def test_dns_through_the_tunnel_dnsmasq_and_dig(self):
        port = h.free_port()
        dnsmasq = self.start_program("dnsmasq", [
            DNSMASQ, "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}",
            "--address=/tunnel.test/192.0.2.7", "--user=root", "--pid-file=",
            "--log-facility=-", "--log-queries"], "dnsmasq-base")
        # Ready: it answers a query of its own (dig straight at it).
        h.wait_until(lambda: self.dig(port).stdout.strip() == "192.0.2.7", h.STEP_S,
                     lambda: f"dnsmasq answers on 127.0.0.1:{port}; log:\n{dnsmasq.tail(20)}",
                     interval=0.1)
        server, client, ports = self.start_tunnel([h.udp_app("dns", port, h.free_port())])
        mark = dnsmasq.mark()
        r = self.dig(ports["dns"])
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "192.0.2.7"),
                         f"dig through the tunnel; stderr: {r.stderr}")
        # A name dnsmasq does not know: its own answer (REFUSED, it has nowhere
        # to forward to) comes back too.
        r = self.dig(ports["dns"], "elsewhere.test", short=False)
        self.assertIn("status: REFUSED", r.stdout, f"dnsmasq's refusal through the tunnel:\n"
                                                   f"{r.stdout}{r.stderr}")
        server.wait_log(h.rx(h.LOG_SERVER_FLOW_STARTED, group="home", app="dns"))
        # dnsmasq saw the query through the tunnel (from the client's socket).
        dnsmasq.wait_log(r"query\[A\] tunnel\.test from 127\.0\.0\.1", since=mark)
        self.assertEqual(dnsmasq.stop(), 0, "dnsmasq exit code on SIGTERM")

    # -- many datagrams --------------------------------------------------

    FLOWS = 50
    PER_FLOW = 400   # 50 x 400 = 20,000 datagrams
    WINDOW = 8       # a flow's datagrams in flight at most
    IDLE_S = 3       # the app's udp_idle_s: flows end this long after their last datagram

    @staticmethod
    def sizes(rng, count):
        """1 byte, 1200, the largest datagram (UDP_MAX_DATAGRAM) and sizes in
        between, the big ones rare."""
        out = []
        for i in range(count):
            if i % 50 == 7:
                out.append(h.UDP_MAX_DATAGRAM)
            elif i % 10 == 1:
                out.append(1200)
            elif i % 10 == 2:
                out.append(1)
            elif i % 10 == 5:
                out.append(rng.randint(1201, 9000))
            else:
                out.append(rng.randint(2, 1500))
        return out

    @staticmethod
    def rmem_default():
        """The receive buffer the daemons' udp sockets get: neither sets SO_RCVBUF
        (UdpAppServer::open; serve_udp_flow in src/client/udp_flow.cpp), so the
        kernel's default. It holds 3 datagrams of 65,507 bytes, 92 of 1,200."""
        return int(Path("/proc/sys/net/core/rmem_default").read_text())

    def flow_accounts(self, server, client, app, count):
        """The flow lines of both daemons once `count` flows ended:
        {user address: (server line, client line)}."""
        server.wait_log(h.rx(h.LOG_SERVER_FLOW_CLOSED, group="home", app=app),
                        count=count, timeout=self.IDLE_S + h.STEP_S)
        client.wait_log(h.rx(h.LOG_CLIENT_FLOW_CLOSED, group="home", app=app),
                        count=count, timeout=h.STEP_S)
        server_lines = flow_lines(server, h.LOG_SERVER_FLOW_CLOSED, group="home", app=app)
        client_lines = {m.group("conn"): m
                        for m in flow_lines(client, h.LOG_CLIENT_FLOW_CLOSED, group="home", app=app)}
        self.assertEqual(len({m.group("user") for m in server_lines}), len(server_lines),
                         "one flow per user address, none restarted")
        self.assertEqual(set(client_lines), {m.group("conn") for m in server_lines},
                         "the same flows on both ends")
        return {m.group("user"): (m, client_lines[m.group("conn")]) for m in server_lines}

    def test_20000_datagrams_50_flows_intact_in_order_none_dropped(self):
        echo = self.udp_echo_server()
        remote = h.free_port()
        server, client, ports = self.start_tunnel(
            [h.udp_app("echo", echo.port, remote, udp_idle_s=self.IDLE_S)])
        rng = random.Random(os.urandom(8))
        socks = [h.udp_socket(connect_to=("127.0.0.1", remote)) for _ in range(self.FLOWS)]
        for s in socks:
            self.addCleanup(s.close)
            s.setblocking(False)
        plan = {s: deque(self.sizes(rng, self.PER_FLOW)) for s in socks}
        outstanding = {s: deque() for s in socks}
        received = {s: 0 for s in socks}
        # Besides each flow's window, what is in flight over all flows must fit
        # the server socket's buffer (the kernel's default, see rmem_default())
        # even if all of it waits there unread: past it the kernel drops
        # datagrams before the daemon sees them (test_a_burst_... below). A
        # datagram's share of the buffer is at most its size + 2 KiB
        # (skb overhead), and half the buffer leaves room for the estimate.
        budget = self.rmem_default() // 2
        cost = lambda n: n + 2048  # noqa: E731
        in_flight = 0
        before = {"server": h.kernel_drops(local_port=remote),
                  "client": h.kernel_drops(remote_port=echo.port)}

        def kernel_note():
            return (f"datagrams the kernel dropped meanwhile at the server's socket: "
                    f"{h.kernel_drops(local_port=remote) - before['server']}, at the client's "
                    f"sockets towards the app: "
                    f"{h.kernel_drops(remote_port=echo.port) - before['client']}")

        total = self.FLOWS * self.PER_FLOW
        began = time.monotonic()
        deadline = began + 150  # the whole exchange; ~15 s when all is well
        last_progress = began
        done = turn = 0
        most_in_flight = 0
        while done < total:
            # Top the windows up, a different flow first each time; the first
            # datagram that does not fit the budget waits for room (so a big
            # one is not starved by small ones), and so do those after it.
            turn += 1
            for k in range(self.FLOWS):
                s = socks[(turn + k) % self.FLOWS]
                while plan[s] and len(outstanding[s]) < self.WINDOW:
                    if in_flight and in_flight + cost(plan[s][0]) > budget:
                        break
                    data = os.urandom(plan[s].popleft())
                    s.send(data)
                    outstanding[s].append(data)
                    in_flight += cost(len(data))
                else:
                    continue
                break
            most_in_flight = max(most_in_flight, sum(map(len, outstanding.values())))
            now = time.monotonic()
            if now > deadline or now - last_progress > h.STEP_S:
                self.fail(f"{done} of {total} datagrams back after {now - began:.1f} s, none "
                          f"in the last {now - last_progress:.1f} s; {kernel_note()}")
            ready, _, _ = select.select([s for s in socks if outstanding[s]], [], [], 0.5)
            for s in ready:
                while True:
                    try:
                        got = s.recv(65535)
                    except BlockingIOError:
                        break
                    self.assertTrue(outstanding[s], "a datagram nobody sent")
                    want = outstanding[s].popleft()
                    in_flight -= cost(len(want))
                    if got != want:
                        self.fail(f"flow {s.getsockname()}: datagram {received[s]} came back as "
                                  f"{len(got)} bytes, sent {len(want)}"
                                  f"{' (other bytes)' if len(got) == len(want) else ''}: lost, "
                                  f"reordered or corrupted; {kernel_note()}")
                    received[s] += 1
                    done += 1
                    last_progress = time.monotonic()
        elapsed = time.monotonic() - began
        sys.stderr.write(f"\n[udp] {total} datagrams over {self.FLOWS} flows (window "
                         f"{self.WINDOW}, at most {most_in_flight} in flight) echoed byte-exact "
                         f"and in order in {elapsed:.1f} s ({total / elapsed:.0f} round trips/s); "
                         f"{kernel_note()}\n")

        # Every flow ends by itself udp_idle_s after its last datagram (the
        # reason the line gives is test_idle_flow_...'s); each daemon's line
        # counts its datagrams: all of them, none dropped.
        want = (str(self.PER_FLOW), str(self.PER_FLOW), "0")
        accounts = self.flow_accounts(server, client, "echo", self.FLOWS)
        self.assertEqual(set(accounts), {f"127.0.0.1:{s.getsockname()[1]}" for s in socks},
                         "a flow per user socket, and no other")
        for user, (s_line, c_line) in accounts.items():
            for m in (s_line, c_line):
                self.assertEqual((m.group("inn"), m.group("out"), m.group("dropped")), want,
                                 m.group(0))
        self.assertEqual(len(echo.senders), self.FLOWS, "the app saw one socket per flow")

    BURST = 8  # per flow, sent at once: far under a flow's queue (UDP_QUEUE_DATAGRAMS)

    def test_a_burst_on_50_flows_is_answered_or_counted_as_dropped(self):
        # 8 datagrams of 1,200 bytes on each of 50 flows, sent at once: 400
        # datagrams, 480 KB. A flow's queue takes 256 datagrams or 1 MiB
        # (UDP_QUEUE_DATAGRAMS/UDP_QUEUE_BYTES), and a datagram the daemon drops
        # it counts. So every datagram a user sent is in its flow's line: in
        # (passed on) or dropped, or among the kernel's own drops at the socket.
        echo = self.udp_echo_server()
        remote = h.free_port()
        server, client, ports = self.start_tunnel(
            [h.udp_app("burst", echo.port, remote, udp_idle_s=self.IDLE_S)])
        socks = [h.udp_socket(connect_to=("127.0.0.1", remote)) for _ in range(self.FLOWS)]
        for s in socks:
            self.addCleanup(s.close)
        kernel_before = h.kernel_drops(local_port=remote)
        for k in range(self.BURST):
            for s in socks:
                s.send(bytes([k]) * 1200)
        wait_read(remote)  # then every flow the daemon saw has started
        started = server.count(h.rx(h.LOG_SERVER_FLOW_STARTED, group="home", app="burst"))
        accounts = self.flow_accounts(server, client, "burst", started)
        kernel = h.kernel_drops(local_port=remote) - kernel_before
        answered = {}
        for s in socks:
            s.setblocking(False)
            n = 0
            while True:
                try:
                    s.recv(65535)
                except BlockingIOError:
                    break
                n += 1
            answered[f"127.0.0.1:{s.getsockname()[1]}"] = n
        sent = self.FLOWS * self.BURST
        counted = sum(int(m.group("inn")) + int(m.group("dropped")) for m, _ in accounts.values())
        sys.stderr.write(
            f"\n[udp] burst of {sent} datagrams of 1200 bytes on {self.FLOWS} flows: "
            f"{sum(answered.values())} answered, {counted} in the server's flow lines (in + "
            f"dropped), {kernel} dropped by the kernel at the server's socket "
            f"(receive buffer: the default, {self.rmem_default()} bytes)\n")
        for user, (s_line, c_line) in accounts.items():
            self.assertEqual(int(c_line.group("inn")), int(s_line.group("inn")), c_line.group(0))
            self.assertEqual(int(s_line.group("out")), answered[user],
                             f"answers the user got vs the server's count: {s_line.group(0)}")
        # The daemon asks for a 4 MiB receive buffer (UdpAppServer::kReceiveBuffer;
        # as root past net.core.rmem_max): the burst fits and the kernel drops
        # nothing. Where it cannot have one (not root, a small rmem_max) the
        # kernel's drops are said in a line of their own (SO_RXQ_OVFL): either
        # way no datagram goes missing unsaid.
        self.assertEqual(counted + kernel, sent,
                         f"datagrams the users sent that the server's flow lines account for "
                         f"(in + dropped), with the {kernel} the kernel dropped at its socket")
        if kernel:
            server.wait_log(r"the kernel dropped \d+ datagrams \(\d+ in all\) before they "
                            r"could be read")

    # -- max_flows ---------------------------------------------------------

    MAX_FLOWS = 20
    FLOOD = 5000
    FLOOD_SOURCES = [f"127.0.1.{i}" for i in range(1, 6)]  # 1,000 source ports on each
    FLOOD_BURST = 100  # datagrams sent before waiting for the server to have read them all:
    # 100 small datagrams fit the kernel's default socket buffer (rmem_default), so the
    # kernel drops none of them and every one is the daemon's to count

    def test_flood_of_new_addresses_stops_at_max_flows(self):
        echo = self.udp_echo_server()
        remote = h.free_port()
        server, client, ports = self.start_tunnel(
            [h.udp_app("dns", echo.port, remote, max_flows=self.MAX_FLOWS)])
        full = h.rx(h.LOG_SERVER_FLOWS_FULL, group="home", app="dns", port=remote,
                    max=self.MAX_FLOWS)
        started = h.rx(h.LOG_SERVER_FLOW_STARTED, group="home", app="dns")
        established = h.udp_socket(connect_to=("127.0.0.1", remote))
        self.addCleanup(established.close)
        self.assertEqual(h.udp_request(established, b"before"), b"before")
        drops_before = h.kernel_drops(local_port=remote)

        flood = []
        self.addCleanup(lambda: [s.close() for s in flood])
        probes = 0
        began = time.monotonic()
        for i in range(self.FLOOD):
            s = h.udp_socket(self.FLOOD_SOURCES[i % len(self.FLOOD_SOURCES)])
            flood.append(s)
            s.sendto(b"flood %d" % i, ("127.0.0.1", remote))
            if i % self.FLOOD_BURST == self.FLOOD_BURST // 2:
                # The established flow, in the middle of each burst.
                probe = b"probe %d" % probes
                established.send(probe)
            if i % self.FLOOD_BURST == self.FLOOD_BURST - 1:
                self.assertEqual(h.udp_recv(established)[0], probe,
                                 f"the established flow's answer during the flood (probe {probes})")
                probes += 1
                wait_read(remote)
        flood_s = time.monotonic() - began
        self.assertEqual(h.kernel_drops(local_port=remote) - drops_before, 0,
                         "the kernel dropped flood datagrams at the server's socket: the test's "
                         "pacing (FLOOD_BURST) is wrong")
        self.assertEqual(h.udp_request(established, b"after"), b"after",
                         "the established flow is answered after the flood")

        # One flow per address up to max_flows (the established one among them),
        # no more: flows are never closed here (udp_idle_s is the 60 s default).
        self.assertEqual(server.count(started), self.MAX_FLOWS,
                         "flows started: max_flows, the established one included")
        admitted = {m.group("user") for m in server.findall(started)}
        self.assertIn(f"127.0.0.1:{established.getsockname()[1]}", admitted)
        h.wait_until(lambda: len(echo.senders) >= self.MAX_FLOWS, h.STEP_S,
                     "the app hears from every admitted flow")
        self.assertEqual(len(echo.senders), self.MAX_FLOWS, "flows the app heard from")
        lines = server.findall(full)
        self.assertTrue(lines, "no line about the addresses max_flows kept out")
        first = h.log_time(lines[0])
        in_window = [m for m in lines if h.log_time(m) < first + h.FLOW_DROP_LOG_PERIOD_S]
        self.assertEqual(len(in_window), 1, "one line per window (RateLimit{1, 10 s}):\n" +
                         "\n".join(m.group(0) for m in in_window))
        self.assertIsNone(lines[0].group("more"), "the first line counts nothing before it")

        # The next window's first line counts what the last one held back: every
        # new address past max_flows is counted, once. Sent from new addresses
        # until a line comes (the window ends FLOW_DROP_LOG_PERIOD_S after the
        # last line's; the daemon's clock decides).
        last = h.log_time(lines[-1])
        h.wait_until(lambda: time.time() >= last + h.FLOW_DROP_LOG_PERIOD_S, 2 * h.STEP_S,
                     "the rate limit's window ends")
        extra = 0
        mark = server.mark()

        def next_line():
            nonlocal extra
            s = h.udp_socket("127.0.2.1")
            flood.append(s)
            s.sendto(b"late", ("127.0.0.1", remote))
            extra += 1
            try:
                return server.wait_log(full, since=mark, timeout=0.5)
            except AssertionError:
                return None
        h.wait_until(next_line, h.STEP_S, "a line in the next window")
        lines = server.findall(full)
        for a, b in zip(lines, lines[1:]):
            self.assertGreaterEqual(h.log_time(b) - h.log_time(a), h.FLOW_DROP_LOG_PERIOD_S - 0.1,
                                    f"two lines in one window:\n{a.group(0)}\n{b.group(0)}")
        dropped = self.FLOOD - (self.MAX_FLOWS - 1) + extra
        counted = len(lines) + sum(int(m.group("more") or 0) for m in lines)
        self.assertEqual(counted, dropped, "datagrams of addresses kept out, as the lines count "
                         "them (each line one, plus its \"more dropped since\")")
        self.assertEqual(h.udp_request(established, b"still"), b"still")
        self.assertEqual(server.count(started), self.MAX_FLOWS, "flows started, in the end")
        self.assertLess(time.monotonic() - began, h.UDP_IDLE_DEFAULT_S)
        self.assertEqual(server.count(h.rx(h.LOG_SERVER_FLOW_CLOSED, group="home", app="dns")), 0,
                         "no flow ended (udp_idle_s is the default), so none made room")
        sys.stderr.write(f"\n[udp] {self.FLOOD} new addresses in {flood_s:.1f} s against "
                         f"max_flows {self.MAX_FLOWS}: {self.MAX_FLOWS - 1} admitted, "
                         f"{dropped} datagrams dropped in {len(lines)} lines; {probes} answers "
                         f"to the established flow during the flood\n")

    # -- flows end ---------------------------------------------------------

    def test_idle_flow_ends_and_the_next_datagram_starts_a_new_one(self):
        echo = self.udp_echo_server(prefix=b"echo:")
        server, client, ports = self.start_tunnel(
            [h.udp_app("ntp", echo.port, h.free_port(), udp_idle_s=1)])
        user = h.udp_socket(connect_to=("127.0.0.1", ports["ntp"]))
        self.addCleanup(user.close)
        address = f"127.0.0.1:{user.getsockname()[1]}"
        self.assertEqual(h.udp_request(user, b"one"), b"echo:one")
        first = server.wait_log(h.rx(h.LOG_SERVER_FLOW_STARTED, group="home", app="ntp"))
        self.assertEqual(first.group("user"), address)
        closed = server.wait_log(h.rx(h.LOG_SERVER_FLOW_CLOSED, group="home", app="ntp"))
        self.assertEqual((closed.group("user"), closed.group("conn")),
                         (address, first.group("conn")), closed.group(0))
        with self.subTest("the line says why the flow ended"):
            self.assertEqual(closed.group("why"), "idle for 1 s", closed.group(0))
        self.assertGreaterEqual(float(closed.group("secs")), 1.0, closed.group(0))
        self.assertEqual((closed.group("inn"), closed.group("out"), closed.group("dropped")),
                         ("1", "1", "0"))
        self.assertGreaterEqual(h.log_time(closed) - h.log_time(first), 1.0 - 0.002,
                                "the flow lived at least udp_idle_s (its own log's clock, "
                                "to the millisecond)")
        opened = client.wait_log(h.rx(h.LOG_CLIENT_FLOW_OPEN, group="home", app="ntp"))
        self.assertEqual((opened.group("conn"), opened.group("user")),
                         (first.group("conn"), address), "the client knows the user's address")
        c = client.wait_log(h.rx(h.LOG_CLIENT_FLOW_CLOSED, group="home", app="ntp"))
        self.assertEqual(c.group("conn"), first.group("conn"))

        # The same address again: a new flow (a new conn id), answered.
        self.assertEqual(h.udp_request(user, b"two"), b"echo:two")
        second = server.wait_log(h.rx(h.LOG_SERVER_FLOW_STARTED, group="home", app="ntp"),
                                 count=2)
        self.assertEqual(second.group("user"), address)
        self.assertNotEqual(second.group("conn"), first.group("conn"), "a new flow, a new conn")
        self.assertEqual(len(echo.senders), 2, "the app saw a new socket for the new flow")

    def test_client_restart_brings_the_udp_app_back_on_its_port(self):
        echo = self.udp_echo_server(prefix=b"pong:")
        remote = h.free_port()
        server, client, ports = self.start_tunnel([h.udp_app("game", echo.port, remote)])
        user = h.udp_socket(connect_to=("127.0.0.1", remote))
        self.addCleanup(user.close)
        self.assertEqual(h.udp_request(user, b"1"), b"pong:1")
        self.assertEqual(client.stop(), 0)
        server.wait_log(h.rx(LOG_SESSION_ENDED, group="home"))

        # The port is closed meanwhile: the kernel answers a datagram with ICMP
        # port unreachable, which the connected socket reports.
        def refused():
            try:
                user.send(b"anyone?")
                h.udp_recv(user, timeout=0.5)
            except ConnectionRefusedError:
                return True
            except AssertionError:
                pass
            return False
        h.wait_until(refused, h.STEP_S, f"udp port {remote} closed with the client gone")

        mark = server.mark()
        again = self.start_client(client.config)
        self.wait_login(again)
        self.assertEqual(self.wait_app(again, "game"), remote, "the same remote port")
        server.wait_log(h.rx(h.LOG_SERVER_APP_LISTENING, group="home", app="game", port=remote),
                        since=mark)
        self.assertEqual(h.udp_request(user, b"2"), b"pong:2")
        self.assertTrue(server.alive())
        self.assertEqual(server.count(h.rx(h.LOG_SERVER_READY, port=server.bind_port)), 1,
                         "the server was not restarted")

    def test_a_tcp_and_a_udp_app_share_a_port_number(self):
        tcp_echo = self.echo_server(prefix=b"tcp:")
        udp_echo = self.udp_echo_server(prefix=b"udp:")
        port = h.free_port()
        server, client, ports = self.start_tunnel(
            [h.app("web", tcp_echo.port, port), h.udp_app("quic", udp_echo.port, port)])
        self.assertEqual((ports["web"], ports["quic"]), (port, port))
        self.assert_echo(port, b"over tcp", prefix=b"tcp:")
        with h.udp_socket(connect_to=("127.0.0.1", port)) as user:
            self.assertEqual(h.udp_request(user, b"over udp"), b"udp:over udp")
        self.assertEqual((tcp_echo.accepted, udp_echo.received), (1, 1))


if __name__ == "__main__":
    unittest.main()
