#include "ntp/listener.hpp"

#include "ntp/logging.hpp"

namespace ntp {

tcp::acceptor open_listener(const asio::any_io_executor& ex, const tcp::endpoint& ep,
                            error_code& ec) {
  tcp::acceptor a(ex);
  a.open(ep.protocol(), ec);
  if (ec) return a;
  a.set_option(asio::socket_base::reuse_address(true), ec);
  if (ep.address().is_v6() && ep.address().is_unspecified()) {
    error_code v6;  // some kernels force v6-only; then "::" serves IPv6 only
    a.set_option(asio::ip::v6_only(false), v6);
  }
  error_code ignored;
  a.bind(ep, ec);
  if (!ec) a.listen(1024, ec);
  if (ec) a.close(ignored);
  return a;
}

awaitable<std::optional<tcp::socket>> accept_next(tcp::acceptor& acceptor,
                                                  const std::string& context) {
  static RateLimit limit(5, std::chrono::seconds(10));
  for (;;) {
    auto [ec, s] = co_await acceptor.async_accept(nothrow);
    if (!ec) {
      tune_socket(s);
      co_return std::move(s);
    }
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return std::nullopt;
    std::uint64_t suppressed = 0;
    if (limit.allow(suppressed))
      spdlog::warn("{}: accept: {}{}", context, ec.message(),
                   suppressed ? fmt::format(" ({} similar lines suppressed)", suppressed) : "");
    // Out of descriptors or memory: wait for some to be released rather than spin.
    if (!co_await sleep_for(std::chrono::milliseconds(100))) co_return std::nullopt;
  }
}

std::optional<tcp::endpoint> literal_endpoint(const std::string& host, std::uint16_t port) {
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return std::nullopt;
  return tcp::endpoint(addr, port);
}

awaitable<std::pair<error_code, std::vector<tcp::endpoint>>> resolve(const std::string& host,
                                                                     std::uint16_t port) {
  std::vector<tcp::endpoint> out;
  if (auto ep = literal_endpoint(host, port)) {
    out.push_back(*ep);
    co_return std::pair{error_code{}, std::move(out)};
  }
  tcp::resolver resolver(co_await asio::this_coro::executor);
  auto [ec, results] = co_await resolver.async_resolve(host, std::to_string(port), nothrow);
  for (auto& r : results) out.push_back(r.endpoint());
  co_return std::pair{ec, std::move(out)};
}

awaitable<error_code> connect_any(tcp::socket& s, const std::vector<tcp::endpoint>& eps,
                                  steady_clock::duration timeout) {
  auto r = co_await with_timeout(asio::async_connect(s, eps, nothrow), timeout);
  if (!r) co_return asio::error::timed_out;
  auto [ec, ep] = *r;
  if (!ec) tune_socket(s);
  co_return ec;
}

}  // namespace ntp
