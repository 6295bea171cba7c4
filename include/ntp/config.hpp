// server.json and apps.json, parsed and validated into plain structs (DESIGN.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ntp/address.hpp"
#include "ntp/logging.hpp"

namespace ntp {

// Every problem found, each as "file: json.path: expected X, got Y".
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

// Group and app names: 1 to 64 characters from A-Z a-z 0-9 _ . -
bool valid_name(std::string_view name);

// The shortest token either daemon accepts. With no pinned certificate a fake
// server learns one login proof per attempt, so a token must be too long to
// guess offline; `ntp-server --gen-token` makes a 48-character one.
inline constexpr std::size_t kMinTokenLength = 16;
// "WHERE: expected at least 16 characters (...), got 7" for a short token in use;
// nullopt when it is long enough. The token itself is never part of the text.
std::optional<std::string> token_problem(std::string_view token, std::string_view where);

// Limits on one group's users, all enforced by the server.
struct GroupLimits {
  std::optional<std::uint32_t> max_apps;
  std::optional<std::uint32_t> max_conns;  // concurrent users over all its apps
  std::optional<std::uint64_t> bandwidth;  // bytes/s, each direction, over all its users
  bool operator==(const GroupLimits&) const = default;
};

struct GroupConfig {
  std::string token;
  std::vector<PortRange> allow_ports;  // empty: the server-wide list applies
  std::optional<std::uint32_t> max_apps;
  std::optional<std::uint32_t> max_conns;
  std::optional<std::uint64_t> bandwidth;
  bool operator==(const GroupConfig&) const = default;
};

// "tls" in server.json. Absent (or true): TLS with a certificate generated once in
// the state directory; false: plain TCP.
struct ServerTls {
  std::string cert, key;  // PEM files, both or neither
  std::string client_ca;  // set: clients must show a certificate it signed
  bool operator==(const ServerTls&) const = default;
};

inline constexpr std::uint32_t kDefaultMaxApps = 256;

struct ServerConfig {
  HostPort bind{"0.0.0.0", 7000};
  std::optional<std::string> token;  // the server-wide token (open mode)
  std::string proxy_bind_addr = "0.0.0.0";
  std::vector<PortRange> allow_ports;                        // empty: 1024-65535 but the bind port
  std::optional<std::map<std::string, GroupConfig>> groups;  // present: ready groups only
  // For every group, where groups.NAME does not say. max_apps is never
  // unlimited: one register frame could otherwise ask for thousands of listeners.
  GroupLimits group_defaults{kDefaultMaxApps, {}, {}};
  std::optional<std::uint32_t> max_groups;  // groups logged in at once
  // The limits that apply to `group`: its own entry's, else group_defaults'.
  GroupLimits limits_for(const std::string& group) const;
  int heartbeat_timeout_s = 30;
  // Connections still in their handshake; at the cap the oldest of the source
  // holding the most is dropped, so a flood of silent connections cannot keep a
  // real client out.
  std::uint32_t max_handshakes = 256;
  // Of those, how many one source (an IPv4 address, an IPv6 /64) may hold that
  // have run for over a second; past it the source's oldest is dropped
  // (handshake_table.hpp).
  std::uint32_t max_handshakes_per_source = 16;
  // Users of one app waiting for a data connection; past it a new user is closed.
  std::uint32_t max_waiting_users = 256;
  std::optional<ServerTls> tls = ServerTls{};  // nullopt: "tls": false
  bool zero_copy = true;                       // splice(2) between plain streams (splice.hpp)
  LogLevel log_level = spdlog::level::info;
  bool operator==(const ServerConfig&) const = default;
};

// The PROXY protocol header the client writes to a local app before the
// user's first byte (HAProxy's spec): none, the text form or the binary one.
enum class ProxyProtocol { none, v1, v2 };

// A port range in apps.json registers one app per port; at most this many.
inline constexpr std::size_t kMaxPortRange = 1000;

struct LocalApp {
  std::string name;  // for a port range, "NAME-PORT" (the remote port)
  HostPort local;
  std::string unix_path;          // set: the app listens on this Unix socket, not `local`
  std::uint16_t remote_port = 0;  // 0: the server chooses
  std::string type = "tcp";       // or "udp"
  // Asked of the server, which applies them within the group's limits.
  std::optional<std::uint32_t> max_conns;  // tcp
  std::optional<std::uint64_t> bandwidth;  // bytes/s, each direction
  std::vector<std::string> allow_cidrs;    // empty: anyone may connect
  ProxyProtocol proxy_protocol = ProxyProtocol::none;
  // udp: a flow (one user address) ends after this long without a datagram;
  // datagrams of new addresses past max_flows are dropped.
  std::uint32_t udp_idle_s = 60;
  std::uint32_t max_flows = 1024;

  std::string where() const;  // "127.0.0.1:22" or "unix:/run/app.sock", for logs
  bool operator==(const LocalApp&) const = default;
};

// "tls" in apps.json. Absent (or true): TLS, the server authenticated by the
// login proofs bound to the TLS session; false: plain TCP.
struct ClientTls {
  std::string ca;                  // also verify the certificate chain and name against it
  std::string server_fingerprint;  // also require this certificate: "SHA256:" + 64 hex
  std::string cert, key;           // a client certificate, for a server with client_ca
  bool operator==(const ClientTls&) const = default;
};

struct ClientConfig {
  std::optional<HostPort> server;
  std::string group;
  std::string token;  // resolved: NTP_TOKEN, else token_file, else token
  // Where it came from, for the start-up check that no other user can read it.
  std::string token_file;     // set when the token came from token_file
  bool token_inline = false;  // apps.json holds a "token" (in use or not)
  int heartbeat_interval_s = 10;
  std::vector<LocalApp> apps;
  std::optional<ClientTls> tls = ClientTls{};  // nullopt: "tls": false
  bool zero_copy = true;                       // splice(2) between plain streams (splice.hpp)
  LogLevel log_level = spdlog::level::info;
};

// `label` names the file in messages. `env_token` is NTP_TOKEN when set.
ServerConfig parse_server_config(std::string_view text, std::string_view label);
ClientConfig parse_client_config(std::string_view text, std::string_view label,
                                 const std::optional<std::string>& env_token);

ServerConfig load_server_config(const std::filesystem::path& file);
ClientConfig load_client_config(const std::filesystem::path& file,
                                const std::optional<std::string>& env_token);

// NTP_TOKEN from the environment; an empty value counts as set (and is an error later).
std::optional<std::string> env_token();

}  // namespace ntp
