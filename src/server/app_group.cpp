#include "app_group.hpp"

#include <fmt/format.h>

#include <random>

#include "app_server.hpp"
#include "common_server.hpp"
#include "ntp/daemon.hpp"
#include "ntp/listener.hpp"
#include "udp_app_server.hpp"

namespace ntp {
namespace {

std::string describe(const std::vector<PortRange>& ranges) {
  std::string out;
  for (auto& r : ranges) {
    if (!out.empty()) out += ", ";
    out += r.first == r.last ? std::to_string(r.first) : fmt::format("{}-{}", r.first, r.last);
  }
  return out;
}

// Who may connect to the app, from its registration; an error names what is wrong.
std::optional<std::string> app_cidrs(const msg::AppRequest& app, AppServer::Policy& out) {
  for (auto& text : app.allow_cidrs) {
    auto cidr = parse_cidr(text);
    if (!cidr)
      return fmt::format("allow_cidrs: \"{}\" is not an address or network like \"192.0.2.0/24\"",
                         log_safe(text));
    out.allow_cidrs.push_back(*cidr);
  }
  return std::nullopt;
}

// The `n`th port of the ranges, counted through them in order.
std::uint16_t nth_port(const std::vector<PortRange>& ranges, std::uint32_t n) {
  for (auto& r : ranges) {
    const std::uint32_t size = r.last - r.first + 1u;
    if (n < size) return static_cast<std::uint16_t>(r.first + n);
    n -= size;
  }
  return 0;
}

std::mt19937& random_engine() {
  thread_local std::mt19937 engine{std::random_device{}()};
  return engine;
}

}  // namespace

AppGroup::AppGroup(CommonServer& server, std::string name, std::string session,
                   std::string data_key, Stream control, std::string peer, GroupLimits limits,
                   std::shared_ptr<Quota> quota)
    : server_(server),
      name_(std::move(name)),
      session_(std::move(session)),
      data_key_(std::move(data_key)),
      peer_(std::move(peer)),
      context_("group=" + name_),
      limits_(std::move(limits)),
      quota_(std::move(quota)),
      control_(std::move(control)) {}

AppGroup::~AppGroup() = default;

awaitable<void> AppGroup::run() {
  auto self = shared_from_this();
  std::string buf;
  msg::Register req;
  auto r = co_await with_timeout(expect_message(control_.stream(), buf, req), kHandshakeTimeout);
  if (!r || *r) {
    close(r ? "expected the app list: " + r->message() : "no app list within 5 s");
  } else {
    auto registered = co_await register_apps(req);
    if (closed_) co_return;  // ended while it registered: close() closed what was bound
    control_.send(registered);
    for (auto& app : apps_)
      asio::co_spawn(control_.executor(), app->run(self),
                     LogFailure{app->context() + ": accept loop"});
    auto ended = co_await (read_loop() || control_.write_loop() || watchdog());
    if (ended.index() == 1) {
      auto ec = std::get<1>(ended);
      if (end_reason_.empty()) end_reason_ = "control connection: " + ec.message();
    }
    close(end_reason_.empty() ? "session ended" : end_reason_);
  }
  spdlog::info("{}: session ended: {}", context_, end_reason_);
}

awaitable<void> AppGroup::read_loop() {
  for (Message m;;) {
    auto ec = co_await control_.read(m);
    for (auto* p : probes_) p->cancel();  // each probe sees the message
    if (ec) {
      if (end_reason_.empty())  // close() may have named the reason already
        end_reason_ = ec == asio::error::eof ? "the client closed the control connection"
                                             : "control connection: " + ec.message();
      co_return;
    }
    if (std::holds_alternative<msg::Ping>(m)) {
      control_.send(msg::Pong{});
    } else if (std::holds_alternative<msg::Pong>(m)) {
      // an answer to probe(); its arrival is what counts
    } else if (auto* e = std::get_if<msg::Error>(&m)) {
      end_reason_ = "the client reported: " + log_safe(e->message);
      co_return;
    } else {
      end_reason_ = "unexpected message on the control connection";
      co_return;
    }
  }
}

awaitable<void> AppGroup::watchdog() {
  const auto limit = std::chrono::seconds(server_.config().heartbeat_timeout_s);
  for (;;) {
    auto due = control_.last_received() + limit;
    if (steady_clock::now() >= due) {
      end_reason_ = fmt::format("no heartbeat for {} s", limit.count());
      co_return;
    }
    asio::steady_timer t(control_.executor(), due);
    auto [ec] = co_await t.async_wait(nothrow);
    if (ec) co_return;
  }
}

awaitable<bool> AppGroup::probe(steady_clock::duration limit) {
  auto self = shared_from_this();  // the old session may end while we wait
  const auto before = control_.messages_received();
  const auto deadline = steady_clock::now() + limit;
  control_.send(msg::Ping{});
  // A timer of its own: probes never cancel each other's waits.
  asio::steady_timer wake(control_.executor());
  probes_.push_back(&wake);
  while (!closed_ && control_.messages_received() == before && steady_clock::now() < deadline) {
    wake.expires_at(deadline);
    co_await wake.async_wait(nothrow);
  }
  probes_.remove(&wake);
  co_return !closed_ && control_.messages_received() != before;
}

void AppGroup::close(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  if (end_reason_.empty()) end_reason_ = why;
  control_.close();
  for (auto* p : probes_) p->cancel();
  for (auto& app : apps_) app->close();
  for (auto& c : idle_) c.stream.close();
  idle_.clear();
  for (auto* w : waiters_) w->wake.cancel();  // they see no data connection and close
  waiters_.clear();
  starting_.close_all();
}

void AppGroup::add_data_connection(DataConnection c) {
  if (closed_) return;
  if (!waiters_.empty()) {
    auto* w = waiters_.front();
    waiters_.pop_front();
    w->data.emplace(std::move(c));
    w->wake.cancel();
    return;
  }
  if (idle_.size() >= kDataPoolSize) return;  // `c` closes as it goes out of scope
  idle_.push_back(std::move(c));
}

awaitable<std::optional<AppGroup::DataConnection>> AppGroup::take_data_connection(
    steady_clock::duration limit) {
  auto self = shared_from_this();
  if (closed_) co_return std::nullopt;
  if (!idle_.empty()) {
    auto c = std::move(idle_.front());
    idle_.pop_front();
    co_return std::move(c);
  }
  Waiter w{asio::steady_timer(control_.executor(), limit), std::nullopt};
  waiters_.push_back(&w);
  control_.need_data(1);
  co_await w.wake.async_wait(nothrow);
  waiters_.remove(&w);
  co_return std::move(w.data);
}

awaitable<msg::Registered> AppGroup::register_apps(const msg::Register& req) {
  const GroupConfig* policy = nullptr;
  if (auto& groups = server_.config().groups) {
    auto it = groups->find(name_);
    if (it != groups->end()) policy = &it->second;
  }
  msg::Registered out;
  std::size_t binding = 0;  // apps of this frame that tried to bind a port
  for (std::size_t i = 0; i < req.apps.size(); ++i) {
    // Binding is a few syscalls per port tried: other groups get the loop
    // between every few apps, so a long app list stalls nobody.
    if (i > 0 && i % kAppsPerTurn == 0) {
      co_await asio::post(control_.executor(), asio::use_awaitable);
      if (closed_) co_return out;
    }
    const auto& app = req.apps[i];
    auto result = register_app(app, policy, binding);
    if (result.error.empty())
      spdlog::info("{} app={} port={}: listening", context_, app.name, result.remote_port);
    else
      spdlog::warn("{} app={}: not registered: {}", context_, log_safe(app.name), result.error);
    out.apps.push_back(std::move(result));
  }
  co_return out;
}

msg::AppResult AppGroup::register_app(const msg::AppRequest& app, const GroupConfig* policy,
                                      std::size_t& binding) {
  msg::AppResult r{app.name, 0, {}};
  if (!valid_name(app.name)) {
    r.error = "invalid app name";
    return r;
  }
  for (auto& a : apps_)
    if (a->name() == app.name) {
      r.error = fmt::format("duplicate app name \"{}\"", app.name);
      return r;
    }
  // Apps that tried to bind count, not only those that got a port: a frame asking
  // for thousands costs the binds of max_apps of them at most.
  if (limits_.max_apps && std::max(apps_.size(), binding) >= *limits_.max_apps) {
    r.error = fmt::format(
        "the group may register at most {} apps (max_apps; each port of a range is an app)",
        *limits_.max_apps);
    return r;
  }
  AppServer::Policy app_limits;
  if (auto bad = app_cidrs(app, app_limits)) {
    r.error = *bad;
    return r;
  }
  const auto& cfg = server_.config();
  const auto& allowed =
      policy && !policy->allow_ports.empty() ? policy->allow_ports : cfg.allow_ports;
  auto permitted = [&](std::uint16_t p) {
    if (p == cfg.bind.port) return false;
    return allowed.empty() ? p >= 1024 : ports_contain(allowed, p);
  };
  const auto where = allowed.empty() ? std::string("1024-65535") : describe(allowed);
  if (app.remote_port != 0 && !permitted(app.remote_port)) {
    r.error = fmt::format("port {} is not allowed (allow_ports: {})", app.remote_port, where);
    return r;
  }

  ++binding;
  const auto addr = asio::ip::make_address(cfg.proxy_bind_addr);
  auto ex = control_.executor();
  error_code ec;
  // The app's socket: a listener for tcp, a datagram socket for udp (a tcp and a
  // udp app may hold the same port number).
  const bool udp = app.type == "udp";
  tcp::acceptor acceptor(ex);
  UdpAppServer::udp::socket datagrams(ex);
  auto try_bind = [&](std::uint16_t port) {
    server_.count_bind_attempt();
    if (udp)
      datagrams = UdpAppServer::open(ex, {addr, port}, ec);
    else
      acceptor = open_listener(ex, {addr, port}, ec);
  };

  if (app.remote_port != 0) {
    try_bind(app.remote_port);
    if (ec) {
      r.error = ec == asio::error::address_in_use
                    ? fmt::format("port {} is taken", app.remote_port)
                    : fmt::format("port {}: {}", app.remote_port, ec.message());
      return r;
    }
  } else if (allowed.empty()) {
    try_bind(0);  // the kernel picks from its ephemeral range (>= 1024)
  } else {
    // At most kPortProbes ports in a row from a random place in the allowed
    // ranges (so groups asking for "any port" do not all collide): a nearly full
    // range costs a bounded number of binds, never one per port of the range.
    std::uint32_t count = 0;
    for (auto& range : allowed) count += range.last - range.first + 1u;
    ec = asio::error::address_in_use;
    std::uint32_t tried = 0;
    for (std::uint32_t i = 0, start = std::uniform_int_distribution<std::uint32_t>(
                                  0, count - 1)(random_engine());
         i < count && tried < kPortProbes && ec; ++i) {
      const auto port = nth_port(allowed, (start + i) % count);
      if (!permitted(port)) continue;
      ++tried;
      try_bind(port);
    }
  }
  if (ec) {
    r.error =
        ec == asio::error::address_in_use
            ? fmt::format("no free port in {} ({} tried from a random place)", where, kPortProbes)
            : fmt::format("no free port in {}: {}", where, ec.message());
    return r;
  }
  app_limits.quota = server_.app_quota(name_, app.name, app.max_conns, app.bandwidth);
  app_limits.max_waiting_users = cfg.max_waiting_users;
  app_limits.addresses = app.addresses;
  if (app.max_flows) app_limits.max_flows = *app.max_flows;
  if (app.udp_idle_s) app_limits.udp_idle = std::chrono::seconds(*app.udp_idle_s);
  std::unique_ptr<AppServer> server;
  if (udp)
    server = std::make_unique<UdpAppServer>(app.name, std::move(datagrams), context_,
                                            std::move(app_limits));
  else
    server = std::make_unique<TcpAppServer>(app.name, std::move(acceptor), context_,
                                            std::move(app_limits));
  r.remote_port = server->port();
  apps_.push_back(std::move(server));
  return r;
}

}  // namespace ntp
