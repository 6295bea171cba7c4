// CommonServer: the listener on the bind port. Every connection proves who it is
// and becomes a control connection (an AppGroup) or a data connection.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

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
  ~CommonServer();

  void listen();  // binds the bind port; throws std::system_error naming it
  tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  awaitable<void> run();  // accepts until stop()
  // Closes the listener, every group (its listeners, idle data connections and
  // waiting users) and unauthenticated connections. Spliced streams go on.
  void stop();

  const ServerConfig& config() const { return config_; }
  LiveStreams& streams() { return streams_; }
  std::uint64_t next_conn_id() { return ++conn_ids_; }
  std::size_t group_count() const { return groups_.size(); }
  const LoginThrottle& throttle() const { return throttle_; }
  std::size_t handshakes() const { return unauthenticated_.size(); }  // accepted, not yet proven

 private:
  awaitable<void> handle(tcp::socket s, tcp::endpoint peer_ep);
  // `peer` is "address:port" for logs; `source` is what failed logins are
  // throttled under (LoginThrottle::source_of).
  awaitable<std::shared_ptr<AppGroup>> admit(Stream& s, const std::string& peer,
                                             const std::string& source);
  awaitable<bool> start_stream(Stream& s, const std::string& peer);
  awaitable<std::shared_ptr<AppGroup>> admit_control(Stream& s, const std::string& peer,
                                                     const std::string& source,
                                                     const msg::Login& login,
                                                     const std::string& server_nonce);
  awaitable<void> admit_data(Stream& s, const std::string& peer, const std::string& source,
                             const msg::DataLogin& login);
  // Logs and counts a failed proof; the peer is told only `answer`.
  awaitable<void> refuse_login(Stream& s, const std::string& peer, const std::string& source,
                               const std::string& why, const std::string& answer);
  const std::string* token_for(const std::string& group) const;
  bool admits_another_group(const std::string& group) const;  // max_groups
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
  SocketSet unauthenticated_;                                // closed by stop()
  LoginThrottle throttle_;
  std::map<std::string, std::weak_ptr<Quota>> quotas_;  // by group name
  RateLimit reject_log_{20, std::chrono::seconds(10)};
  std::uint64_t conn_ids_ = 0;
  bool stopping_ = false;
};

}  // namespace ntp
