#include "udp_flow.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <array>
#include <vector>

#include "ntp/listener.hpp"
#include "ntp/proxy_protocol.hpp"

namespace ntp {
namespace {

using udp = asio::ip::udp;

constexpr std::size_t kMaxDatagram = 65507;  // one IPv4 UDP datagram's payload at most

}  // namespace

awaitable<void> serve_udp_flow(const LocalApp& app, Stream data, const msg::Start& start,
                               const std::string& group_context, LiveStreams& streams) {
  const auto context = fmt::format("{} app={} conn={}", group_context, app.name, start.conn);
  auto [rec, eps] = co_await resolve(app.local.host, app.local.port);
  udp::socket local(data.socket().get_executor());
  error_code ec = rec ? rec : eps.empty() ? error_code(asio::error::host_not_found) : error_code{};
  if (!ec) {
    const udp::endpoint to(eps.front().address(), eps.front().port());
    local.open(to.protocol(), ec);
    // Connected: only the app's datagrams come in, and a closed port shows.
    if (!ec) local.connect(to, ec);
    if (!ec) local.non_blocking(true, ec);  // a full buffer drops, never waits
    if (!ec) {  // room for an app's burst of replies; best effort, as on the server
      const int size = 4 * 1024 * 1024;
      if (::setsockopt(local.native_handle(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        ::setsockopt(local.native_handle(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
  }
  if (ec) {
    auto why = fmt::format("udp {}: {}", app.where(), ec.message());
    spdlog::warn("{}: {}", context, why);
    co_await write_error(data, why);
    co_return;
  }
  const Message connected = msg::Connected{};
  if (co_await write_message(data, connected)) co_return;
  LiveStreams::Entry live(streams, data.socket(), data.socket(), app.name);

  // The PROXY v2 header goes in front of every datagram to the app.
  std::string header;
  if (app.proxy_protocol == ProxyProtocol::v2) {
    auto user = parse_address_port(start.user);
    auto remote = parse_address_port(start.remote);
    header = proxy_header(ProxyProtocol::v2, Transport::datagram,
                          user ? std::optional(user->first) : std::nullopt, user ? user->second : 0,
                          remote ? std::optional(remote->first) : std::nullopt,
                          remote ? remote->second : 0);
  }
  std::uint64_t in = 0, out = 0, dropped = 0;
  const auto began = steady_clock::now();
  auto to_app = [&]() -> awaitable<void> {
    std::array<unsigned char, 2> len{};
    std::vector<char> datagram(header.size() + 65535);
    std::copy(header.begin(), header.end(), datagram.begin());
    for (;;) {
      if (co_await data.read_exact(asio::buffer(len))) co_return;
      const std::size_t n = std::size_t{len[0]} << 8 | len[1];
      if (co_await data.read_exact(asio::buffer(datagram.data() + header.size(), n))) co_return;
      error_code sec;
      if (header.size() + n > kMaxDatagram)  // the header left no room for it
        sec = asio::error::message_size;
      else
        local.send(asio::buffer(datagram.data(), header.size() + n), 0, sec);
      if (sec)
        ++dropped;  // a full buffer, or the app's port closed (ICMP)
      else
        ++in;
    }
  };
  auto from_app = [&]() -> awaitable<void> {
    std::vector<char> framed(2 + kMaxDatagram);
    for (;;) {
      auto [rec2, n] =
          co_await local.async_receive(asio::buffer(framed.data() + 2, kMaxDatagram), nothrow);
      if (rec2 == asio::error::operation_aborted || !local.is_open()) co_return;
      if (rec2) continue;  // ECONNREFUSED: an earlier datagram found the app's port closed
      framed[0] = static_cast<char>(n >> 8);
      framed[1] = static_cast<char>(n & 0xff);
      if (co_await data.write_all(asio::buffer(framed.data(), n + 2))) co_return;
      ++out;
    }
  };
  spdlog::debug("{}: flow open to udp {} for user {}", context, app.where(), log_safe(start.user));
  co_await (to_app() || from_app());
  data.close();
  spdlog::debug("{}: flow closed after {:.1f} s, {} datagrams in, {} out, {} dropped", context,
                std::chrono::duration<double>(steady_clock::now() - began).count(), in, out,
                dropped);
}

}  // namespace ntp
