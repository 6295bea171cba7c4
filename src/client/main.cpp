// ntp-client: the LAN side of the tunnel.
#include <iostream>

#include "client.hpp"
#include "ntp/config.hpp"
#include "ntp/daemon.hpp"

namespace {

using namespace ntp;

struct Flags {
  std::string config_file, server, log_level;
  bool check = false;
};

// Secrets other local users could read: said at start-up, by --check and on a
// reload, not fatal.
void warn_about_exposed_secrets(const Flags& f, const ClientConfig& cfg) {
  std::vector<std::filesystem::path> secrets;
  if (cfg.token_inline) secrets.push_back(f.config_file);
  if (!cfg.token_file.empty()) secrets.push_back(cfg.token_file);
  if (cfg.tls && !cfg.tls->key.empty()) secrets.push_back(cfg.tls->key);
  for (auto& file : secrets)
    if (auto w = exposure_warning(file)) spdlog::warn("{}", *w);
}

// Flags override the file (DESIGN: "a flag overrides the same setting from the file").
ClientConfig build_config(const Flags& f) {
  ClientConfig cfg = load_client_config(f.config_file, env_token());
  std::vector<std::string> problems;
  if (!f.server.empty()) {
    if (auto hp = parse_host_port(f.server); hp && hp->port != 0)
      cfg.server = *hp;
    else
      problems.push_back("--server: expected \"host:port\", got \"" + f.server + "\"");
  } else if (!cfg.server) {
    problems.push_back(f.config_file +
                       ": server: expected \"host:port\" (or --server), got nothing");
  } else if (cfg.server->port == 0) {
    problems.push_back(f.config_file + ": server: expected a port from 1 to 65535, got \"" +
                       cfg.server->str() + "\"");
  }
  override_log_level(f.log_level, cfg.log_level, problems);
  if (!problems.empty()) throw ConfigError(problems);
  return cfg;
}

// SIGHUP: the file again, flags still over it. Anything wrong and nothing
// changes: each problem is logged as --check prints it.
void reload(const Flags& f, Client& client) {
  const auto refuse = [&](const std::vector<std::string>& problems) {
    spdlog::error("reload: {} is not valid; the running configuration stays", f.config_file);
    for (auto& p : problems) spdlog::error("{}", p);
  };
  try {
    auto cfg = build_config(f);
    warn_about_exposed_secrets(f, cfg);
    spdlog::info("{}", client.reload(std::move(cfg)));
  } catch (const ConfigError& e) {
    refuse(e.problems());
  } catch (const TlsError& e) {
    refuse({f.config_file + ": tls: " + e.what()});
  }
}

}  // namespace

int main(int argc, char** argv) {
  hold_stop_signals();
  CLI::App app{"ntp-client: the LAN side of the ntp reverse tunnel", "ntp-client"};
  Flags f;
  app.add_option("-c,--config", f.config_file, "apps.json")->required();
  app.add_option("--server", f.server, "HOST:PORT of the ntp-server (overrides \"server\")");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error, critical or off");
  app.add_flag("--check", f.check, "validate the configuration and exit");
  app.set_version_flag("--version", std::string("ntp-client ") + NTP_VERSION);
  if (auto code = parse_command_line(app, argc, argv)) return *code;

  ClientConfig cfg;
  try {
    cfg = build_config(f);
  } catch (const ConfigError& e) {
    for (auto& p : e.problems()) std::cerr << p << "\n";
    return kExitConfig;
  }
  asio::io_context io(1);  // one loop thread: see the server's main.cpp for why
  std::optional<Client> client;
  try {
    client.emplace(io.get_executor(), cfg);  // loads the TLS files, if any
  } catch (const TlsError& e) {
    std::cerr << f.config_file << ": tls: " << e.what() << "\n";
    return kExitConfig;
  }
  setup_logging(cfg.log_level);
  warn_about_exposed_secrets(f, cfg);
  if (f.check) {
    std::cout << "ntp-client: configuration OK (" << f.config_file << ")\n";
    return kExitOk;
  }
  raise_open_files_limit();
  spdlog::info("ntp-client {} starting: group {}, {} app(s), server {}", NTP_VERSION, cfg.group,
               cfg.apps.size(), cfg.server->str());
  if (!cfg.tls)
    spdlog::warn(
        "TLS is off (\"tls\": false): logins are still proven, but every byte crosses the "
        "network in clear; use this only on a trusted network or behind a TLS front");
  else if (!cfg.tls->server_fingerprint.empty())
    spdlog::info("TLS 1.3 on; the server's certificate must be {}", cfg.tls->server_fingerprint);
  else
    spdlog::info("TLS 1.3 on; the server proves the group token over this TLS session{}",
                 cfg.tls->ca.empty() ? "" : ", and its certificate must chain to tls.ca");
  asio::co_spawn(io, client->run(), LogFailure{"client failed"});
  return run_until_signalled(
      io, client->streams(), [&] { client->stop(); }, [&] { reload(f, *client); });
}
