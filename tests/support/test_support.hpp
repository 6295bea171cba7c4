// Helpers shared by the unit and integration tests: bounded waits on an
// io_context, running a coroutine to completion, loopback socket pairs.
// Every wait has a deadline; nothing sleeps and hopes.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "ntp/asio.hpp"
#include "ntp/frame.hpp"

namespace ntp::test {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

// A bound for "at once, not after waiting out `timer`": half of it, so that a
// loaded machine has room and a bug that waits for the timer still fails.
constexpr milliseconds half_of(std::chrono::nanoseconds timer) {
  return std::chrono::duration_cast<milliseconds>(timer) / 2;
}

// Runs `io` until `done()` holds; false when `limit` passed first.
inline bool wait_until(asio::io_context& io, const std::function<bool()>& done,
                       milliseconds limit = 5s) {
  for (auto end = steady_clock::now() + limit; !done();) {
    if (steady_clock::now() > end) return false;
    io.restart();  // run_one_for() is a no-op once the context ran out of work
    // One handler at a time, so the predicate is checked as soon as it can change.
    if (io.run_one_for(10ms) == 0 && io.stopped()) std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Runs `io` for `d`, for checking that something does NOT happen meanwhile.
inline void run_for(asio::io_context& io, milliseconds d) {
  for (auto end = steady_clock::now() + d; steady_clock::now() < end;) {
    io.restart();
    if (io.run_one_until(end) == 0 && io.stopped()) std::this_thread::sleep_for(1ms);
  }
}

// Runs `io` until it has no work left at all: every socket closed, every coroutine
// ended. False when something is still running after `limit`.
inline bool drain(asio::io_context& io, milliseconds limit = 5s) {
  for (auto end = steady_clock::now() + limit; steady_clock::now() < end;) {
    io.restart();
    io.run_for(20ms);
    if (io.stopped()) return true;  // run_for returned because the work ran out
  }
  return false;
}

// Runs the coroutine `f()` on `io` until it returns, for at most `limit`. On
// timeout it is cancelled (and given a moment to unwind, since it refers to the
// caller's locals) and false is returned. Exceptions propagate to the test.
template <class F>
bool run(asio::io_context& io, F&& f, milliseconds limit = 5s) {
  auto done = std::make_shared<bool>(false);
  auto error = std::make_shared<std::exception_ptr>();
  asio::cancellation_signal cancel;
  asio::co_spawn(io, std::forward<F>(f),
                 asio::bind_cancellation_slot(cancel.slot(), [done, error](std::exception_ptr e) {
                   *error = e;
                   *done = true;
                 }));
  if (wait_until(
          io, [&] { return *done; }, limit)) {
    if (*error) std::rethrow_exception(*error);
    return true;
  }
  cancel.emit(asio::cancellation_type::all);
  if (!wait_until(
          io, [&] { return *done; }, 2s)) {
    // It still refers to this frame's locals: going on would be undefined behaviour.
    std::fprintf(stderr, "a test coroutine ignored cancellation; aborting\n");
    std::abort();
  }
  return false;
}

// Coroutines a test starts in the background; the test waits for all of them to
// end before its objects go away.
class Tasks {
 public:
  // `where`: an io_context or an executor.
  template <class Where, class F>
  void spawn(Where&& where, F&& f) {
    ++running_;
    asio::co_spawn(std::forward<Where>(where), std::forward<F>(f), [this](std::exception_ptr e) {
      --running_;
      if (e) try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          ADD_FAILURE() << "background coroutine threw: " << x.what();
        }
    });
  }
  int running() const { return running_; }

 private:
  int running_ = 0;
};

struct SocketPair {
  tcp::socket client;
  tcp::socket server;
};

// A connected loopback TCP pair (blocking set-up: the kernel completes the
// handshake from the listen backlog, so nothing waits on the loop).
inline SocketPair tcp_pair(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  tcp::socket server = acceptor.accept();
  return {std::move(client), std::move(server)};
}

inline tcp::endpoint loopback(std::uint16_t port) {
  return {asio::ip::make_address_v4("127.0.0.1"), port};
}

// A deterministic byte pattern, different for each `seed`, for checking transfers.
inline std::string pattern(std::size_t size, unsigned seed) {
  std::string out(size, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : out) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return out;
}

// Reads until EOF (or an error); returns what came and the error that ended it.
// For a tcp::socket or an ntp::Stream.
template <class S>
awaitable<std::pair<std::string, error_code>> read_to_eof(S& s) {
  std::string out;
  std::array<char, 16 * 1024> buf;
  for (;;) {
    auto [ec, n] = co_await read_some(s, asio::buffer(buf));
    out.append(buf.data(), n);
    if (ec) co_return std::pair{std::move(out), ec};
  }
}

}  // namespace ntp::test
