#include "local_app.hpp"

#include <fmt/format.h>

#include "ntp/listener.hpp"
#include "ntp/message.hpp"
#include "ntp/splice.hpp"

namespace ntp {

awaitable<void> serve_local_app(const LocalApp& app, Stream data, std::uint64_t conn,
                                const std::string& group_context, LiveStreams& streams,
                                SpliceMode mode) {
  const auto context = fmt::format("{} app={} conn={}", group_context, app.name, conn);
  tcp::socket local_socket(data.socket().get_executor());
  auto [rec, eps] = co_await resolve(app.local.host, app.local.port);
  error_code ec = rec;
  if (!ec) ec = co_await connect_any(local_socket, eps, kLocalConnectTimeout);
  if (ec) {
    auto why = fmt::format("connect {}: {}", app.local.str(), ec.message());
    spdlog::warn("{}: {}", context, why);
    co_await write_error(data, why);
    co_return;
  }
  Stream local(std::move(local_socket));
  LiveStreams::Entry live(streams, data.socket(), local.socket());
  spdlog::debug("{}: stream open to {}", context, app.local.str());
  const auto began = steady_clock::now();
  // `connected` waits a moment for the app's first bytes (a banner, or the answer
  // to the user's first bytes, which the splice delivers meanwhile).
  Lead connected{frame_bytes(encode(msg::Connected{})), kConnectedHold};
  auto bytes = co_await splice(data, local, {}, mode, std::move(connected));
  spdlog::debug("{}: stream closed {}", context, describe(bytes, steady_clock::now() - began));
}

}  // namespace ntp
