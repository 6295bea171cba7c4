// AppGroup: one logged-in client and everything it owns: its control connection,
// heartbeat watchdog, AppServers, idle data connections and waiting users.
#pragma once

#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app_server.hpp"
#include "ntp/config.hpp"
#include "ntp/control_channel.hpp"
#include "ntp/limits.hpp"
#include "ntp/socket_set.hpp"
#include "replay_window.hpp"

namespace ntp {

class CommonServer;

// Shared: the control loop owns it, and each AppServer's accept loop and each
// waiting user keep it alive until they are done with its pool.
class AppGroup : public std::enable_shared_from_this<AppGroup> {
 public:
  // A registration binds at most this many ports per app asking for "any port"
  // (remote_port 0), and gives the loop to others between every kAppsPerTurn apps.
  static constexpr std::uint32_t kPortProbes = 32;
  static constexpr std::size_t kAppsPerTurn = 4;

  // `quota` is the group's max_conns and bandwidth, shared with its earlier
  // sessions' streams (they count against the same limits).
  AppGroup(CommonServer& server, std::string name, std::string session, std::string data_key,
           Stream control, std::string peer, GroupLimits limits, std::shared_ptr<Quota> quota);
  ~AppGroup();

  const std::string& name() const { return name_; }
  const std::string& session() const { return session_; }
  const std::string& data_key() const { return data_key_; }
  const std::string& peer() const { return peer_; }
  const std::string& context() const { return context_; }  // "group=home"
  CommonServer& server() { return server_; }
  bool closed() const { return closed_; }
  const std::shared_ptr<Quota>& quota() const { return quota_; }

  // The session: apps registration, then control messages until the connection
  // drops, the heartbeat times out or close() is called.
  awaitable<void> run();

  // Asks the session to prove it is alive (DESIGN: a second login probes the old
  // session). true when it answered within `limit`.
  awaitable<bool> probe(steady_clock::duration limit);

  // Ends the session: listeners, idle data connections and waiting users are closed.
  void close(const std::string& why);

  // A reload changed the group's limits or the ports it may use: max_apps
  // applies to later registrations, and an app on a port no longer allowed is
  // closed now (the client is told, as for a refused registration). Returns how
  // many apps were closed.
  std::size_t apply_policy(GroupLimits limits);

  // A data connection's `seq`: true the first time this session sees it.
  bool accept_data_seq(std::uint64_t seq) { return data_seqs_.accept(seq); }

  // An authenticated data connection and the data_ok frame it is owed. The frame
  // goes out with `start`, so an idle connection costs the client no wake-up.
  struct DataConnection {
    Stream stream;
    std::string data_ok;
  };
  // The data-connection pool.
  void add_data_connection(DataConnection c);
  awaitable<std::optional<DataConnection>> take_data_connection(steady_clock::duration limit);
  // Data connections between "start" and the client's answer belong to the
  // session: close() closes them, so their users are closed at once too.
  SocketSet& starting() { return starting_; }

 private:
  struct Waiter {
    asio::steady_timer wake;
    std::optional<DataConnection> data;
  };

  struct App {
    std::shared_ptr<AppServer> server;
    msg::AppRequest asked;  // what the client's register frame said
  };
  struct Applied {
    msg::Registered registered;
    std::vector<std::shared_ptr<AppServer>> started;  // for the caller to run
  };
  // A register frame, the first or a later one (the client reloaded): the
  // group's apps become the frame's list. Apps no longer listed close, an app
  // asked for exactly as before is kept, one whose type and port stay takes its
  // new limits for new users, any other is bound afresh.
  awaitable<Applied> apply_apps(const msg::Register& req);
  void start(const std::vector<std::shared_ptr<AppServer>>& apps);
  // `failed`: apps of this frame that tried to bind and did not get a port; a
  // bind attempt past max_apps is refused before it is made.
  std::shared_ptr<AppServer> register_app(const msg::AppRequest& app, std::size_t& failed,
                                          msg::AppResult& result);
  // The app's limits and who may connect; an error names what is wrong.
  std::optional<std::string> app_policy(const msg::AppRequest& app, AppServer::Policy& out);
  // The ports this group may bind (its allow_ports, else the server's) and
  // their description for messages.
  const std::vector<PortRange>& allowed_ports() const;
  bool port_permitted(std::uint16_t port) const;
  std::string allowed_description() const;
  awaitable<void> read_loop();
  awaitable<void> watchdog();

  CommonServer& server_;
  std::string name_, session_, data_key_, peer_, context_;
  GroupLimits limits_;
  std::shared_ptr<Quota> quota_;
  ControlChannel control_;
  std::list<asio::steady_timer*> probes_;  // probe() waits, woken by every message
  std::vector<App> apps_;
  std::deque<DataConnection> idle_;
  ReplayWindow data_seqs_;
  std::list<Waiter*> waiters_;
  SocketSet starting_;  // data connections told to start, awaiting the client's answer
  std::string end_reason_;
  bool closed_ = false;
};

}  // namespace ntp
