// Client: the client daemon. Logs in as its group, registers its apps, heartbeats,
// reconnects with backoff, keeps a pool of data connections and serves dial-backs.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "ntp/auth.hpp"
#include "ntp/config.hpp"
#include "ntp/control_channel.hpp"
#include "ntp/live_streams.hpp"
#include "ntp/message.hpp"
#include "ntp/socket_set.hpp"
#include "ntp/stream.hpp"
#include "ntp/tls.hpp"

namespace ntp {

class Client {
 public:
  static constexpr std::size_t kPoolSize = kDataPoolSize;  // idle authenticated data connections
  static constexpr std::size_t kMaxPool = 256;  // dialing + idle, whatever the server asks

  // Throws TlsError when the TLS files in the config cannot be used.
  Client(asio::any_io_executor ex, ClientConfig config);

  awaitable<void> run();  // sessions and reconnects until stop()
  void stop();            // ends the session and the retries; spliced streams go on

  LiveStreams& streams() { return streams_; }
  bool logged_in() const { return session_ != nullptr; }
  // Remote ports the server bound in the current session, by app name.
  const std::map<std::string, std::uint16_t>& remote_ports() const { return remote_ports_; }
  std::size_t pool_size() const { return pool_.size(); }

 private:
  struct Session {
    std::string id, data_key;
    std::vector<tcp::endpoint> server;
  };

  awaitable<std::string> session(bool& logged_in);
  // On a connected socket: TLS when on (after which the channel binding is known),
  // then (open_stream) the magic prefix.
  awaitable<error_code> secure(Stream& s, std::string& why);
  awaitable<error_code> open_stream(Stream& s, std::string& why);
  awaitable<bool> login(Stream& s, Session& out, std::string& why);
  awaitable<bool> register_apps(std::string& why);
  awaitable<void> read_loop(std::string& why);
  awaitable<void> heartbeat(std::string& why);
  void dial(std::size_t n);
  awaitable<void> data_connection(std::shared_ptr<const Session> s);
  awaitable<std::optional<DataProofs>> data_login(Stream& stream, const Session& s);
  awaitable<std::optional<msg::Start>> await_start(Stream& stream, const DataProofs& proofs);

  asio::any_io_executor ex_;
  ClientConfig cfg_;
  std::optional<TlsContext> tls_;
  std::string context_;  // "group=home"
  std::unique_ptr<ControlChannel> control_;
  tcp::socket* connecting_ = nullptr;  // the control socket before login, for stop()
  std::shared_ptr<const Session> session_;
  SocketSet pool_;  // data connections dialing or idle; not yet serving
  std::map<std::string, std::uint16_t> remote_ports_;
  asio::steady_timer retry_;
  LiveStreams streams_;
  std::uint64_t data_seq_ = 0;  // numbers data connections; never reused (ReplayWindow)
  bool stopping_ = false;
};

}  // namespace ntp
