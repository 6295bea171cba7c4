#include "app_server.hpp"

#include <fmt/format.h>

#include "app_group.hpp"
#include "common_server.hpp"
#include "ntp/address.hpp"
#include "ntp/daemon.hpp"
#include "ntp/listener.hpp"
#include "ntp/message.hpp"
#include "ntp/splice.hpp"

namespace ntp {
namespace {

constexpr auto kDataWait = std::chrono::seconds(10);   // for the client to dial back
constexpr auto kLocalWait = std::chrono::seconds(10);  // for it to reach the local app
constexpr int kStaleRetries = 3;                       // idle data connections that died unnoticed

// One user, from accept to the end of its stream.
awaitable<void> serve_user(std::shared_ptr<AppGroup> group, std::string app, tcp::socket socket) {
  Stream user(std::move(socket));
  auto& server = group->server();
  const auto conn = server.next_conn_id();
  const auto context = fmt::format("{} app={} conn={}", group->context(), app, conn);
  error_code ec;
  const auto user_peer = to_string(user.socket().remote_endpoint(ec));
  spdlog::info("{}: user {} connected", context, user_peer);

  std::optional<Stream> data;
  for (int attempt = 0; attempt <= kStaleRetries && !data; ++attempt) {
    data = co_await group->take_data_connection(kDataWait);
    if (!data) {
      spdlog::warn("{}: closing user {}: {}", context, user_peer,
                   group->closed() ? "the client's session has ended"
                                   : "no data connection from the client within 10 s");
      co_return;
    }
    SocketSet::Entry starting(group->starting(), data->socket());
    const Message start = msg::Start{app, conn};
    if (co_await write_message(*data, start)) {
      data.reset();  // went stale while idle in the pool: try the next one
      continue;
    }
    std::string buf, peer_error;
    msg::Connected ok;
    auto r = co_await with_timeout(expect_message(*data, buf, ok, &peer_error), kLocalWait);
    if (r && !*r) break;
    if (group->closed()) {
      spdlog::warn("{}: closing user {}: the client's session has ended", context, user_peer);
      co_return;
    }
    if (!peer_error.empty()) {
      spdlog::warn("{}: closing user {}: the client cannot reach the local app: {}", context,
                   user_peer, peer_error);
      co_return;
    }
    if (!r) {
      spdlog::warn("{}: closing user {}: the client did not reach the local app within 10 s",
                   context, user_peer);
      co_return;
    }
    data.reset();
  }
  if (!data) {
    spdlog::warn("{}: closing user {}: no working data connection", context, user_peer);
    co_return;
  }
  LiveStreams::Entry live(server.streams(), user.socket(), data->socket());
  group.reset();  // a spliced stream is not part of the session: it outlives it
  spdlog::debug("{}: stream open", context);
  const auto began = steady_clock::now();
  auto bytes = co_await splice(user, *data);
  spdlog::debug("{}: stream closed after {:.1f} s, {} bytes in, {} bytes out", context,
                std::chrono::duration<double>(steady_clock::now() - began).count(), bytes.a_to_b,
                bytes.b_to_a);
}

}  // namespace

AppServer::AppServer(std::string name, tcp::acceptor acceptor, const std::string& group_context)
    : name_(std::move(name)),
      acceptor_(std::move(acceptor)),
      port_(acceptor_.local_endpoint().port()),
      context_(fmt::format("{} app={} port={}", group_context, name_, port_)) {}

awaitable<void> AppServer::run(std::shared_ptr<AppGroup> group) {
  auto ex = acceptor_.get_executor();
  while (auto user = co_await accept_next(acceptor_, context_)) {
    if (group->closed()) break;
    asio::co_spawn(ex, serve_user(group, name_, std::move(*user)),
                   LogFailure{context_ + ": user session"});
  }
}

void AppServer::close() {
  error_code ignored;  // closing twice is harmless
  acceptor_.close(ignored);
}

}  // namespace ntp
