#include "udp_app_server.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <deque>

#include "app_group.hpp"
#include "common_server.hpp"
#include "ntp/address.hpp"
#include "ntp/daemon.hpp"
#include "ntp/message.hpp"
#include "ntp/splice.hpp"

namespace ntp {
namespace {

using udp = asio::ip::udp;

constexpr int kStaleRetries = 3;                // as for tcp users
constexpr std::size_t kWriteBatch = 64 * 1024;  // datagrams gathered into one write

std::string to_string(const udp::endpoint& ep) {
  return ntp::to_string(tcp::endpoint(ep.address(), ep.port()));
}

// A datagram as it crosses a data connection: its length in two bytes, then it.
void append_framed(std::string& out, std::string_view datagram) {
  out += static_cast<char>(datagram.size() >> 8);
  out += static_cast<char>(datagram.size() & 0xff);
  out += datagram;
}

// Whether every bucket has room for `n` bytes now; takes them if so. A datagram
// over a bandwidth limit is dropped, never delayed.
bool police(const std::vector<TokenBucket*>& buckets, std::size_t n) {
  const auto now = steady_clock::now();
  for (auto* b : buckets)
    if (!b->has_room(n, now)) return false;
  for (auto* b : buckets) b->take(n, now);
  return true;
}

}  // namespace

struct UdpAppServer::Flow {
  Flow(const asio::any_io_executor& ex, udp::endpoint u, std::uint64_t c, Quota::Ticket t)
      : user(u), conn(c), wake(ex), ticket(std::move(t)) {}

  // A datagram from the user, for the client; dropped (and counted) when the
  // queue is full or the flow has ended.
  void push(std::string_view datagram) {
    last = steady_clock::now();
    if (ended || queue.size() >= kQueueDatagrams || queued + datagram.size() > kQueueBytes) {
      ++dropped;
      return;
    }
    std::string framed;
    framed.reserve(datagram.size() + 2);
    append_framed(framed, datagram);
    queued += framed.size();
    queue.push_back(std::move(framed));
    ++in;
    wake.cancel();
  }
  void end() {
    ended = true;
    wake.cancel();
    if (data) data->close();
  }

  udp::endpoint user;
  std::uint64_t conn;
  std::deque<std::string> queue;  // framed
  std::size_t queued = 0;         // bytes in `queue`
  asio::steady_timer wake;        // the writer sleeps on it
  std::optional<Stream> data;
  Quota::Ticket ticket;  // a flow is one of the group's users
  bool ended = false;
  steady_clock::time_point last = steady_clock::now();
  std::uint64_t in = 0, out = 0, dropped = 0;  // datagrams
};

udp::socket UdpAppServer::open(const asio::any_io_executor& ex, const udp::endpoint& ep,
                               error_code& ec) {
  udp::socket s(ex);
  s.open(ep.protocol(), ec);
  if (!ec && ep.address().is_v6()) s.set_option(asio::ip::v6_only(false), ec);
  if (!ec) s.bind(ep, ec);
  if (!ec) s.non_blocking(true, ec);  // sends to users never wait: a full buffer drops
  if (ec) {
    error_code ignored;
    s.close(ignored);
  }
  return s;
}

UdpAppServer::UdpAppServer(std::string name, udp::socket socket, const std::string& group_context,
                           Policy policy)
    : AppServer(std::move(name), socket.local_endpoint().port(), group_context, std::move(policy)),
      socket_(std::move(socket)) {}

UdpAppServer::~UdpAppServer() {
  close();
}

void UdpAppServer::close() {
  error_code ignored;
  socket_.close(ignored);
  auto flows = flows_;  // their tasks erase them as they end
  for (auto& [ep, f] : flows) f->end();
}

void UdpAppServer::drop_new(const udp::endpoint& from, const std::string& why) {
  ++dropped_new_;
  std::uint64_t suppressed = 0;
  if (drop_log_.allow(suppressed))
    spdlog::warn("{}: dropping datagrams from {}: {}{}", context(), to_string(from), why,
                 suppressed ? fmt::format(" ({} more dropped since)", suppressed) : "");
}

awaitable<void> UdpAppServer::run(std::shared_ptr<AppGroup> group) {
  auto ex = socket_.get_executor();
  std::vector<char> buf(kMaxDatagram + 1);
  Pace pace;
  for (auto* q : {group->quota().get(), policy_->quota.get()})
    if (auto* b = q->up()) pace.a_to_b.push_back(b);
  for (;;) {
    udp::endpoint from;
    auto [ec, n] = co_await socket_.async_receive_from(asio::buffer(buf), from, nothrow);
    if (!socket_.is_open() || ec == asio::error::operation_aborted || group->closed()) break;
    if (ec) continue;  // an ICMP error from an earlier send: the user is gone, not us
    auto it = flows_.find(from);
    if (it == flows_.end()) {
      const auto& cidrs = policy_->allow_cidrs;
      if (!cidrs.empty() && std::none_of(cidrs.begin(), cidrs.end(), [&](const Cidr& c) {
            return c.contains(from.address());
          })) {
        drop_new(from, "not in the app's allow_cidrs");
        continue;
      }
      if (flows_.size() >= policy_->max_flows) {
        drop_new(from, fmt::format("max_flows ({}) flows are open", policy_->max_flows));
        continue;
      }
      auto ticket = Quota::enter(group->quota());
      if (!ticket) {
        drop_new(from, fmt::format("the group's max_conns ({}) is reached",
                                   *group->quota()->max_conns()));
        continue;
      }
      auto flow =
          std::make_shared<Flow>(ex, from, group->server().next_conn_id(), std::move(ticket));
      it = flows_.emplace(from, flow).first;
      asio::co_spawn(ex, serve_flow(group, flow), LogFailure{context() + ": flow"});
    }
    if (!police(pace.a_to_b, n)) {
      ++it->second->dropped;
      continue;
    }
    it->second->push(std::string_view(buf.data(), n));
  }
  close();
}

awaitable<void> UdpAppServer::serve_flow(std::shared_ptr<AppGroup> group,
                                         std::shared_ptr<Flow> flow) {
  auto& f = *flow;
  const auto context = fmt::format("{} app={} conn={}", group->context(), name(), f.conn);
  const auto user = to_string(f.user);
  users_->note(spdlog::level::info, fmt::format("{}: flow from {} started", context, user));
  std::string why = "ended";
  const auto began = steady_clock::now();

  msg::Start start_msg{name(), f.conn, user, {}};
  if (policy_->addresses) {
    error_code lec;
    if (auto here = socket_.local_endpoint(lec); !lec) start_msg.remote = to_string(here);
  }
  const Message start = start_msg;
  const auto opening = frame_bytes(encode(start));
  // The data connection, as for a tcp user: tried again only while nothing can
  // have reached the client.
  for (int attempt = 0; attempt <= kStaleRetries && !f.data && !f.ended;) {
    auto pooled = co_await group->take_data_connection(kDataWait);
    if (!pooled) {
      why = group->closed() ? "the client's session has ended"
                            : "no data connection from the client within 10 s";
      break;
    }
    Stream data(std::move(pooled->stream));
    if (!data.quiet()) continue;
    SocketSet::Entry starting(group->starting(), data.socket());
    const auto first_write = pooled->data_ok + opening;
    std::size_t written = 0;
    if (co_await data.write_all(asio::buffer(first_write), written)) {
      if (written == 0) {
        ++attempt;
        continue;
      }
      why = "the data connection failed while `start` was sent";
      break;
    }
    std::string buf, peer_error;
    msg::Connected ok;
    auto r = co_await with_timeout(expect_message(data, buf, ok, &peer_error), kLocalWait);
    if (r && !*r) {
      f.data.emplace(std::move(data));
      break;
    }
    why = !peer_error.empty() ? "the client cannot reach the local app: " + log_safe(peer_error)
          : !r                ? std::string("the client did not reach the local app within 10 s")
                              : "the data connection ended before the client answered";
    break;
  }

  if (f.data && !f.ended) {
    Pace pace;
    for (auto* q : {group->quota().get(), policy_->quota.get()})
      if (auto* b = q->down()) pace.b_to_a.push_back(b);
    // Towards the client: the queue, gathered into writes.
    auto to_client = [&]() -> awaitable<void> {
      std::string batch;
      while (!f.ended) {
        if (f.queue.empty()) {
          f.wake.expires_at(steady_clock::time_point::max());
          co_await f.wake.async_wait(nothrow);
          auto cs = co_await asio::this_coro::cancellation_state;
          if (cs.cancelled() != asio::cancellation_type::none) co_return;
          continue;
        }
        batch.clear();
        while (!f.queue.empty() && batch.size() < kWriteBatch) {
          batch += f.queue.front();
          f.queued -= f.queue.front().size();
          f.queue.pop_front();
        }
        if (co_await f.data->write_all(asio::buffer(batch))) {
          why = "the data connection ended";
          co_return;
        }
      }
    };
    // Towards the user: each framed datagram from the client, sent from the app's socket.
    auto to_user = [&]() -> awaitable<void> {
      std::array<unsigned char, 2> len{};
      std::vector<char> datagram(65535);
      for (;;) {
        if (co_await f.data->read_exact(asio::buffer(len))) {
          why = "the client closed the flow";
          co_return;
        }
        const std::size_t n = std::size_t{len[0]} << 8 | len[1];
        if (n > kMaxDatagram) {
          why = fmt::format("the client sent a datagram of {} bytes (at most {})", n, kMaxDatagram);
          co_return;
        }
        if (co_await f.data->read_exact(asio::buffer(datagram.data(), n))) {
          why = "the client closed the flow";
          co_return;
        }
        f.last = steady_clock::now();
        error_code sec;
        if (police(pace.b_to_a, n))
          socket_.send_to(asio::buffer(datagram.data(), n), f.user, 0, sec);
        else
          sec = asio::error::no_buffer_space;
        if (sec)
          ++f.dropped;
        else
          ++f.out;
      }
    };
    // A flow without a datagram either way for udp_idle_s ends.
    auto idle = [&]() -> awaitable<void> {
      for (;;) {
        const auto due = f.last + policy_->udp_idle;
        if (steady_clock::now() >= due) {
          why = fmt::format("idle for {} s", policy_->udp_idle.count());
          co_return;
        }
        asio::steady_timer t(socket_.get_executor(), due);
        if (auto [ec] = co_await t.async_wait(nothrow); ec) co_return;
      }
    };
    co_await (to_client() || to_user() || idle());
  }
  f.end();
  if (auto it = flows_.find(f.user); it != flows_.end() && it->second == flow) flows_.erase(it);
  spdlog::debug("{}: flow from {} closed after {:.1f} s ({}), {} datagrams in, {} out, {} dropped",
                context, user, std::chrono::duration<double>(steady_clock::now() - began).count(),
                why, f.in, f.out, f.dropped);
}

}  // namespace ntp
