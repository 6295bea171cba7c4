// AppServer: one registered app's listener on its remote port. A tcp app's
// (TcpAppServer, here) pairs each user who connects with a data connection of
// the group and splices them; a udp app's (UdpAppServer, udp_app_server.hpp)
// relays each user address's datagrams as a flow over a data connection.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ntp/limits.hpp"
#include "ntp/logging.hpp"

namespace ntp {

class AppGroup;

inline constexpr auto kDataWait = std::chrono::seconds(10);   // for the client to dial back
inline constexpr auto kLocalWait = std::chrono::seconds(10);  // for it to reach the local app

// Shared: the group holds it while it is registered, and its accept loop and
// flows hold it while they run, so a reload may drop it at any time.
class AppServer : public std::enable_shared_from_this<AppServer> {
 public:
  // Who may connect and the app's own limits (apps.json), within the group's.
  struct Policy {
    std::vector<Cidr> allow_cidrs;  // empty: anyone
    std::shared_ptr<Quota> quota;   // max_conns and bandwidth of this app
    std::uint32_t max_waiting_users = 256;
    bool addresses = false;          // `start` names the user's and the remote port's addresses
    std::uint32_t max_flows = 1024;  // udp
    std::chrono::seconds udp_idle{std::chrono::seconds(60)};  // udp
  };
  // What the app's users share while it runs: they may outlive it.
  struct Users {
    std::uint32_t waiting = 0;  // for a data connection
    // Lines about users, per app: a flood of connects cannot flood the log.
    RateLimit log{200, std::chrono::seconds(10)};
    void note(spdlog::level::level_enum level, const std::string& line);
  };

  virtual ~AppServer() = default;
  AppServer(const AppServer&) = delete;
  AppServer& operator=(const AppServer&) = delete;

  const std::string& name() const { return name_; }
  std::uint16_t port() const { return port_; }
  const std::string& context() const { return context_; }  // "group=home app=ssh port=6022"

  // Serves users until close(); `group` is held only while a user waits for a
  // data connection.
  virtual awaitable<void> run(std::shared_ptr<AppGroup> group) = 0;
  virtual void close() = 0;
  // For users that come from now on; those already in keep theirs.
  void set_policy(Policy policy) { policy_ = std::make_shared<const Policy>(std::move(policy)); }

 protected:
  AppServer(std::string name, std::uint16_t port, const std::string& group_context, Policy policy);

  std::shared_ptr<const Policy> policy_;  // shared with its users, who may outlive it
  std::shared_ptr<Users> users_;

 private:
  std::string name_;
  std::uint16_t port_;
  std::string context_;
};

// Runs `task` of `app` with `app` kept alive until the task ends.
awaitable<void> keeping(std::shared_ptr<AppServer> app, awaitable<void> task);

class TcpAppServer final : public AppServer {
 public:
  TcpAppServer(std::string name, tcp::acceptor acceptor, const std::string& group_context,
               Policy policy);
  awaitable<void> run(std::shared_ptr<AppGroup> group) override;
  void close() override;

 private:
  tcp::acceptor acceptor_;
};

}  // namespace ntp
