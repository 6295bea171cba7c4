#include "client.hpp"

#include <fmt/format.h>
#include <openssl/err.h>

#include <algorithm>
#include <set>

#include "backoff.hpp"
#include "local_app.hpp"
#include "ntp/auth.hpp"
#include "ntp/daemon.hpp"
#include "ntp/listener.hpp"
#include "udp_flow.hpp"

namespace ntp {
namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(5);

std::optional<TlsContext> client_tls(const ClientConfig& cfg) {
  if (!cfg.tls) return std::nullopt;
  return TlsContext::client(*cfg.tls, cfg.server ? cfg.server->host : std::string());
}

// The magic prefix, with `then` behind it in the same write.
awaitable<error_code> write_prefix(Stream& s, std::string_view then = {}) {
  const auto prefix = client_prefix();
  std::string out(prefix.begin(), prefix.end());
  out += then;
  co_return co_await s.write_all(asio::buffer(out));
}

// What a failed TLS handshake means to the user.
std::string handshake_failure(const Stream& s, error_code ec) {
  if (ec.category() == tls_category()) {
    const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG)
      return "TLS handshake: the server did not answer in TLS: it runs with \"tls\": false "
             "(set \"tls\": false in apps.json too) or it is not an ntp-server";
    return "TLS handshake: " + s.tls_failure();
  }
  if (ec == asio::error::eof || ec == asio::error::connection_reset)
    return "TLS handshake: the server closed the connection (is it an ntp-server with TLS on?)";
  return "TLS handshake: " + ec.message();
}

std::string counted(std::size_t n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// The register frame for `cfg`'s apps.
msg::Register register_request(const ClientConfig& cfg) {
  msg::Register req;
  for (auto& app : cfg.apps) {
    msg::AppRequest r{app.name, app.remote_port, app.max_conns, app.bandwidth, app.allow_cidrs};
    r.type = app.type;
    if (app.type == "udp") {
      r.max_flows = app.max_flows;
      r.udp_idle_s = app.udp_idle_s;
    }
    r.addresses = app.proxy_protocol != ProxyProtocol::none;
    req.apps.push_back(std::move(r));
  }
  return req;
}

}  // namespace

Client::Client(asio::any_io_executor ex, ClientConfig config)
    : ex_(ex), context_("group=" + config.group), retry_(ex), streams_(ex) {
  auto tls = client_tls(config);
  now_ = std::make_shared<const Settings>(Settings{std::move(config), std::move(tls)});
}

std::string Client::reload(ClientConfig next) {
  auto tls = client_tls(next);  // throws before anything changed
  const auto& was = now_->cfg;
  const bool new_session = !(next.server == was.server) || next.group != was.group ||
                           next.token != was.token || next.tls != was.tls ||
                           next.heartbeat_interval_s != was.heartbeat_interval_s;
  std::size_t added = 0, removed = 0, changed = 0, unchanged = 0;
  std::set<std::string> gone;
  for (auto& app : was.apps) gone.insert(app.name);
  for (auto& app : next.apps) {
    auto old = std::find_if(was.apps.begin(), was.apps.end(),
                            [&](const LocalApp& a) { return a.name == app.name; });
    if (old == was.apps.end())
      ++added;
    else if (*old == app)
      ++unchanged;
    else
      ++changed;
    gone.erase(app.name);
  }
  removed = gone.size();
  const bool apps_differ = added || removed || changed;
  now_ = std::make_shared<const Settings>(Settings{std::move(next), std::move(tls)});
  context_ = "group=" + now_->cfg.group;
  const auto streams =
      streams_.close_owned_if([&](const std::string& app) { return gone.count(app) > 0; });
  for (auto& name : gone) remote_ports_.erase(name);

  auto line = fmt::format("reload: {} added, {} removed, {} changed, {} unchanged",
                          counted(added, "app", "apps"), removed, changed, unchanged);
  if (streams)
    line += fmt::format("; {} of removed apps ended", counted(streams, "stream", "streams"));
  if (new_session) {
    // Ends the session (or the login, or the wait before a retry) with the old
    // settings; run() starts the next one at once.
    restart_now_ = true;
    error_code ignored;
    if (connecting_) connecting_->close(ignored);
    if (control_) control_->close();
    retry_.cancel();
    line += "; the server, group, token, tls or heartbeat changed: starting a new session";
  } else if (apps_differ && session_ && control_) {
    control_->send(register_request(now_->cfg));
    line += "; the server is told";
  }
  spdlog::set_level(now_->cfg.log_level);
  return line;
}

awaitable<void> Client::run() {
  Backoff backoff;
  while (!stopping_) {
    bool logged_in = false;
    auto why = co_await session(logged_in);
    if (stopping_) break;
    if (restart_now_) {
      restart_now_ = false;
      backoff.reset();
      spdlog::info("{}: session ended for the reload; logging in again", context_);
      continue;
    }
    if (logged_in) backoff.reset();  // a session that worked starts the backoff afresh
    auto delay = backoff.next();
    spdlog::warn("{}: {}; reconnecting in {:.1f} s", context_, why,
                 std::chrono::duration<double>(delay).count());
    retry_.expires_after(delay);
    co_await retry_.async_wait(nothrow);
    restart_now_ = false;  // a reload during the wait: the next session is the new one
  }
}

void Client::stop() {
  stopping_ = true;
  error_code ignored;  // closing what is already closed is fine
  if (connecting_) connecting_->close(ignored);
  if (control_) control_->close();
  retry_.cancel();
  pool_.close_all();
}

awaitable<std::string> Client::session(bool& logged_in) {
  const auto settings = now_;
  const auto server = *settings->cfg.server;
  auto resolved = co_await with_timeout(resolve(server.host, server.port), kConnectTimeout);
  if (!resolved) co_return fmt::format("resolve {}: timed out", server.str());
  auto [rec, eps] = std::move(*resolved);
  if (restart_now_) co_return "reload";
  if (rec || eps.empty())
    co_return fmt::format("resolve {}: {}", server.host, rec ? rec.message() : "no address");

  Stream stream(tcp::socket{ex_});
  connecting_ = &stream.socket();
  auto s = std::make_shared<Session>();
  s->server = eps;
  s->settings = settings;
  std::string why;
  error_code ec = co_await connect_any(stream.socket(), eps, kConnectTimeout);
  std::optional<bool> ok;
  if (!ec && !stopping_) ok = co_await with_timeout(login(stream, *s, why), kHandshakeTimeout);
  connecting_ = nullptr;
  if (ec) co_return fmt::format("connect {}: {}", server.str(), ec.message());
  if (stopping_) co_return "stopping";
  if (restart_now_) co_return "reload";
  if (!ok) co_return "login: no answer from the server within 5 s";
  if (!*ok) co_return why;

  logged_in = true;
  spdlog::info("{}: logged in to {} over {}", context_, server.str(), stream.describe());
  control_ = std::make_unique<ControlChannel>(std::move(stream));
  if (co_await register_apps(why)) {
    session_ = s;
    dial(kPoolSize);
    co_await (read_loop(why) || control_->write_loop() || heartbeat(why));
    if (why.empty()) why = "control connection closed";
  }
  session_.reset();
  remote_ports_.clear();
  pool_.close_all();
  control_->close();
  control_.reset();
  co_return why;
}

// TLS (when on) with the pin checked. Returns an error with `why` saying what it
// means to the user.
awaitable<error_code> Client::secure(Stream& s, const Settings& set, std::string& why) {
  if (set.tls) {
    s.start_tls(*set.tls);
    if (auto ec = co_await s.handshake()) {
      why = handshake_failure(s, ec);
      co_return ec;
    }
    const auto& pin = set.cfg.tls->server_fingerprint;
    if (!pin.empty() && !fingerprints_equal(s.peer_fingerprint(), pin)) {
      why = fmt::format(
          "the server's certificate is {}, not the tls.server_fingerprint {}: wrong server or "
          "man in the middle",
          s.peer_fingerprint(), pin);
      co_return make_error_code(ProtocolError::unexpected_message);
    }
  }
  co_return error_code{};
}

awaitable<error_code> Client::open_stream(Stream& s, const Settings& set, std::string& why) {
  if (auto ec = co_await secure(s, set, why)) co_return ec;
  co_return co_await write_prefix(s);
}

awaitable<bool> Client::login(Stream& sock, Session& out, std::string& why) {
  std::string buf, peer_error;
  const auto& cfg = out.settings->cfg;
  error_code ec = co_await open_stream(sock, *out.settings, why);
  if (ec && !why.empty()) co_return false;
  msg::Challenge challenge;
  if (!ec) ec = co_await expect_message(sock, buf, challenge, &peer_error);
  const auto nonce = random_hex(kNonceBytes);
  const auto binding = sock.channel_binding();
  if (!ec && !binding) {
    why = "login: the TLS session gives no channel binding";
    co_return false;
  }
  auto proofs = login_proofs(cfg.token, cfg.group, nonce, challenge.nonce, binding.value_or(""));
  const Message login = msg::Login{cfg.group, nonce, proofs.client};
  if (!ec) ec = co_await write_message(sock, login);
  msg::Welcome welcome;
  if (!ec) ec = co_await expect_message(sock, buf, welcome, &peer_error);
  if (!peer_error.empty()) {
    why = "login refused by the server: " + log_safe(peer_error);
    co_return false;
  }
  if (ec) {
    why = ec == asio::error::eof || ec == asio::error::connection_reset
              ? std::string("login: the server closed the connection (is it an ntp-server?") +
                    (out.settings->tls && cfg.tls->cert.empty()
                         ? " if it requires client certificates, set tls.cert and tls.key)"
                         : ")")
              : "login: " + ec.message();
    co_return false;
  }
  if (!proof_equal(proofs.server, welcome.proof)) {
    why = "the server could not prove it knows the group token: wrong server or man in the middle";
    co_return false;
  }
  if (welcome.heartbeat_timeout_s <= cfg.heartbeat_interval_s)
    spdlog::warn(
        "{}: heartbeat_interval_s ({}) is not below the server's heartbeat_timeout_s "
        "({}): the server may drop this session between heartbeats",
        context_, cfg.heartbeat_interval_s, welcome.heartbeat_timeout_s);
  out.id = welcome.session;
  out.data_key = std::move(proofs.data_key);
  co_return true;
}

awaitable<bool> Client::register_apps(std::string& why) {
  const auto settings = now_;
  const auto req = register_request(settings->cfg);
  // Written directly: the control channel's writer starts with the session proper.
  Message m;
  std::optional<error_code> r;
  if (!co_await write_message(control_->stream(), req))
    r = co_await with_timeout(control_->read(m), kHandshakeTimeout);
  auto* reply = r && !*r ? std::get_if<msg::Registered>(&m) : nullptr;
  if (!reply) {
    why = "no answer to the app registration";
    co_return false;
  }
  registered(*reply);
  // A reload while the server registered: it gets the new list too.
  if (now_->cfg.apps != settings->cfg.apps) control_->send(register_request(now_->cfg));
  co_return true;
}

// The server's answer to a register frame (or its word that a reload of its own
// closed an app): one result per app it names.
void Client::registered(const msg::Registered& reply) {
  for (auto& res : reply.apps) {
    if (res.error.empty()) {
      spdlog::info("{} app={}: remote port {}", context_, log_safe(res.name), res.remote_port);
      remote_ports_[res.name] = res.remote_port;
    } else {
      spdlog::error("{} app={}: not registered: {}", context_, log_safe(res.name),
                    log_safe(res.error));
      remote_ports_.erase(res.name);
    }
  }
}

awaitable<void> Client::read_loop(std::string& why) {
  for (Message m;;) {
    if (auto ec = co_await control_->read(m)) {
      why = ec == asio::error::eof ? "the server closed the control connection"
                                   : "control connection: " + ec.message();
      co_return;
    }
    if (std::holds_alternative<msg::Ping>(m)) {
      control_->send(msg::Pong{});
    } else if (auto* need = std::get_if<msg::NeedData>(&m)) {
      dial(need->count);
    } else if (auto* reply = std::get_if<msg::Registered>(&m)) {
      registered(*reply);
    } else if (auto* e = std::get_if<msg::Error>(&m)) {
      why = "the server reported: " + log_safe(e->message);
      co_return;
    } else if (!std::holds_alternative<msg::Pong>(m)) {
      why = "unexpected message on the control connection";
      co_return;
    }
  }
}

awaitable<void> Client::heartbeat(std::string& why) {
  const auto interval = std::chrono::seconds(now_->cfg.heartbeat_interval_s);
  for (;;) {
    if (!co_await sleep_for(interval)) co_return;
    if (steady_clock::now() - control_->last_received() >= 3 * interval) {
      why = fmt::format("no answer from the server for {} s", 3 * interval.count());
      co_return;
    }
    control_->send(msg::Ping{});
  }
}

void Client::dial(std::size_t n) {
  for (std::size_t i = 0; i < n && session_ && pool_.size() < kMaxPool; ++i)
    asio::co_spawn(ex_, data_connection(session_), LogFailure{context_ + ": data connection"});
}

// Connects and proves itself in its first write, so an idle connection costs one
// round trip less; the server's proof (data_ok) comes with `start`. The proofs,
// or nullopt if the connection could not be made.
awaitable<std::optional<DataProofs>> Client::data_login(Stream& sock, const Session& s) {
  if (co_await connect_any(sock.socket(), s.server, kConnectTimeout)) co_return std::nullopt;
  std::string why;
  if (co_await secure(sock, *s.settings, why)) {
    if (!why.empty()) spdlog::warn("{}: data connection: {}", context_, why);
    co_return std::nullopt;
  }
  // Numbered once connected, so the numbers reach the server nearly in order.
  const auto binding = sock.channel_binding();
  if (!binding) {
    spdlog::warn("{}: data connection: the TLS session gives no channel binding", context_);
    co_return std::nullopt;
  }
  const auto seq = data_seq_++;
  auto proofs = data_proofs(s.data_key, s.id, seq, *binding);
  const Message login = msg::DataLogin{s.id, seq, proofs.client};
  if (co_await write_prefix(sock, frame_bytes(encode(login)))) co_return std::nullopt;
  co_return proofs;
}

// The frames the server sends an idle data connection: its proof, then `start`.
// A challenge may come first (the server read the prefix alone); it is not for us.
awaitable<std::optional<msg::Start>> Client::await_start(Stream& sock, const DataProofs& proofs) {
  std::string buf, peer_error;
  Message m;
  if (co_await read_message(sock, buf, m)) co_return std::nullopt;
  if (std::holds_alternative<msg::Challenge>(m) && co_await read_message(sock, buf, m))
    co_return std::nullopt;
  if (auto* e = std::get_if<msg::Error>(&m)) {
    spdlog::warn("{}: data connection refused by the server: {}", context_, log_safe(e->message));
    co_return std::nullopt;
  }
  auto* ok = std::get_if<msg::DataOk>(&m);
  if (!ok) co_return std::nullopt;
  if (!proof_equal(ok->proof, proofs.server)) {
    spdlog::warn(
        "{}: a data connection's server could not prove it knows the session key: wrong server "
        "or man in the middle",
        context_);
    co_return std::nullopt;
  }
  msg::Start start;
  if (co_await expect_message(sock, buf, start)) co_return std::nullopt;
  co_return start;
}

awaitable<void> Client::data_connection(std::shared_ptr<const Session> s) {
  Stream sock(tcp::socket{ex_});
  SocketSet::Entry tracked(pool_, sock.socket());
  auto proofs = co_await with_timeout(data_login(sock, *s), kHandshakeTimeout);
  if (!proofs || !*proofs) {
    if (session_ == s) spdlog::debug("{}: a data connection could not be set up", context_);
    co_return;
  }
  auto start = co_await await_start(sock, **proofs);  // idle in the pool until a user comes
  tracked.release();
  if (!start || session_ != s) co_return;  // the session ended, or the server let it go
  // Refill the pool, but only up to its size: connections dialed for a burst of
  // users (need_data) are not replaced once used. Posted, so the dial starts after
  // this user's connection to the local app, which the user is waiting for.
  asio::post(ex_, [this] {
    if (pool_.size() < kPoolSize) dial(1);
  });
  // The app as configured now (a reload may have changed it since the session
  // began), held for as long as the stream uses it.
  const auto settings = now_;
  const auto& apps = settings->cfg.apps;
  auto app = std::find_if(apps.begin(), apps.end(),
                          [&](const LocalApp& a) { return a.name == start->app; });
  if (app == apps.end()) {
    co_await write_error(sock, "no app named \"" + start->app + "\" on this client");
    co_return;
  }
  if (app->type == "udp")
    co_await serve_udp_flow(*app, std::move(sock), *start, context_, streams_);
  else
    co_await serve_local_app(
        *app, std::move(sock), *start, context_, streams_,
        settings->cfg.zero_copy ? SpliceMode::zero_copy : SpliceMode::buffered);
}

}  // namespace ntp
