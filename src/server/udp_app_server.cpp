#include "udp_app_server.hpp"

#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <memory>

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
  std::optional<asio::ip::address> here;  // where the user sent to (its first datagram)
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
  if (!ec) {
    // Best effort: past net.core.rmem_max only root may go (SO_RCVBUFFORCE).
    const int fd = s.native_handle(), size = kReceiveBuffer, on = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    ::setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);  // on "::" too, for IPv4 users
    if (ep.address().is_v6()) ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  }
  if (ec) {
    error_code ignored;
    s.close(ignored);
  }
  return s;
}

UdpAppServer::UdpAppServer(std::string name, udp::socket socket, const std::string& group_context,
                           Policy policy)
    : AppServer(std::move(name), socket.local_endpoint().port(), group_context, std::move(policy)),
      socket_(std::move(socket)),
      wildcard_(socket_.local_endpoint().address().is_unspecified()) {}

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

// One datagram as recvmsg gave it: its bytes, sender, and where it was sent to.
struct UdpAppServer::Received {
  std::string_view bytes;
  udp::endpoint from;
  std::optional<asio::ip::address> to;
};

namespace {

udp::endpoint endpoint_of(const sockaddr_storage& sa) {
  udp::endpoint ep;
  std::memcpy(ep.data(), &sa, std::min<std::size_t>(sizeof sa, ep.capacity()));
  return ep;
}

}  // namespace

void UdpAppServer::count_kernel_drops(std::uint32_t total) {
  if (total == kernel_drops_) return;
  const auto more = total - kernel_drops_;
  kernel_drops_ = total;
  std::uint64_t suppressed = 0;
  if (kernel_log_.allow(suppressed))
    spdlog::warn(
        "{}: the kernel dropped {} datagrams ({} in all) before they could be read: the socket's "
        "receive buffer was full (raise net.core.rmem_max for larger bursts)",
        context(), more, total);
}

awaitable<void> UdpAppServer::run(std::shared_ptr<AppGroup> group) {
  std::vector<char> buf(kMaxDatagram + 1);
  std::vector<TokenBucket*> up;
  for (auto* q : {group->quota().get(), policy_->quota.get()})
    if (auto* b = q->up()) up.push_back(b);
  const int fd = socket_.native_handle();
  // On the heap: a coroutine frame does not keep alignas for its locals (GCC 12).
  constexpr std::size_t kControl = 256;
  const auto control = std::make_unique<std::uint64_t[]>(kControl / sizeof(std::uint64_t));
  for (;;) {
    auto [ec] = co_await socket_.async_wait(udp::socket::wait_read, nothrow);
    if (ec || !socket_.is_open() || group->closed()) break;
    // Drain what is there (in bounded turns): one wake-up for a burst.
    for (int k = 0; k < 64 && socket_.is_open(); ++k) {
      sockaddr_storage from{};
      iovec iov{buf.data(), buf.size()};
      msghdr msg{};
      msg.msg_name = &from;
      msg.msg_namelen = sizeof from;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control.get();
      msg.msg_controllen = kControl;
      const auto n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        continue;  // an ICMP error from an earlier send: the user is gone, not us
      }
      Received r{std::string_view(buf.data(), static_cast<std::size_t>(n)), endpoint_of(from), {}};
      for (auto* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
          std::uint32_t total = 0;
          std::memcpy(&total, CMSG_DATA(c), sizeof total);
          count_kernel_drops(total);
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
          in_pktinfo pi{};
          std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
          asio::ip::address_v4::bytes_type b;
          std::memcpy(b.data(), &pi.ipi_addr, b.size());
          r.to = asio::ip::address_v4(b);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
          in6_pktinfo pi{};
          std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
          asio::ip::address_v6::bytes_type b;
          std::memcpy(b.data(), &pi.ipi6_addr, b.size());
          if (!r.to) r.to = asio::ip::address_v6(b);  // IP_PKTINFO's IPv4 form first
        }
      }
      on_datagram(group, r, up);
    }
  }
  close();
}

void UdpAppServer::on_datagram(const std::shared_ptr<AppGroup>& group, const Received& r,
                               const std::vector<TokenBucket*>& up) {
  auto it = flows_.find(r.from);
  if (it == flows_.end()) {
    const auto& cidrs = policy_->allow_cidrs;
    if (!cidrs.empty() && std::none_of(cidrs.begin(), cidrs.end(), [&](const Cidr& c) {
          return c.contains(r.from.address());
        })) {
      drop_new(r.from, "not in the app's allow_cidrs");
      return;
    }
    if (flows_.size() >= policy_->max_flows) {
      drop_new(r.from, fmt::format("max_flows ({}) flows are open", policy_->max_flows));
      return;
    }
    auto ticket = Quota::enter(group->quota());
    if (!ticket) {
      drop_new(r.from,
               fmt::format("the group's max_conns ({}) is reached", *group->quota()->max_conns()));
      return;
    }
    auto flow = std::make_shared<Flow>(socket_.get_executor(), r.from,
                                       group->server().next_conn_id(), std::move(ticket));
    flow->here = r.to;
    it = flows_.emplace(r.from, flow).first;
    asio::co_spawn(socket_.get_executor(), keeping(shared_from_this(), serve_flow(group, flow)),
                   LogFailure{context() + ": flow"});
  }
  if (!police(up, r.bytes.size())) {
    ++it->second->dropped;
    return;
  }
  it->second->push(r.bytes);
}

bool UdpAppServer::send_to_user(const char* data, std::size_t n, const udp::endpoint& user,
                                const std::optional<asio::ip::address>& from) {
  if (!socket_.is_open()) return false;
  if (!wildcard_ || !from) {
    error_code ec;
    socket_.send_to(asio::buffer(data, n), user, 0, ec);
    return !ec;
  }
  iovec iov{const_cast<char*>(data), n};
  msghdr msg{};
  msg.msg_name = const_cast<void*>(static_cast<const void*>(user.data()));
  msg.msg_namelen = static_cast<socklen_t>(user.size());
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  msg.msg_control = control;
  auto* c = reinterpret_cast<cmsghdr*>(control);
  if (socket_.local_endpoint().address().is_v4()) {
    in_pktinfo pi{};
    const auto b = from->to_v4().to_bytes();
    std::memcpy(&pi.ipi_spec_dst, b.data(), b.size());
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof pi);
    std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    msg.msg_controllen = CMSG_SPACE(sizeof pi);
  } else {
    // A dual-stack socket: an IPv4 user's source goes as an IPv4-mapped address.
    in6_pktinfo pi{};
    const auto b = (from->is_v4() ? asio::ip::make_address_v6(asio::ip::v4_mapped, from->to_v4())
                                  : from->to_v6())
                       .to_bytes();
    std::memcpy(&pi.ipi6_addr, b.data(), b.size());
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof pi);
    std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    msg.msg_controllen = CMSG_SPACE(sizeof pi);
  }
  return ::sendmsg(socket_.native_handle(), &msg, MSG_DONTWAIT) >= 0;
}

awaitable<void> UdpAppServer::serve_flow(std::shared_ptr<AppGroup> group,
                                         std::shared_ptr<Flow> flow) {
  auto& f = *flow;
  const auto context = fmt::format("{} app={} conn={}", group->context(), name(), f.conn);
  const auto user = to_string(f.user);
  users_->note(spdlog::level::info, fmt::format("{}: flow from {} started", context, user));
  std::string why;  // the first reason the flow ends for; the others follow from it
  auto ended_for = [&](std::string reason) {
    if (why.empty()) why = std::move(reason);
  };
  const auto began = steady_clock::now();

  msg::Start start_msg{name(), f.conn, user, {}};
  if (policy_->addresses) {
    // Where the user sent to: on a wildcard bind, its first datagram's destination.
    error_code lec;
    const auto bound = socket_.local_endpoint(lec);
    if (!lec)
      start_msg.remote = to_string(udp::endpoint(f.here.value_or(bound.address()), bound.port()));
  }
  const Message start = start_msg;
  const auto opening = frame_bytes(encode(start));
  // The data connection, as for a tcp user: tried again only while nothing can
  // have reached the client.
  for (int attempt = 0; attempt <= kStaleRetries && !f.data && !f.ended;) {
    auto pooled = co_await group->take_data_connection(kDataWait);
    if (!pooled) {
      ended_for(group->closed() ? "the client's session has ended"
                                : "no data connection from the client within 10 s");
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
      ended_for("the data connection failed while `start` was sent");
      break;
    }
    std::string buf, peer_error;
    msg::Connected ok;
    auto r = co_await with_timeout(expect_message(data, buf, ok, &peer_error), kLocalWait);
    if (r && !*r) {
      f.data.emplace(std::move(data));
      break;
    }
    ended_for(!peer_error.empty() ? "the client cannot reach the local app: " + log_safe(peer_error)
              : !r ? std::string("the client did not reach the local app within 10 s")
                   : "the data connection ended before the client answered");
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
          ended_for("the data connection ended");
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
          ended_for("the client closed the flow");
          co_return;
        }
        const std::size_t n = std::size_t{len[0]} << 8 | len[1];
        if (n > kMaxDatagram) {
          ended_for(
              fmt::format("the client sent a datagram of {} bytes (at most {})", n, kMaxDatagram));
          co_return;
        }
        if (co_await f.data->read_exact(asio::buffer(datagram.data(), n))) {
          ended_for("the client closed the flow");
          co_return;
        }
        f.last = steady_clock::now();
        if (police(pace.b_to_a, n) && send_to_user(datagram.data(), n, f.user, f.here))
          ++f.out;
        else
          ++f.dropped;
      }
    };
    // A flow without a datagram either way for udp_idle_s ends.
    auto idle = [&]() -> awaitable<void> {
      for (;;) {
        const auto due = f.last + policy_->udp_idle;
        if (steady_clock::now() >= due) {
          ended_for(fmt::format("idle for {} s", policy_->udp_idle.count()));
          co_return;
        }
        asio::steady_timer t(socket_.get_executor(), due);
        if (auto [ec] = co_await t.async_wait(nothrow); ec) co_return;
      }
    };
    co_await (to_client() || to_user() || idle());
  }
  ended_for(f.ended ? "the app's port closed" : "ended");
  f.end();
  if (auto it = flows_.find(f.user); it != flows_.end() && it->second == flow) flows_.erase(it);
  spdlog::debug("{}: flow from {} closed after {:.1f} s ({}), {} datagrams in, {} out, {} dropped",
                context, user, std::chrono::duration<double>(steady_clock::now() - began).count(),
                why, f.in, f.out, f.dropped);
}

}  // namespace ntp
