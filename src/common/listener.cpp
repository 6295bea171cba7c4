#include "ntp/listener.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ntp/logging.hpp"

namespace ntp {
namespace {

// One descriptor held in reserve. Out of descriptors, accept() fails with EMFILE
// (whether or not a connection is pending), so a waiting user would sit in the
// backlog. Giving the reserve up lets us accept such a connection and close it at
// once, so the user learns promptly, then the reserve is taken again.
class ReserveDescriptor {
 public:
  ReserveDescriptor() { take(); }
  bool available() const { return fd_ >= 0; }
  // Accepts and closes every pending connection; returns how many.
  int shed_pending(int listen_fd) {
    int shed = 0;
    while (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
      int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) ::close(c);
      take();
      if (c < 0) break;  // EAGAIN: nothing (more) pending
      ++shed;
    }
    return shed;
  }

 private:
  void take() { fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC); }
  int fd_ = -1;
};

bool out_of_descriptors(const error_code& ec) {
  return ec == asio::error::no_descriptors ||
         ec == boost::system::errc::too_many_files_open_in_system;
}

}  // namespace

tcp::acceptor open_listener(const asio::any_io_executor& ex, const tcp::endpoint& ep,
                            error_code& ec) {
  tcp::acceptor a(ex);
  a.open(ep.protocol(), ec);
  if (ec) return a;
  a.set_option(asio::socket_base::reuse_address(true), ec);
  error_code ignored;  // best effort, as in tune_socket
  a.set_option(tcp::no_delay(true), ignored);
  a.set_option(asio::socket_base::keep_alive(true), ignored);
  if (ep.address().is_v6() && ep.address().is_unspecified()) {
    error_code v6;  // some kernels force v6-only; then "::" serves IPv6 only
    a.set_option(asio::ip::v6_only(false), v6);
  }
  a.bind(ep, ec);
  if (!ec) a.listen(1024, ec);
  if (ec) a.close(ignored);
  return a;
}

awaitable<std::optional<Accepted>> accept_next(tcp::acceptor& acceptor,
                                               const std::string& context) {
  static RateLimit limit(5, std::chrono::seconds(10));
  static ReserveDescriptor reserve;
  for (;;) {
    tcp::endpoint peer;
    auto [ec, s] = co_await acceptor.async_accept(peer, nothrow);
    if (!ec) co_return Accepted{std::move(s), peer};
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return std::nullopt;
    const int shed = out_of_descriptors(ec) ? reserve.shed_pending(acceptor.native_handle()) : 0;
    std::uint64_t suppressed = 0;
    if (limit.allow(suppressed))
      spdlog::warn("{}: accept: {}{}{}", context, ec.message(),
                   shed ? fmt::format("; closed {} new connection(s) at once", shed) : "",
                   suppressed ? fmt::format(" ({} similar lines suppressed)", suppressed) : "");
    if (out_of_descriptors(ec) && reserve.available()) {
      // accept() keeps failing while descriptors are short: sleep until the next
      // connection arrives instead of spinning on EMFILE.
      auto [wec] = co_await acceptor.async_wait(tcp::acceptor::wait_read, nothrow);
      if (wec) co_return std::nullopt;
    } else if (!co_await sleep_for(std::chrono::milliseconds(100))) {
      co_return std::nullopt;  // out of memory or the like: back off, do not spin
    }
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

namespace {

error_code system_error_code(int err) {
  return {err, asio::error::get_system_category()};
}

// The outcome of a connect the socket is writable after.
error_code connect_result(tcp::socket& s) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  return err ? system_error_code(err) : error_code{};
}

// Starts one attempt; its result when it is over already, as it is to a listener
// on this host (the kernel runs the handshake inside connect()), so such a
// connection costs no reactor round and no timer. Not asio::async_connect: that
// polls the socket once more after the reactor reports it writable, where
// SO_ERROR alone tells the outcome.
std::optional<error_code> start_connect(tcp::socket& s, const tcp::endpoint& ep) {
  error_code ec;
  if (s.is_open()) s.close(ec);
  s.open(ep.protocol(), ec);
  if (!ec) s.non_blocking(true, ec);
  if (ec) return ec;
  tune_socket(s);
  if (::connect(s.native_handle(), ep.data(), static_cast<socklen_t>(ep.size())) == 0)
    return error_code{};
  if (errno != EINPROGRESS) return system_error_code(errno);
  pollfd p{s.native_handle(), POLLOUT, 0};
  if (::poll(&p, 1, 0) != 1) return std::nullopt;
  return connect_result(s);
}

awaitable<error_code> finish_connect(tcp::socket& s) {
  auto [ec] = co_await s.async_wait(tcp::socket::wait_write, nothrow);
  co_return ec ? ec : connect_result(s);
}

}  // namespace

awaitable<error_code> connect_any(tcp::socket& s, const std::vector<tcp::endpoint>& eps,
                                  steady_clock::duration timeout) {
  const auto deadline = steady_clock::now() + timeout;
  error_code ec = asio::error::host_not_found;
  for (auto& ep : eps) {
    auto done = start_connect(s, ep);
    if (!done) {
      auto r = co_await with_timeout(finish_connect(s), deadline - steady_clock::now());
      if (!r) co_return asio::error::timed_out;
      done = *r;
    }
    if (!(ec = *done)) break;
  }
  co_return ec;
}

awaitable<error_code> connect_unix(tcp::socket& s, const std::string& path,
                                   steady_clock::duration timeout) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) co_return asio::error::name_too_long;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) co_return system_error_code(errno);
  error_code ec;
  if (s.is_open()) s.close(ec);
  // The descriptor is handed to the tcp::socket the splice takes: reads,
  // writes, readiness, shutdown and splice(2) are the same calls on it; nothing
  // here asks it for a TCP option or an IP endpoint.
  s.assign(tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    co_return ec;
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
    co_return error_code{};
  if (errno != EINPROGRESS) co_return system_error_code(errno);  // EAGAIN: its backlog is full
  auto r = co_await with_timeout(finish_connect(s), timeout);
  if (!r) co_return asio::error::timed_out;
  co_return *r;
}

}  // namespace ntp
