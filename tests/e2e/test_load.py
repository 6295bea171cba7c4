"""Load: many users at once, big streams with half-close, no descriptor leak.
Every test is bounded (see the timeouts)."""

import os
import random
import resource
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

    def test_no_descriptor_leak_after_many_users(self):
        echo = self.echo_server()
        server, client, ports = self.start_tunnel([h.app("ssh", echo.port, h.free_port())])
        for _ in range(5):
            self.assert_echo(ports["ssh"])
        time.sleep(0.5)  # let the pool settle before taking the baseline
        base_server, base_client = server.fd_count(), client.fd_count()

        def work(i):
            for j in range(10):
                data = os.urandom(2048)
                if h.exchange(ports["ssh"], data, timeout=30) != data:
                    return f"user {i} round {j}: echo differs"
            return None

        failures = run_users(30, work, timeout=60)
        self.assertEqual(failures, [])
        slack = 16  # the idle pool may be a little larger after a burst
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
        users, closed_fast = [], None
        for _ in range(40):  # bounded: a handful exhausts the 4 spare descriptors
            u = h.connect(port)
            users.append(u)
            try:
                took = h.wait_closed(u, 1.0, "user past the descriptor limit")
            except AssertionError:
                continue  # this one still got a descriptor (it waits for a data connection)
            closed_fast = took
            break
        for u in users:
            u.close()
        self.assertIsNotNone(closed_fast, "no user was closed once descriptors ran out")
        self.assertLess(closed_fast, 1.0)
        server.wait_log(r"accept: Too many open files; closed \d+ new connection\(s\) at once")
        self.assertEqual(h.roundtrip(live, b"during"), b"during", "the live stream kept working")

        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (soft, hard))
        self.assert_echo(port)
        self.assertEqual(h.roundtrip(live, b"after"), b"after")
        self.assertTrue(server.alive())


if __name__ == "__main__":
    unittest.main()
