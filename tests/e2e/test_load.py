"""Load: many users at once, big streams with half-close, no descriptor leak.
Every test is bounded (see the timeouts)."""

import os
import random
import resource
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

MIB = 1 << 20


def run_users(count, work, timeout):
    """Run work(i) in `count` threads that start together; returns the
    list of failure messages (work returns None when all is well)."""
    barrier = threading.Barrier(count)
    results = [f"user {i}: did not finish within {timeout} s" for i in range(count)]

    def user(i):
        try:
            barrier.wait(timeout=h.STEP_S)
            results[i] = work(i)
        except Exception as e:  # reported below, with the user's number
            results[i] = f"user {i}: {e!r}"

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    return [r for r in results if r is not None]


def served(sock):
    """Sends a byte and waits for its echo (True) or the close (False)."""
    try:
        sock.sendall(b"?")
    except OSError:
        return False  # reset already
    deadline = time.monotonic() + h.STEP_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"a user was neither served nor closed within {h.STEP_S:.0f} s")
        sock.settimeout(left)
        try:
            return sock.recv(1) == b"?"
        except socket.timeout:
            continue
        except OSError:
            return False


class LoadTest(h.TunnelTestCase):
    def test_100_users_at_once(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        port = ports["ssh"]

        def work(i):
            data = os.urandom(random.randint(1, 64 * 1024))
            got = h.exchange(port, data, timeout=30)
            if got != data:
                return f"user {i}: sent {len(data)} bytes, got {len(got)} back, not the same"
            return None

        failures = run_users(100, work, timeout=45)
        self.assertEqual(failures, [], f"{len(failures)} of 100 users failed")
        pattern = h.rx(h.LOG_SERVER_USER, group="home", app="ssh")
        server.wait_log(pattern, count=100)
        conns = {m.group("conn") for m in server.findall(pattern)}
        self.assertEqual(len(conns), 100, "each user gets its own conn id")
        self.assertEqual(echo.accepted, 100)

    def test_64_mib_both_ways_with_half_close(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        total = 64 * MIB
        start = time.monotonic()
        sent, received, count = h.stream_sha256(ports["ssh"], total, timeout=90)
        elapsed = time.monotonic() - start
        self.assertEqual(count, total, "bytes echoed back after the user's half-close")
        self.assertEqual(received, sent, "SHA-256 of the echo")
        sys.stderr.write(f"[64 MiB echo took {elapsed:.1f} s] ")

    def test_parallel_big_streams_do_not_mix(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])

        def work(i):
            sent, received, count = h.stream_sha256(ports["ssh"], 8 * MIB, timeout=60)
            if count != 8 * MIB or sent != received:
                return f"stream {i}: got {count} bytes, hashes {'match' if sent == received else 'differ'}"
            return None

        failures = run_users(6, work, timeout=75)
        self.assertEqual(failures, [])

    def wait_streams_closed(self, server, client, count):
        """Both daemons logged `count` streams closed (debug lines), and the
        server took kDataPoolSize data connections beyond the streams' own: its
        pool is refilled (those dialled beyond it were dropped)."""
        for d in (server, client):
            d.wait_log(h.rx(h.LOG_STREAM_CLOSED, group="home", app="ssh"), count=count)
        server.wait_log(h.rx(h.LOG_SERVER_DATA_CONN, group="home"),
                        count=count + h.DATA_POOL_SIZE)

    def test_no_descriptor_leak_after_many_users(self):
        echo = self.echo_server()
        debug = {"log_level": "debug"}  # the streams' and data connections' lines are counted
        server, client, ports = self.start_tunnel(
            [h.app("ssh", echo.port, h.free_port())],
            server_config=self.server_config(**debug), client_keys=debug)
        for _ in range(5):
            self.assert_echo(ports["ssh"])
        self.wait_streams_closed(server, client, 5)
        base_server, base_client = server.fd_count(), client.fd_count()

        users, rounds = 30, 10

        def work(i):
            for j in range(rounds):
                data = os.urandom(2048)
                if h.exchange(ports["ssh"], data, timeout=30) != data:
                    return f"user {i} round {j}: echo differs"
            return None

        failures = run_users(users, work, timeout=60)
        self.assertEqual(failures, [])
        self.wait_streams_closed(server, client, 5 + users * rounds)
        # With every stream closed, each daemon holds its listeners, the control
        # connection and at most a full pool of idle data connections (the
        # server drops any beyond kDataPoolSize, and the client's end of a
        # dropped one closes with it): at most a pool more than at the
        # baseline, whatever the pool held then.
        slack = h.DATA_POOL_SIZE
        h.wait_until(lambda: server.fd_count() <= base_server + slack, h.STEP_S,
                     lambda: f"server descriptors back near {base_server} (now {server.fd_count()})",
                     interval=0.1)
        h.wait_until(lambda: client.fd_count() <= base_client + slack, h.STEP_S,
                     lambda: f"client descriptors back near {base_client} (now {client.fd_count()})",
                     interval=0.1)
        self.assert_echo(ports["ssh"])


    def test_out_of_descriptors_new_users_closed_existing_streams_untouched(self):
        """Past the fd limit a new user is accepted and closed at once with a log
        line; the accept loop neither spins nor dies, and live streams go on."""
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        port = ports["ssh"]
        live = h.connect(port)
        self.addCleanup(live.close)
        self.assertEqual(h.roundtrip(live, b"before"), b"before")

        soft, hard = resource.prlimit(server.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (server.fd_count() + 4, hard))
        users, closed = [], False
        for _ in range(40):  # bounded: a handful exhausts the 4 spare descriptors
            u = h.connect(port)
            users.append(u)
            # Each user either still got a descriptor, and then a pooled data
            # connection and its echo, or is closed: an event either way. One
            # left in the backlog (neither) fails here.
            closed = not served(u)
            if closed:
                break
        for u in users:
            u.close()
        self.assertTrue(closed, "no user was closed once descriptors ran out")
        server.wait_log(r"accept: Too many open files; closed \d+ new connection\(s\) at once")
        self.assertEqual(h.roundtrip(live, b"during"), b"during", "the live stream kept working")

        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (soft, hard))
        self.assert_echo(port)
        self.assertEqual(h.roundtrip(live, b"after"), b"after")
        self.assertTrue(server.alive())


if __name__ == "__main__":
    unittest.main()
