// AppServer: one registered app's listener on its remote port. Each user who
// connects is paired with a data connection of the group and spliced.
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

class AppServer {
 public:
  // Who may connect and the app's own limits (apps.json), within the group's.
  struct Policy {
    std::vector<Cidr> allow_cidrs;  // empty: anyone
    std::shared_ptr<Quota> quota;   // max_conns and bandwidth of this app
    std::uint32_t max_waiting_users = 256;
  };
  // What the app's users share while it runs: they may outlive it.
  struct Users {
    std::uint32_t waiting = 0;  // for a data connection
    // Lines about users, per app: a flood of connects cannot flood the log.
    RateLimit log{200, std::chrono::seconds(10)};
    void note(spdlog::level::level_enum level, const std::string& line);
  };

  AppServer(std::string name, tcp::acceptor acceptor, const std::string& group_context,
            Policy policy);

  const std::string& name() const { return name_; }
  std::uint16_t port() const { return port_; }
  const std::string& context() const { return context_; }  // "group=home app=ssh port=6022"

  // Accepts until close(); `group` is held only while a user waits for a data connection.
  awaitable<void> run(std::shared_ptr<AppGroup> group);
  void close();

 private:
  std::string name_;
  tcp::acceptor acceptor_;
  std::uint16_t port_;
  std::string context_;
  std::shared_ptr<const Policy> policy_;  // shared with its users, who may outlive it
  std::shared_ptr<Users> users_;
};

}  // namespace ntp
