#include "common_server.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <cerrno>

#include "app_group.hpp"
#include "ntp/address.hpp"
#include "ntp/auth.hpp"
#include "ntp/daemon.hpp"
#include "ntp/listener.hpp"

namespace ntp {
namespace {

constexpr unsigned char kTlsHandshakeRecord = 0x16;  // the first byte of a ClientHello

// The first byte without consuming it: TLS and plain clients are told apart by it.
// Tried before waiting: a client sends its first bytes right after connecting.
awaitable<std::optional<unsigned char>> peek_first_byte(tcp::socket& s) {
  for (;;) {
    unsigned char c = 0;
    const auto n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 1) co_return c;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      co_return std::nullopt;
    auto [ec] = co_await s.async_wait(tcp::socket::wait_read, nothrow);
    if (ec) co_return std::nullopt;
  }
}

// The peer as logged, and the source its failed logins are counted under.
std::pair<std::string, std::string> peer_and_source(const tcp::endpoint& ep) {
  return {to_string(ep), LoginThrottle::source_of(ep.address())};
}

std::string seconds(steady_clock::duration d) {
  return std::to_string(std::chrono::ceil<std::chrono::seconds>(d).count()) + " s";
}

}  // namespace

CommonServer::CommonServer(asio::any_io_executor ex, ServerConfig config, std::string open_token,
                           std::optional<TlsContext> tls)
    : ex_(ex),
      config_(std::move(config)),
      open_token_(std::move(open_token)),
      tls_(std::move(tls)),
      acceptor_(ex),
      streams_(ex),
      handshakes_(config_.max_handshakes, config_.max_handshakes_per_source) {}

CommonServer::~CommonServer() = default;

void CommonServer::listen() {
  error_code ec;
  tcp::endpoint ep;
  if (auto lit = literal_endpoint(config_.bind.host, config_.bind.port)) {
    ep = *lit;
  } else {
    // Start-up only: a blocking resolve is fine before the loop runs.
    tcp::resolver r(ex_);
    auto results = r.resolve(config_.bind.host, std::to_string(config_.bind.port), ec);
    if (ec || results.empty())
      throw std::system_error(ec ? ec : asio::error::host_not_found,
                              "bind " + config_.bind.str() + ": resolve");
    ep = results.begin()->endpoint();
  }
  acceptor_ = open_listener(ex_, ep, ec);
  if (ec) throw std::system_error(ec, "bind " + config_.bind.str());
}

awaitable<void> CommonServer::run() {
  spdlog::info("listening on {} (bind port)", to_string(acceptor_.local_endpoint()));
  const std::string context = "bind " + config_.bind.str();
  while (auto a = co_await accept_next(acceptor_, context)) {
    asio::co_spawn(ex_, handle(std::move(a->socket), a->peer), LogFailure{"connection handler"});
  }
}

void CommonServer::stop() {
  if (stopping_) return;
  stopping_ = true;
  error_code ignored;  // already closed is fine
  acceptor_.close(ignored);
  handshakes_.close_all();
  auto groups = groups_;  // close() may end sessions that erase themselves
  for (auto& [name, g] : groups) g->close("server shutting down");
}

namespace {

// The token `group` logs in with under `cfg` (`open` in open mode); nullopt when
// it may not log in at all.
std::optional<std::string> token_under(const ServerConfig& cfg, const std::string& open,
                                       const std::string& group) {
  if (!cfg.groups) return open;
  auto it = cfg.groups->find(group);
  if (it == cfg.groups->end()) return std::nullopt;
  return it->second.token;
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (auto& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

std::string counted(std::size_t n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

}  // namespace

std::string CommonServer::reload(ServerConfig next, std::string open_token,
                                 std::optional<TlsContext> tls) {
  std::vector<std::string> restart, changed;
  if (!(next.bind == config_.bind)) {
    restart.push_back("bind");
    next.bind = config_.bind;
  }
  if (next.proxy_bind_addr != config_.proxy_bind_addr) {
    restart.push_back("proxy_bind_addr");
    next.proxy_bind_addr = config_.proxy_bind_addr;
  }
  auto note = [&](bool differs, const char* name) {
    if (differs) changed.push_back(name);
  };
  note(next.allow_ports != config_.allow_ports, "allow_ports");
  note(!(next.group_defaults == config_.group_defaults), "limits");
  note(next.max_groups != config_.max_groups, "max_groups");
  note(next.heartbeat_timeout_s != config_.heartbeat_timeout_s, "heartbeat_timeout_s");
  note(next.max_handshakes != config_.max_handshakes ||
           next.max_handshakes_per_source != config_.max_handshakes_per_source,
       "max_handshakes");
  note(next.max_waiting_users != config_.max_waiting_users, "max_waiting_users");
  note(next.tls != config_.tls, "tls");
  note(next.zero_copy != config_.zero_copy, "zero_copy");
  note(next.log_level != config_.log_level, "log_level");
  note(!config_.groups && !next.groups && open_token != open_token_, "token");

  // Groups of either file; in open mode, the groups logged in.
  std::set<std::string> names;
  for (auto* cfg : {&config_, &next})
    if (cfg->groups)
      for (auto& [name, g] : *cfg->groups) names.insert(name);
  for (auto& [name, g] : groups_) names.insert(name);
  std::set<std::string> revoked;
  std::size_t added = 0, removed = 0, retokened = 0, rest = 0;
  for (auto& name : names) {
    const auto before = token_under(config_, open_token_, name);
    const auto after = token_under(next, open_token, name);
    if (!before && !after) continue;  // logged in under neither: cannot be
    if (!before)
      ++added;
    else if (!after)
      ++removed;
    else if (*before != *after)
      ++retokened;
    else
      ++rest;
    if (before && (!after || *before != *after)) revoked.insert(name);
  }
  // In open mode any group may have streams of a session gone by: a new token
  // revokes every one of them.
  const bool all_revoked = !config_.groups && (next.groups || open_token != open_token_);

  config_ = std::move(next);
  open_token_ = std::move(open_token);
  tls_ = std::move(tls);
  ++reloads_;
  handshakes_.set_limits(config_.max_handshakes, config_.max_handshakes_per_source);

  std::size_t sessions = 0, apps_closed = 0;
  auto groups = groups_;  // close() ends sessions, which erase themselves
  for (auto& [name, g] : groups) {
    if (g->closed()) continue;
    if (all_revoked || revoked.count(name)) {
      g->close(config_.groups && !config_.groups->count(name)
                   ? "the group was removed from the configuration"
                   : "the group's token changed");
      ++sessions;
    } else {
      apps_closed += g->apply_policy(config_.limits_for(name));
    }
  }
  const auto streams = streams_.close_owned_if(
      [&](const std::string& group) { return all_revoked || revoked.count(group) > 0; });
  for (auto& [name, slot] : quotas_)
    if (auto q = slot.lock()) {
      const auto limits = config_.limits_for(name);
      q->set_limits(limits.max_conns, limits.bandwidth);
    }

  std::string line = "reload: ";
  if (config_.groups)
    line += fmt::format("groups: {} added, {} removed, {} with a new token, {} unchanged", added,
                        removed, retokened, rest);
  else
    line += "open mode";
  if (sessions || streams)
    line += fmt::format("; {} and {} ended", counted(sessions, "session", "sessions"),
                        counted(streams, "stream", "streams"));
  if (apps_closed)
    line +=
        fmt::format("; {} closed (port no longer allowed)", counted(apps_closed, "app", "apps"));
  line += changed.empty() ? "; no other setting changed" : "; changed: " + joined(changed);
  if (!restart.empty()) line += "; kept until a restart: " + joined(restart);
  return line;
}

void CommonServer::reject(const std::string& peer, const std::string& why) {
  std::uint64_t suppressed = 0;
  if (reject_log_.allow(suppressed))
    spdlog::warn("rejected {}: {}{}", peer, why,
                 suppressed ? fmt::format(" ({} more rejections not logged)", suppressed) : "");
}

bool CommonServer::admits_another_group(const std::string& group) const {
  if (!config_.max_groups) return true;
  std::set<std::string> in = pending_;
  for (auto& [name, g] : groups_)
    if (!g->closed()) in.insert(name);
  if (in.count(group)) return true;  // a login of a group already in: not another one
  return in.size() < *config_.max_groups;
}

std::shared_ptr<Quota> CommonServer::app_quota(const std::string& group, const std::string& app,
                                               std::optional<std::uint32_t> max_conns,
                                               std::optional<std::uint64_t> bandwidth) {
  auto& slot = app_quotas_[{group, app}];
  auto q = slot.lock();
  if (q)
    q->set_limits(max_conns, bandwidth);
  else
    slot = q = std::make_shared<Quota>(max_conns, bandwidth);
  std::erase_if(app_quotas_, [](const auto& kv) { return kv.second.expired(); });
  return q;
}

std::shared_ptr<Quota> CommonServer::quota_for(const std::string& group) {
  auto& slot = quotas_[group];
  if (auto q = slot.lock()) return q;
  const auto limits = config_.limits_for(group);
  auto q = std::make_shared<Quota>(limits.max_conns, limits.bandwidth);
  slot = q;
  // Forget groups whose sessions and streams are all gone.
  std::erase_if(quotas_, [](const auto& kv) { return kv.second.expired(); });
  return q;
}

const std::string* CommonServer::token_for(const std::string& group) const {
  if (!config_.groups) return &open_token_;
  auto it = config_.groups->find(group);
  return it == config_.groups->end() ? nullptr : &it->second.token;
}

awaitable<void> CommonServer::handle(tcp::socket s, tcp::endpoint peer_ep) {
  // Accepted just before stop() but started after it: stop() never saw this
  // socket, so it must not begin a handshake that only its deadline would end.
  if (stopping_) co_return;
  // Named members, not a structured binding: GCC 12 keeps those off the coroutine frame.
  const auto who = peer_and_source(peer_ep);
  const std::string& peer = who.first;
  const std::string& source = who.second;
  std::optional<std::shared_ptr<AppGroup>> group;
  {
    for (auto& c : handshakes_.make_room(source))
      reject("the oldest unauthenticated connection from " + c.source,
             c.cap + ", making room for " + peer);
    Stream stream(std::move(s));
    HandshakeTable::Entry entry(handshakes_, source, stream.socket());
    group = co_await with_timeout(admit(stream, peer, source), kHandshakeTimeout);
  }
  if (!group) {
    reject(peer, "handshake not finished within 5 s");
    co_return;
  }
  if (!*group) co_return;  // a data connection handed to its group, or refused
  auto g = std::move(*group);
  // However the session ends (an exception included), it leaves the maps.
  struct Unlist {
    CommonServer& server;
    const std::shared_ptr<AppGroup>& g;
    ~Unlist() {
      g->close("the session ended");  // already closed unless run() threw
      if (auto it = server.groups_.find(g->name()); it != server.groups_.end() && it->second == g)
        server.groups_.erase(it);
      server.sessions_.erase(g->session());
    }
  } unlist{*this, g};
  co_await g->run();
}

// Peeks at the first byte: a TLS ClientHello or the plain magic, as this server
// expects; a mismatch gets an answer the other side can show, not a hang.
awaitable<bool> CommonServer::start_stream(Stream& s, unsigned char first,
                                           const std::string& peer) {
  if (first == kTlsHandshakeRecord) {
    if (!tls_) {
      reject(peer,
             "it speaks TLS, but this server runs with \"tls\": false (set \"tls\": false in "
             "the client's apps.json too, or turn TLS on here)");
      // A TLS client reads this as a record that is not TLS and says so.
      co_await write_error(s, "this server runs without TLS (\"tls\": false)");
      co_return false;
    }
    s.start_tls(*tls_);
    if (auto ec = co_await s.handshake()) {
      if (ec != asio::error::eof && ec != asio::error::operation_aborted)
        reject(peer,
               "TLS handshake: " + (s.tls_failure().empty() ? ec.message() : s.tls_failure()));
      co_return false;
    }
    co_return true;
  }
  if (tls_ && first == static_cast<unsigned char>(kMagic[0])) {
    std::uint8_t version = 0;
    if (co_await read_prefix(s, version)) co_return false;  // not ntp after all: just close
    reject(peer,
           "a plain-TCP ntp client, but this server requires TLS (the client has \"tls\": false "
           "in its apps.json)");
    co_await write_error(s,
                         "this server requires TLS: remove \"tls\": false from the client's "
                         "apps.json");
    co_return false;
  }
  co_return true;  // plain: the magic check below refuses anything else
}

awaitable<std::shared_ptr<AppGroup>> CommonServer::admit(Stream& s, const std::string& peer,
                                                         const std::string& source) {
  auto first = co_await peek_first_byte(s.socket());
  if (!first) co_return nullptr;
  if (!co_await start_stream(s, *first, peer)) co_return nullptr;
  std::uint8_t version = 0;
  if (auto ec = co_await read_prefix(s, version)) {
    if (ec == ProtocolError::bad_version) {
      co_await write_error(s, fmt::format("unsupported protocol version {}; this server speaks "
                                          "version {}",
                                          version, kProtocolVersion));
      reject(peer,
             fmt::format("protocol version {} (this server speaks {})", version, kProtocolVersion));
    } else if (ec != asio::error::eof && ec != asio::error::operation_aborted) {
      reject(peer, ec.message());
    }
    co_return nullptr;
  }
  // A data connection proves itself in the bytes that came with the prefix; only
  // a login needs the challenge. (Should a data message be split from its prefix
  // on the way, it gets the challenge too, reads past it, and is admitted alike.)
  std::string nonce;
  if (!s.has_pending()) {
    nonce = random_hex(kNonceBytes);
    const Message challenge = msg::Challenge{nonce};
    if (co_await write_message(s, challenge)) co_return nullptr;
  }

  std::string buf;
  Message m;
  if (auto ec = co_await read_message(s, buf, m)) {
    reject(peer, "handshake: " + ec.message());
    co_return nullptr;
  }
  if (auto* login = std::get_if<msg::Login>(&m); login && !nonce.empty())
    co_return co_await admit_control(s, peer, source, *login, nonce);
  if (auto* data = std::get_if<msg::DataLogin>(&m)) {
    co_await admit_data(s, peer, source, *data);
    co_return nullptr;
  }
  reject(peer, nonce.empty() ? "handshake: a login before the challenge"
                             : "handshake: expected a login or data message");
  co_return nullptr;
}

awaitable<void> CommonServer::refuse_login(Stream& s, LoginThrottle& throttle,
                                           const std::string& peer, const std::string& source,
                                           const std::string& group, const std::string& why,
                                           const std::string& answer) {
  const auto delay = throttle.failed(source, group, steady_clock::now());
  reject(peer, why + " (next attempt from " + source + " allowed in " + seconds(delay) + ")");
  co_await write_error(s, answer);
}

awaitable<std::shared_ptr<AppGroup>> CommonServer::admit_control(Stream& s, const std::string& peer,
                                                                 const std::string& source,
                                                                 const msg::Login& login,
                                                                 const std::string& nonce) {
  if (!valid_name(login.group)) {
    reject(peer, "login: invalid group name");
    co_await write_error(s, "invalid group name");
    co_return nullptr;
  }
  const std::string context = "group=" + login.group;
  // A (source, group) that failed recently has its next proof ignored, unchecked,
  // until its backoff has passed: it is told when to come back. Checked and
  // counted with no wait in between, so parallel guesses are judged one by one.
  if (auto wait = throttle_.wait(source, login.group, steady_clock::now())) {
    reject(peer, fmt::format("{}: too many failed logins from {}: next attempt allowed in {}",
                             context, source, seconds(*wait)));
    co_await write_error(s, fmt::format("too many failed logins for group '{}' from this address: "
                                        "try again in {}",
                                        login.group, seconds(*wait)));
    co_return nullptr;
  }
  const std::string* token = token_for(login.group);
  // One answer for an unknown group and a wrong token: names are not confirmed to
  // someone who cannot prove a token. The server log tells them apart.
  const auto refused = fmt::format("authentication failed for group '{}'", login.group);
  if (!token) {
    co_await refuse_login(s, throttle_, peer, source, login.group,
                          context + ": authentication failed: not a configured group", refused);
    co_return nullptr;
  }
  auto binding = s.channel_binding();
  if (!binding) {
    reject(peer, context + ": login: the TLS session gives no channel binding");
    co_return nullptr;
  }
  auto proofs = login_proofs(*token, login.group, login.nonce, nonce, *binding);
  if (!proof_equal(proofs.client, login.proof)) {
    co_await refuse_login(s, throttle_, peer, source, login.group,
                          context + ": authentication failed: wrong token", refused);
    co_return nullptr;
  }
  if (stopping_) co_return nullptr;
  // A reload while this login waits below may remove the group or change its
  // token: then the proof no longer counts (revocation is immediate).
  const std::string proven_token = *token;
  const auto proven_at = reloads_;
  auto still_valid = [&] {
    if (reloads_ == proven_at) return true;
    const auto* now = token_for(login.group);
    return now && *now == proven_token;
  };
  // One login per group at a time: a second one while this one probes the old
  // session or writes its welcome is refused with a reason, never welcomed and
  // then dropped.
  if (pending_.count(login.group)) {
    spdlog::warn("{}: login from {} refused: another login for the group is in progress", context,
                 peer);
    co_await write_error(
        s, fmt::format("another login for group '{}' is in progress; retrying", login.group));
    co_return nullptr;
  }
  if (!admits_another_group(login.group)) {
    spdlog::warn("{}: login from {} refused: max_groups ({}) groups are logged in", context, peer,
                 *config_.max_groups);
    co_await write_error(s, fmt::format("the server is full: max_groups ({}) groups are logged in",
                                        *config_.max_groups));
    co_return nullptr;
  }
  pending_.insert(login.group);
  struct Pending {
    std::set<std::string>& set;
    const std::string& group;
    ~Pending() { set.erase(group); }
  } pending{pending_, login.group};

  if (auto it = groups_.find(login.group); it != groups_.end() && !it->second->closed()) {
    auto old = it->second;
    bool alive = co_await old->probe(kProbeLimit);
    if (alive) {
      // Where it is logged in from is the server's business, not any token holder's.
      spdlog::warn("{}: login from {} refused: already logged in from {}", context, peer,
                   old->peer());
      co_await write_error(s, fmt::format("group '{}' is already logged in", login.group));
      co_return nullptr;
    }
    spdlog::warn("{}: old session from {} did not answer a probe within {} s; replacing it",
                 context, old->peer(), kProbeLimit.count());
    old->close("replaced by a new login (it did not answer the probe)");
  }
  if (stopping_) co_return nullptr;
  if (!still_valid()) {
    spdlog::warn("{}: login from {} refused: a reload revoked the token it proved", context, peer);
    co_await write_error(s, "the server's configuration changed during the login; retrying");
    co_return nullptr;
  }

  auto session = random_hex(16);
  const Message welcome = msg::Welcome{session, proofs.server, config_.heartbeat_timeout_s};
  if (co_await write_message(s, welcome)) co_return nullptr;
  if (stopping_ || !still_valid()) co_return nullptr;
  const auto over = s.describe();
  auto g = std::make_shared<AppGroup>(*this, login.group, session, std::move(proofs.data_key),
                                      std::move(s), peer, config_.limits_for(login.group),
                                      quota_for(login.group));
  groups_[login.group] = g;
  sessions_[session] = g;
  throttle_.succeeded(source, login.group);  // only an accepted login starts afresh
  spdlog::info("{}: logged in from {} over {}", context, peer, over);
  co_return g;
}

awaitable<void> CommonServer::admit_data(Stream& s, const std::string& peer,
                                         const std::string& source, const msg::DataLogin& login) {
  auto it = sessions_.find(login.session);
  auto g = it == sessions_.end() ? nullptr : it->second.lock();
  if (!g || g->closed()) {
    reject(peer, "data connection for an unknown session");
    co_await write_error(s, "unknown session");
    co_return;
  }
  // Failed data proofs are throttled on their own: a failing login never delays
  // a logged-in session's data connections, nor the other way round.
  if (auto wait = data_throttle_.wait(source, g->name(), steady_clock::now())) {
    reject(peer, fmt::format("{}: too many failed data connections from {}: next allowed in {}",
                             g->context(), source, seconds(*wait)));
    co_await write_error(
        s, "too many failed data connections from this address: try again in " + seconds(*wait));
    co_return;
  }
  auto binding = s.channel_binding();
  if (!binding) {
    reject(peer, g->context() + ": data connection: the TLS session gives no channel binding");
    co_return;
  }
  auto proofs = data_proofs(g->data_key(), login.session, login.seq, *binding);
  // The proof first, so only the session's own client moves its window.
  if (!proof_equal(proofs.client, login.proof) || !g->accept_data_seq(login.seq)) {
    co_await refuse_login(s, data_throttle_, peer, source, g->name(),
                          g->context() + ": data connection failed authentication",
                          "data connection authentication failed");
    co_return;
  }
  spdlog::debug("{}: data connection from {} over {}", g->context(), peer, s.describe());
  // data_ok waits in the pool and goes out with `start`.
  const Message ok = msg::DataOk{proofs.server};
  AppGroup::DataConnection pooled{std::move(s), frame_bytes(encode(ok))};
  if (!g->closed()) g->add_data_connection(std::move(pooled));
}

}  // namespace ntp
