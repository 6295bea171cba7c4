// CommonServer: the listener on the bind port. Every connection proves who it is
// and becomes a control connection (an AppGroup) or a data connection.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "handshake_table.hpp"
#include "login_throttle.hpp"
#include "ntp/config.hpp"
#include "ntp/limits.hpp"
#include "ntp/live_streams.hpp"
#include "ntp/logging.hpp"
#include "ntp/message.hpp"
#include "ntp/socket_set.hpp"
#include "ntp/stream.hpp"
#include "ntp/tls.hpp"

namespace ntp {

class AppGroup;

// How long a logged-in session has to answer the probe that a second login for
// its group sends; one that does not answer is replaced.
inline constexpr auto kProbeLimit = std::chrono::seconds(2);

class CommonServer {
 public:
  // `open_token` is the server-wide token; unused when config.groups is set.
  // With `tls`, clients must speak TLS (config.tls says so; main builds it).
  CommonServer(asio::any_io_executor ex, ServerConfig config, std::string open_token,
               std::optional<TlsContext> tls);
  CommonServer(const CommonServer&) = delete;
  CommonServer& operator=(const CommonServer&) = delete;
  ~CommonServer();

  void listen();  // binds the bind port; throws std::system_error naming it
  tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  awaitable<void> run();  // accepts until stop()
  // Closes the listener, every group (its listeners, idle data connections and
  // waiting users) and unauthenticated connections. Spliced streams go on.
  void stop();

  // A reload (DESIGN, Reload), with what main built from the re-read file: for
  // connections from now on the new settings, open token and TLS context. A
  // group removed or whose token changed loses its session and its live
  // streams at once; the others keep theirs and take new limits (an app on a
  // port no longer allowed closes). Settings that only a restart can change
  // (bind, proxy_bind_addr) keep their running values. Returns the summary
  // line to log.
  std::string reload(ServerConfig config, std::string open_token, std::optional<TlsContext> tls);

  const ServerConfig& config() const { return config_; }
  LiveStreams& streams() { return streams_; }
  std::uint64_t next_conn_id() { return ++conn_ids_; }
  std::size_t group_count() const { return groups_.size(); }
  const LoginThrottle& throttle() const { return throttle_; }
  std::size_t handshakes() const { return handshakes_.size(); }  // accepted, not yet proven
  // Listening sockets tried for remote ports, over all registrations: what a
  // registration costs the loop.
  void count_bind_attempt() { ++bind_attempts_; }
  std::uint64_t bind_attempts() const { return bind_attempts_; }
  // An app's max_conns and bandwidth, kept by (group, app) while any session or
  // stream of it is alive, so a reconnecting client's app counts its earlier
  // streams. Limits asked anew replace the old ones for new users.
  std::shared_ptr<Quota> app_quota(const std::string& group, const std::string& app,
                                   std::optional<std::uint32_t> max_conns,
                                   std::optional<std::uint64_t> bandwidth);

 private:
  awaitable<void> handle(tcp::socket s, tcp::endpoint peer_ep);
  // `peer` is "address:port" for logs; `source` is what failed logins are
  // throttled under (LoginThrottle::source_of).
  awaitable<std::shared_ptr<AppGroup>> admit(Stream& s, const std::string& peer,
                                             const std::string& source);
  // `first` is the connection's first byte, peeked.
  awaitable<bool> start_stream(Stream& s, unsigned char first, const std::string& peer);
  awaitable<std::shared_ptr<AppGroup>> admit_control(Stream& s, const std::string& peer,
                                                     const std::string& source,
                                                     const msg::Login& login,
                                                     const std::string& server_nonce);
  awaitable<void> admit_data(Stream& s, const std::string& peer, const std::string& source,
                             const msg::DataLogin& login);
  // Logs and counts a failed proof under (source, group) in `throttle`; the peer
  // is told only `answer`.
  awaitable<void> refuse_login(Stream& s, LoginThrottle& throttle, const std::string& peer,
                               const std::string& source, const std::string& group,
                               const std::string& why, const std::string& answer);
  const std::string* token_for(const std::string& group) const;
  // max_groups: counts the groups logged in and those past their proof.
  bool admits_another_group(const std::string& group) const;
  // The group's limits, shared by all its sessions' streams while any is alive.
  std::shared_ptr<Quota> quota_for(const std::string& group);
  void reject(const std::string& peer, const std::string& why);

  asio::any_io_executor ex_;
  ServerConfig config_;
  std::string open_token_;
  std::optional<TlsContext> tls_;
  tcp::acceptor acceptor_;
  LiveStreams streams_;
  std::map<std::string, std::shared_ptr<AppGroup>> groups_;  // by group name
  std::map<std::string, std::weak_ptr<AppGroup>> sessions_;  // by session id
  HandshakeTable handshakes_;                                // closed by stop()
  // Logins past their proof, until they are in groups_ (or refused): one group
  // logs in once at a time, and they count against max_groups meanwhile.
  std::set<std::string> pending_;
  LoginThrottle throttle_;       // failed logins, by (source, group)
  LoginThrottle data_throttle_;  // failed data-connection proofs: never slow a login
  std::map<std::string, std::weak_ptr<Quota>> quotas_;  // by group name
  std::map<std::pair<std::string, std::string>, std::weak_ptr<Quota>> app_quotas_;
  RateLimit reject_log_{20, std::chrono::seconds(10)};
  std::uint64_t conn_ids_ = 0;
  std::uint64_t bind_attempts_ = 0;
  std::uint64_t reloads_ = 0;  // a login proven before a reload is checked again after it
  bool stopping_ = false;
};

}  // namespace ntp
