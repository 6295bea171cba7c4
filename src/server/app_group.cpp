#include "app_group.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <set>

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
    auto applied = co_await apply_apps(req);
    if (closed_) co_return;  // ended while it registered: close() closed what was bound
    control_.send(applied.registered);
    start(applied.started);
    auto ended = co_await (read_loop() || control_.write_loop() || watchdog());
    if (ended.index() == 1) {
      auto ec = std::get<1>(ended);
      if (end_reason_.empty()) end_reason_ = "control connection: " + ec.message();
    }
    close(end_reason_.empty() ? "session ended" : end_reason_);
  }
  spdlog::info("{}: session ended: {}", context_, end_reason_);
}

void AppGroup::start(const std::vector<std::shared_ptr<AppServer>>& apps) {
  for (auto& app : apps)
    asio::co_spawn(control_.executor(), keeping(app, app->run(shared_from_this())),
                   LogFailure{app->context() + ": accept loop"});
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
    } else if (auto* again = std::get_if<msg::Register>(&m)) {
      // The client reloaded its apps.json: its list is what it serves now.
      auto applied = co_await apply_apps(*again);
      if (closed_) co_return;
      control_.send(applied.registered);
      start(applied.started);
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
  for (auto& app : apps_) app.server->close();
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

const std::vector<PortRange>& AppGroup::allowed_ports() const {
  const auto& cfg = server_.config();
  if (cfg.groups)
    if (auto it = cfg.groups->find(name_);
        it != cfg.groups->end() && !it->second.allow_ports.empty())
      return it->second.allow_ports;
  return cfg.allow_ports;
}

bool AppGroup::port_permitted(std::uint16_t port) const {
  if (port == server_.config().bind.port) return false;
  const auto& allowed = allowed_ports();
  return allowed.empty() ? port >= 1024 : ports_contain(allowed, port);
}

std::string AppGroup::allowed_description() const {
  const auto& allowed = allowed_ports();
  return allowed.empty() ? std::string("1024-65535") : describe(allowed);
}

std::size_t AppGroup::apply_policy(GroupLimits limits) {
  limits_ = std::move(limits);
  msg::Registered closed;
  std::erase_if(apps_, [&](App& app) {
    if (port_permitted(app.server->port())) return false;
    auto why = fmt::format("port {} is no longer allowed (allow_ports: {})", app.server->port(),
                           allowed_description());
    spdlog::warn("{}: closed by a reload: {}", app.server->context(), why);
    app.server->close();
    closed.apps.push_back({app.server->name(), 0, std::move(why)});
    return true;
  });
  if (!closed.apps.empty() && !closed_) control_.send(closed);
  return closed.apps.size();
}

awaitable<AppGroup::Applied> AppGroup::apply_apps(const msg::Register& req) {
  Applied out;
  std::set<std::string> listed;
  for (auto& app : req.apps) listed.insert(app.name);
  std::erase_if(apps_, [&](App& app) {
    if (listed.count(app.server->name())) return false;
    spdlog::info("{}: closed: the client no longer serves the app", app.server->context());
    app.server->close();
    return true;
  });
  std::set<std::string> seen;
  std::size_t failed = 0;  // apps of this frame that tried to bind and got no port
  for (std::size_t i = 0; i < req.apps.size(); ++i) {
    // Binding is a few syscalls per port tried: other groups get the loop
    // between every few apps, so a long app list stalls nobody.
    if (i > 0 && i % kAppsPerTurn == 0) {
      co_await asio::post(control_.executor(), asio::use_awaitable);
      if (closed_) co_return out;
    }
    const auto& asked = req.apps[i];
    msg::AppResult result{asked.name, 0, {}};
    auto held = std::find_if(apps_.begin(), apps_.end(),
                             [&](const App& a) { return a.server->name() == asked.name; });
    if (!seen.insert(asked.name).second) {
      result.error = fmt::format("duplicate app name \"{}\"", log_safe(asked.name));
    } else if (held != apps_.end() && held->asked.type == asked.type &&
               (asked.remote_port == 0 || asked.remote_port == held->server->port())) {
      // Same socket: new limits for new users, the port and its users untouched.
      AppServer::Policy policy;
      if (auto bad = app_policy(asked, policy)) {
        result.error = *bad;
        held->server->close();
        apps_.erase(held);
      } else {
        if (!(held->asked == asked)) {
          held->server->set_policy(std::move(policy));
          spdlog::info("{}: the client changed the app's limits", held->server->context());
        }
        held->asked = asked;
        result.remote_port = held->server->port();
      }
    } else {
      if (held != apps_.end()) {  // another type or port: a new socket
        spdlog::info("{}: closed: the client moved the app", held->server->context());
        held->server->close();
        apps_.erase(held);
      }
      if (auto server = register_app(asked, failed, result)) {
        apps_.push_back({server, asked});
        out.started.push_back(std::move(server));
      }
    }
    if (result.error.empty())
      spdlog::info("{} app={} port={}: listening", context_, asked.name, result.remote_port);
    else
      spdlog::warn("{} app={}: not registered: {}", context_, log_safe(asked.name), result.error);
    out.registered.apps.push_back(std::move(result));
  }
  co_return out;
}

std::optional<std::string> AppGroup::app_policy(const msg::AppRequest& app,
                                                AppServer::Policy& out) {
  if (auto bad = app_cidrs(app, out)) return bad;
  out.quota = server_.app_quota(name_, app.name, app.max_conns, app.bandwidth);
  out.max_waiting_users = server_.config().max_waiting_users;
  out.addresses = app.addresses;
  if (app.max_flows) out.max_flows = *app.max_flows;
  if (app.udp_idle_s) out.udp_idle = std::chrono::seconds(*app.udp_idle_s);
  return std::nullopt;
}

std::shared_ptr<AppServer> AppGroup::register_app(const msg::AppRequest& app, std::size_t& failed,
                                                  msg::AppResult& r) {
  if (!valid_name(app.name)) {
    r.error = "invalid app name";
    return nullptr;
  }
  // Apps that tried to bind count, not only those that got a port: a frame asking
  // for thousands costs the binds of max_apps of them at most.
  if (limits_.max_apps && apps_.size() + failed >= *limits_.max_apps) {
    r.error = fmt::format(
        "the group may register at most {} apps (max_apps; each port of a range is an app)",
        *limits_.max_apps);
    return nullptr;
  }
  AppServer::Policy app_limits;
  if (auto bad = app_policy(app, app_limits)) {
    r.error = *bad;
    return nullptr;
  }
  const auto& cfg = server_.config();
  const auto& allowed = allowed_ports();
  const auto where = allowed_description();
  if (app.remote_port != 0 && !port_permitted(app.remote_port)) {
    r.error = fmt::format("port {} is not allowed (allow_ports: {})", app.remote_port, where);
    return nullptr;
  }

  ++failed;  // until it has a port
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
      return nullptr;
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
      if (!port_permitted(port)) continue;
      ++tried;
      try_bind(port);
    }
  }
  if (ec) {
    r.error =
        ec == asio::error::address_in_use
            ? fmt::format("no free port in {} ({} tried from a random place)", where, kPortProbes)
            : fmt::format("no free port in {}: {}", where, ec.message());
    return nullptr;
  }
  --failed;
  std::shared_ptr<AppServer> server;
  if (udp)
    server = std::make_shared<UdpAppServer>(app.name, std::move(datagrams), context_,
                                            std::move(app_limits));
  else
    server = std::make_shared<TcpAppServer>(app.name, std::move(acceptor), context_,
                                            std::move(app_limits));
  r.remote_port = server->port();
  return server;
}

}  // namespace ntp
