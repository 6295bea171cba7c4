#include "app_server.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "app_group.hpp"
#include "common_server.hpp"
#include "ntp/address.hpp"
#include "ntp/daemon.hpp"
#include "ntp/listener.hpp"
#include "ntp/message.hpp"
#include "ntp/splice.hpp"

namespace ntp {
namespace {

constexpr int kStaleRetries = 3;               // idle data connections that died unnoticed
constexpr std::size_t kEarlyData = 16 * 1024;  // user bytes sent along with `start`
constexpr std::size_t kSentAhead = 64 * 1024;  // and before the client's answer, in all

std::string cidrs(const std::vector<Cidr>& list) {
  std::string out;
  for (auto& c : list) out += (out.empty() ? "" : ", ") + c.str();
  return out;
}

// User bytes are read here first (never held across a wait) and appended to the
// kept copy, so a one-byte read costs no zero-filled 16 KiB.
thread_local std::array<char, kEarlyData> scratch;

// The user's bytes that come while the client connects to its local app go on at
// once: an app that waits for its client to speak first (HTTP) gets the request
// one trip sooner. They are kept in `kept` (behind `start`) for a retry on another
// data connection. Ends when `answered`, at `limit` bytes behind the frame, or at
// the user's EOF or error, which the splice then meets again.
awaitable<void> send_ahead(Stream& user, Stream& data, std::string& kept, std::size_t frame_size,
                           std::size_t limit, const bool& answered) {
  while (!answered && kept.size() < frame_size + limit) {
    auto [wec] = co_await user.socket().async_wait(tcp::socket::wait_read, nothrow);
    if (wec || answered) co_return;
    const auto before = kept.size();
    error_code ec;
    const auto n = user.read_now(
        asio::buffer(scratch.data(), std::min(scratch.size(), frame_size + limit - before)), ec);
    kept.append(scratch.data(), n);
    if (n > 0 && co_await data.write_all(asio::buffer(kept.data() + before, n))) co_return;
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) co_return;
  }
}

// The client's answer on `data`: connected, an error (in `peer_error`), or nullopt
// after kLocalWait. Then send_ahead stops: its wait on the user is cancelled, and
// on failure a write it has pending on `data` too.
awaitable<std::optional<error_code>> await_answer(Stream& user, Stream& data,
                                                  std::string& peer_error, bool& answered) {
  std::string buf;
  msg::Connected ok;
  auto r = co_await with_timeout(expect_message(data, buf, ok, &peer_error), kLocalWait);
  answered = true;
  error_code ignored;
  user.socket().cancel(ignored);
  if (!r || *r) data.close();
  co_return r;
}

// Counts a user waiting for a data connection while it lives.
struct Waiting {
  AppServer::Users& users;
  explicit Waiting(AppServer::Users& u) : users(u) { ++users.waiting; }
  ~Waiting() { --users.waiting; }
  Waiting(const Waiting&) = delete;
  Waiting& operator=(const Waiting&) = delete;
};

// The `start` frame's bytes. Built apart: a message kept in the coroutine's frame
// would cost every held stream its size.
std::string start_frame(const std::string& app, std::uint64_t conn, const std::string& user_peer,
                        tcp::socket* remote_of) {
  msg::Start start{app, conn, user_peer, {}};
  if (remote_of) {
    error_code ec;
    const auto here = remote_of->local_endpoint(ec);
    if (!ec) start.remote = to_string(here);
  }
  return frame_bytes(encode(Message{std::move(start)}));
}

// One user, from accept to the end of its stream.
awaitable<void> serve_user(std::shared_ptr<AppGroup> group, std::string app,
                           std::shared_ptr<const AppServer::Policy> policy,
                           std::shared_ptr<AppServer::Users> users, tcp::socket socket,
                           tcp::endpoint user_ep) {
  Stream user(std::move(socket));
  auto& server = group->server();
  const auto conn = server.next_conn_id();
  const auto context = fmt::format("{} app={} conn={}", group->context(), app, conn);
  const auto user_peer = to_string(user_ep);
  auto closing = [&](const std::string& why) {
    users->note(spdlog::level::warn,
                fmt::format("{}: closing user {}: {}", context, user_peer, why));
  };
  users->note(spdlog::level::info, fmt::format("{}: user {} connected", context, user_peer));

  // Limits first: a user who may not be served costs nothing more.
  if (!policy->allow_cidrs.empty() &&
      std::none_of(policy->allow_cidrs.begin(), policy->allow_cidrs.end(),
                   [&](const Cidr& c) { return c.contains(user_ep.address()); })) {
    closing(fmt::format("not in the app's allow_cidrs ({})", cidrs(policy->allow_cidrs)));
    co_return;
  }
  auto group_ticket = Quota::enter(group->quota());
  if (!group_ticket) {
    closing(fmt::format("the group's max_conns ({}) is reached", *group->quota()->max_conns()));
    co_return;
  }
  auto app_ticket = Quota::enter(policy->quota);
  if (!app_ticket) {
    closing(fmt::format("the app's max_conns ({}) is reached", *policy->quota->max_conns()));
    co_return;
  }
  if (users->waiting >= policy->max_waiting_users) {
    closing(
        fmt::format("{} users of the app are waiting for a data connection "
                    "(max_waiting_users)",
                    users->waiting));
    co_return;
  }
  std::optional<Waiting> waiting(std::in_place, *users);
  // The buckets live in the quotas, which the tickets and `policy` keep alive.
  Pace pace;
  for (auto* q : {group->quota().get(), policy->quota.get()}) {
    if (auto* b = q->up()) pace.a_to_b.push_back(b);
    if (auto* b = q->down()) pace.b_to_a.push_back(b);
  }

  // The start frame, then the user's first bytes if already here: the client
  // forwards them as soon as it reaches the local app instead of waiting for us.
  // The user's address always (the client's lines name it); the remote port's
  // own, a syscall, only for an app's PROXY protocol header.
  std::string opening =
      start_frame(app, conn, user_peer, policy->addresses ? &user.socket() : nullptr);
  const auto frame_size = opening.size();
  error_code ec;
  opening.append(scratch.data(), user.read_now(asio::buffer(scratch), ec));
  if (ec && ec != asio::error::would_block && ec != asio::error::eof) {
    spdlog::debug("{}: user {} left before a data connection was ready: {}", context, user_peer,
                  ec.message());
    co_return;
  }
  // They count against the upload limits like every later byte: their debt makes
  // the splice wait.
  for (auto* b : pace.a_to_b) b->take(opening.size() - frame_size, steady_clock::now());

  // A user's bytes reach the app at most once: another data connection is tried
  // only while none of them can have reached the client (the pooled connection
  // turned out dead before our write, or took none of it).
  std::optional<Stream> data;
  std::string first_write;  // the connection's data_ok, then `opening`: one write
  // A connection that shows its end before our write costs no attempt: it takes
  // no time, and the pool holds few.
  for (int attempt = 0; attempt <= kStaleRetries && !data;) {
    auto pooled = co_await group->take_data_connection(kDataWait);
    if (!pooled) {
      closing(group->closed() ? "the client's session has ended"
                              : "no data connection from the client within 10 s");
      co_return;
    }
    data.emplace(std::move(pooled->stream));
    if (!data->quiet()) {  // closed (or spoke) while idle in the pool
      data.reset();
      continue;
    }
    SocketSet::Entry starting(group->starting(), data->socket());
    first_write.assign(pooled->data_ok).append(opening);
    std::size_t written = 0;
    if (co_await data->write_all(asio::buffer(first_write), written)) {
      if (written == 0) {  // went stale while idle in the pool: try the next one
        data.reset();
        ++attempt;
        continue;
      }
      closing(
          "the data connection failed while `start` was sent; not retried, as the "
          "client may have passed the user's bytes on");
      co_return;
    }
    std::string peer_error;
    bool answered = false;
    // A bandwidth-limited user waits for the splice, which paces every byte.
    const auto ahead = pace.a_to_b.empty() ? kSentAhead : 0;
    auto r = co_await (await_answer(user, *data, peer_error, answered) &&
                       send_ahead(user, *data, opening, frame_size, ahead, answered));
    if (r && !*r) break;
    if (group->closed()) {
      closing("the client's session has ended");
      co_return;
    }
    if (!peer_error.empty()) {
      closing("the client cannot reach the local app: " + log_safe(peer_error));
      co_return;
    }
    if (!r) {
      closing("the client did not reach the local app within 10 s");
      co_return;
    }
    closing(
        "the data connection ended before the client answered; not retried, as the client "
        "may have passed the user's bytes on");
    co_return;
  }
  if (!data) {
    closing("no working data connection");
    co_return;
  }
  waiting.reset();
  // The user's bytes that went with `start` or ahead of the answer: copied with
  // a frame, and part of the stream's count.
  const std::uint64_t sent_before = opening.size() - frame_size;
  std::string().swap(opening);  // a held stream keeps no buffer
  std::string().swap(first_write);
  LiveStreams::Entry live(server.streams(), user.socket(), data->socket(), group->name());
  group.reset();  // a spliced stream is not part of the session: it outlives it
  spdlog::debug("{}: stream open", context);
  const auto began = steady_clock::now();
  const auto mode = server.config().zero_copy ? SpliceMode::zero_copy : SpliceMode::buffered;
  auto bytes = co_await splice(user, *data, pace, mode);
  bytes.a_to_b += sent_before;
  bytes.with_frames += sent_before;
  spdlog::debug("{}: stream closed {}", context, describe(bytes, steady_clock::now() - began));
}

}  // namespace

AppServer::AppServer(std::string name, std::uint16_t port, const std::string& group_context,
                     Policy policy)
    : policy_(std::make_shared<const Policy>(std::move(policy))),
      users_(std::make_shared<Users>()),
      name_(std::move(name)),
      port_(port),
      context_(fmt::format("{} app={} port={}", group_context, name_, port_)) {}

awaitable<void> keeping(std::shared_ptr<AppServer> app, awaitable<void> task) {
  co_await std::move(task);
  app.reset();
}

void AppServer::Users::note(spdlog::level::level_enum level, const std::string& line) {
  std::uint64_t suppressed = 0;
  if (log.allow(suppressed))
    spdlog::log(
        level, "{}{}", line,
        suppressed ? fmt::format(" ({} more lines about users not logged)", suppressed) : "");
}

TcpAppServer::TcpAppServer(std::string name, tcp::acceptor acceptor,
                           const std::string& group_context, Policy policy)
    : AppServer(std::move(name), acceptor.local_endpoint().port(), group_context,
                std::move(policy)),
      acceptor_(std::move(acceptor)) {}

awaitable<void> TcpAppServer::run(std::shared_ptr<AppGroup> group) {
  auto ex = acceptor_.get_executor();
  while (auto user = co_await accept_next(acceptor_, context())) {
    if (group->closed()) break;
    asio::co_spawn(ex,
                   serve_user(group, name(), policy_, users_, std::move(user->socket), user->peer),
                   LogFailure{context() + ": user session"});
  }
}

void TcpAppServer::close() {
  error_code ignored;  // closing twice is harmless
  acceptor_.close(ignored);
}

}  // namespace ntp
