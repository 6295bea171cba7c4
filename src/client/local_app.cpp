#include "local_app.hpp"

#include <fmt/format.h>

#include "ntp/listener.hpp"
#include "ntp/message.hpp"
#include "ntp/proxy_protocol.hpp"
#include "ntp/splice.hpp"

namespace ntp {

namespace {

// The PROXY protocol header for the user `start` names.
std::string header_for(const LocalApp& app, const msg::Start& start) {
  auto user = parse_address_port(start.user);
  auto remote = parse_address_port(start.remote);
  return proxy_header(app.proxy_protocol, Transport::stream,
                      user ? std::optional(user->first) : std::nullopt, user ? user->second : 0,
                      remote ? std::optional(remote->first) : std::nullopt,
                      remote ? remote->second : 0);
}

// Reaches the app and, for a PROXY protocol app, tells it the user's address
// before any byte of the user's. Empty, or what went wrong (for the server
// too). Apart from serve_local_app, so that what it needs is not kept in the
// frame of every stream for its whole life.
awaitable<std::string> reach_app(const LocalApp& app, const msg::Start& start, tcp::socket& local) {
  error_code ec;
  if (!app.unix_path.empty()) {
    ec = co_await connect_unix(local, app.unix_path, kLocalConnectTimeout);
  } else {
    auto [rec, eps] = co_await resolve(app.local.host, app.local.port);
    ec = rec;
    if (!ec) ec = co_await connect_any(local, eps, kLocalConnectTimeout);
  }
  if (ec) co_return fmt::format("connect {}: {}", app.where(), ec.message());
  if (app.proxy_protocol == ProxyProtocol::none) co_return std::string();
  const auto header = header_for(app, start);
  auto [wec, n] = co_await asio::async_write(local, asio::buffer(header), nothrow);
  if (wec) co_return fmt::format("PROXY protocol header to {}: {}", app.where(), wec.message());
  co_return std::string();
}

}  // namespace

awaitable<void> serve_local_app(const LocalApp& app, Stream data, const msg::Start& start,
                                const std::string& group_context, LiveStreams& streams,
                                SpliceMode mode) {
  const auto context = fmt::format("{} app={} conn={}", group_context, app.name, start.conn);
  tcp::socket local_socket(data.socket().get_executor());
  if (auto why = co_await reach_app(app, start, local_socket); !why.empty()) {
    spdlog::warn("{}: {}", context, why);
    co_await write_error(data, why);
    co_return;
  }
  Stream local(std::move(local_socket));
  LiveStreams::Entry live(streams, data.socket(), local.socket(), app.name);
  spdlog::debug("{}: stream open to {} for user {}", context, app.where(), log_safe(start.user));
  const auto began = steady_clock::now();
  // `connected` waits a moment for the app's first bytes (a banner, or the answer
  // to the user's first bytes, which the splice delivers meanwhile).
  Lead connected{frame_bytes(encode(msg::Connected{})), kConnectedHold};
  auto bytes = co_await splice(data, local, {}, mode, std::move(connected));
  spdlog::debug("{}: stream closed {}", context, describe(bytes, steady_clock::now() - began));
}

}  // namespace ntp
