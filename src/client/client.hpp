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

  // A reload (DESIGN, Reload): apps added are registered and removed ones
  // unregistered in the running session (a removed app's live streams end);
  // a changed app's new users get its new settings. A changed server, group,
  // token, tls or heartbeat starts a new session at once. Live streams of apps
  // still served go on either way. Throws TlsError as the constructor does,
  // changing nothing. Returns the summary line to log.
  std::string reload(ClientConfig config);

  awaitable<void> run();  // sessions and reconnects until stop()
  void stop();            // ends the session and the retries; spliced streams go on

  LiveStreams& streams() { return streams_; }
  bool logged_in() const { return session_ != nullptr; }
  // Remote ports the server bound in the current session, by app name.
  const std::map<std::string, std::uint16_t>& remote_ports() const { return remote_ports_; }
  std::size_t pool_size() const { return pool_.size(); }

 private:
  // The configuration in force and its TLS context: replaced whole by a
  // reload, and held by whatever uses it across a wait.
  struct Settings {
    ClientConfig cfg;
    std::optional<TlsContext> tls;
  };
  struct Session {
    std::string id, data_key;
    std::vector<tcp::endpoint> server;
    std::shared_ptr<const Settings> settings;  // those it logged in with
  };

  awaitable<std::string> session(bool& logged_in);
  // On a connected socket: TLS when on (after which the channel binding is known),
  // then (open_stream) the magic prefix.
  awaitable<error_code> secure(Stream& s, const Settings& set, std::string& why);
  awaitable<error_code> open_stream(Stream& s, const Settings& set, std::string& why);
  awaitable<bool> login(Stream& s, Session& out, std::string& why);
  awaitable<bool> register_apps(std::string& why);
  void registered(const msg::Registered& reply);
  awaitable<void> read_loop(std::string& why);
  awaitable<void> heartbeat(std::string& why);
  void dial(std::size_t n);
  awaitable<void> data_connection(std::shared_ptr<const Session> s);
  awaitable<std::optional<DataProofs>> data_login(Stream& stream, const Session& s);
  awaitable<std::optional<msg::Start>> await_start(Stream& stream, const DataProofs& proofs);

  asio::any_io_executor ex_;
  std::shared_ptr<const Settings> now_;
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
  bool restart_now_ = false;  // a reload ended the session: the next one starts at once
};

}  // namespace ntp
