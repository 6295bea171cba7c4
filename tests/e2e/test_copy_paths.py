"""How bytes cross the daemons (issue 6): with "tls": false both daemons move
them with splice(2) (zero copy, the default), or through a buffer with
"zero_copy": false; over TLS they always go through a buffer. Every path must
carry large transfers intact, keep half-close, serve many users at once, and
pass on a user's first bytes (sent before the tunnel is set up) in order.
Which path carried a stream shows in the daemons' debug line
"stream closed after ... (N zero-copy, M with frames)"."""

import os
import socket
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LOG_CLOSED = r"group=home app=echo conn=\d+: stream closed after [\d.]+ s, " \
             r"(?P<bytes_in>\d+) bytes in, (?P<bytes_out>\d+) bytes out " \
             r"\((?P<zc>\d+) zero-copy, (?P<framed>\d+) with frames\)"
# On the zero-copy path a byte is copied only when it comes with a frame
# (docs/protocol.md, "Bytes that ride with frames"); these bound how many can:
SENT_AHEAD = 64 * 1024  # kSentAhead (app_server.cpp): user bytes with `start` and before `connected`
READ_AHEAD = 512  # Stream::kReadAhead (stream.hpp): read behind a frame, less the frame itself
LEAD_CHUNK = 64 * 1024  # kBufferSize (splice.cpp): the app's first read, sent with `connected`
MAX_WITH_FRAMES = {"server": SENT_AHEAD + READ_AHEAD, "client": READ_AHEAD + LEAD_CHUNK}
BIG = 24 * 1024 * 1024
USERS = 100


class CopyPathsTest(h.TunnelTestCase):
    def tunnel(self, tls, zero_copy):
        """Server and client with the same settings; returns (server, client, port)."""
        keys = {} if tls else {"tls": False}
        if zero_copy is not None:
            keys["zero_copy"] = zero_copy
        server = self.start_server(self.server_config(**keys))
        echo = self.echo_server()
        client = self.start_client(self.client_config(server, [h.app("echo", echo.port, 0)],
                                                      **keys))
        return server, client, self.wait_app(client, "echo")

    def closed_streams(self, daemon, streams):
        """(total, zero-copy, with frames) of the first `streams` streams the daemon closed."""
        daemon.wait_log(LOG_CLOSED, count=streams, timeout=30)
        return [(int(m.group("bytes_in")) + int(m.group("bytes_out")), int(m.group("zc")),
                 int(m.group("framed"))) for m in daemon.findall(LOG_CLOSED)]

    def zero_copy_counts(self, daemon, streams):
        return [zc for _, zc, _ in self.closed_streams(daemon, streams)]

    def exercise(self, port):
        """Large transfer, half-close, first bytes before setup, many users."""
        # 24 MiB each way on one stream, checked end to end.
        sent, got, n = h.stream_sha256(port, BIG, timeout=120)
        self.assertEqual(n, BIG)
        self.assertEqual(sent, got, "bytes changed in transit")
        # Half-close: the user stops sending and still gets the whole reply.
        with h.connect(port) as s:
            s.sendall(b"request")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(h.recv_exact(s, 7), b"request")
            h.wait_closed(s, h.STEP_S, "the stream after both halves closed")
        # First bytes sent together with the connect, before any answer:
        # they ride along with the start frame and must come back first, in order.
        with h.connect(port) as s:
            s.sendall(b"early-" * 1000)
            self.assertEqual(h.recv_exact(s, 6000), b"early-" * 1000)
            self.assertEqual(h.roundtrip(s, b"later"), b"later")
        # Many users at once, each with its own bytes.
        failures = []

        def user(i):
            try:
                data = os.urandom(4096) + str(i).encode()
                if h.exchange(port, data, timeout=30) != data:
                    failures.append(f"user {i}: wrong echo")
            except (OSError, AssertionError) as e:
                failures.append(f"user {i}: {e}")

        threads = [threading.Thread(target=user, args=(i,)) for i in range(USERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(failures, [])
        return 3 + USERS  # streams opened

    def test_plain_default_is_zero_copy(self):
        server, client, port = self.tunnel(tls=False, zero_copy=None)
        streams = self.exercise(port)
        for d in (server, client):
            closed = self.closed_streams(d, streams)
            # Every byte of every stream went by splice(2) but those that came
            # with a frame: none was copied for want of a pipe.
            for i, (total, zc, framed) in enumerate(closed):
                self.assertEqual(zc + framed, total, f"{d.name}: stream {i} copied bytes "
                                 f"that did not come with a frame")
            total, zc, framed = closed[0]
            self.assertEqual(total, 2 * BIG, f"{d.name}: the large transfer's count")
            self.assertLessEqual(framed, MAX_WITH_FRAMES[d.name],
                                 f"{d.name}: more of the large transfer came with frames "
                                 f"than the protocol lets ride with them")

    def assert_all_copied(self, tls, zero_copy, why):
        server, client, port = self.tunnel(tls=tls, zero_copy=zero_copy)
        streams = self.exercise(port)
        for d in (server, client):
            self.assertEqual(set(self.zero_copy_counts(d, streams)), {0}, f"{d.name}: {why}")

    def test_plain_buffered_when_zero_copy_false(self):
        self.assert_all_copied(False, False, "zero copy used although \"zero_copy\": false")

    def test_tls_falls_back_to_buffered(self):
        self.assert_all_copied(True, True, "zero copy over TLS is impossible")

if __name__ == "__main__":
    unittest.main()
