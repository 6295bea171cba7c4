// Asio names and the two helpers every coroutine in ntp uses.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include <optional>
#include <system_error>
#include <variant>

namespace ntp {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;
using std::chrono::steady_clock;

// Errors come back as values on the network path; no try/catch needed.
inline constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// Races `op` against a timer; the loser is cancelled. nullopt means the deadline won.
template <class T>
awaitable<std::optional<T>> with_timeout(awaitable<T> op, steady_clock::duration d) {
  asio::steady_timer timer{co_await asio::this_coro::executor, d};
  auto r = co_await (std::move(op) || timer.async_wait(nothrow));
  if (r.index() == 1) co_return std::nullopt;
  co_return std::get<0>(std::move(r));
}

// Sleeps without throwing when cancelled; returns false if cancelled.
inline awaitable<bool> sleep_for(steady_clock::duration d) {
  asio::steady_timer timer{co_await asio::this_coro::executor, d};
  auto [ec] = co_await timer.async_wait(nothrow);
  co_return !ec;
}

// Options every tunnel socket gets: no Nagle delay, keepalive to find dead peers.
inline void tune_socket(tcp::socket& s) {
  error_code ec;  // best effort: a socket that refuses an option still works
  s.set_option(tcp::no_delay(true), ec);
  s.set_option(asio::socket_base::keep_alive(true), ec);
}

}  // namespace ntp
