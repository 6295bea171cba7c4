// ntp-server: the public side of the tunnel.
#include <iostream>

#include "common_server.hpp"
#include "ntp/auth.hpp"
#include "ntp/config.hpp"
#include "ntp/daemon.hpp"
#include "ntp/listener.hpp"
#include "ntp/tls.hpp"
#include "state_store.hpp"

namespace {

using namespace ntp;

struct Flags {
  std::string bind, config_file, token, log_level;
  bool token_set = false;
  bool check = false;
  bool gen_token = false;
};

// Precedence: --token, NTP_TOKEN, the file's token; nullopt when none is set.
// With ready groups the server-wide token is not used, so not checked either.
std::optional<std::string> configured_token(const Flags& f, const ServerConfig& cfg,
                                            std::vector<std::string>& problems) {
  std::optional<std::string> token;
  std::string where;
  if (f.token_set) {
    token = f.token;
    where = "--token";
  } else if (auto env = env_token()) {
    token = env;
    where = "NTP_TOKEN";
  } else if (cfg.token) {
    token = cfg.token;
    where = f.config_file + ": token";
  }
  if (token && !token->empty() && !cfg.groups)
    if (auto short_token = token_problem(*token, where)) problems.push_back(*short_token);
  return token;
}

// Flags override the file (DESIGN: "a flag overrides the same setting from the file").
ServerConfig build_config(const Flags& f) {
  ServerConfig cfg = f.config_file.empty() ? ServerConfig{} : load_server_config(f.config_file);
  std::vector<std::string> problems;
  if (!f.bind.empty()) {
    if (auto hp = parse_host_port(f.bind))
      cfg.bind = *hp;
    else
      problems.push_back("--bind: expected \"host:port\", got \"" + f.bind + "\"");
  }
  override_log_level(f.log_level, cfg.log_level, problems);
  if (f.token_set && f.token.empty()) problems.push_back("--token: expected a non-empty token");
  if (auto env = env_token(); env && env->empty())
    problems.push_back("NTP_TOKEN: expected a non-empty token, got an empty value");
  configured_token(f, cfg, problems);
  if (!problems.empty()) throw ConfigError(problems);
  return cfg;
}

// Secrets other local users could read: said at start-up, not fatal.
void warn_about_exposed_secrets(const Flags& f, const ServerConfig& cfg) {
  if (f.token_set)
    spdlog::warn(
        "--token: other local users can read a token given on the command line (ps, "
        "/proc/PID/cmdline); use NTP_TOKEN or \"token\" in server.json instead");
  std::vector<std::filesystem::path> files;
  if (!f.config_file.empty() && (cfg.token || cfg.groups)) files.push_back(f.config_file);
  if (cfg.tls && !cfg.tls->key.empty()) files.push_back(cfg.tls->key);
  for (auto& file : files)
    if (auto w = exposure_warning(file)) spdlog::warn("{}", *w);
}

// The token of open mode: --token, NTP_TOKEN, the file's, else (not in --check)
// the one stored in the state directory, generated on first use. Empty with
// ready groups. Throws ConfigError for a stored token that is too short.
std::string open_token(const Flags& f, const ServerConfig& cfg, bool generate) {
  std::vector<std::string> ignored;  // checked in build_config
  auto configured = configured_token(f, cfg, ignored);
  if (cfg.groups) return {};
  if (configured) return *configured;
  if (!generate) return {};
  // DESIGN: never unauthenticated. With no token anywhere, one is generated once.
  auto stored = load_or_create_token(state_directory());
  if (auto short_token = token_problem(stored.token, stored.file.string()))
    throw ConfigError({*short_token});
  if (stored.generated)
    spdlog::warn(
        "no token configured: generated token {} (stored in {}); give it to "
        "clients as their \"token\"",
        stored.token, stored.file.string());
  else
    spdlog::info("no token configured: using the token stored in {}", stored.file.string());
  return stored.token;
}

std::string tls_where(const Flags& f) {
  return f.config_file.empty() ? "tls" : f.config_file + ": tls";
}

// The TLS context, from tls.cert/tls.key or the certificate generated in the state
// directory (created on first use; not in --check, which writes nothing).
std::optional<TlsContext> server_tls(const ServerConfig& cfg, bool check) {
  if (!cfg.tls) {
    spdlog::warn(
        "TLS is off (\"tls\": false): logins are still proven, but every byte crosses the "
        "network in clear; use this only on a trusted network or behind a TLS front");
    return std::nullopt;
  }
  if (!cfg.tls->cert.empty())
    return TlsContext::server(cfg.tls->cert, cfg.tls->key, cfg.tls->client_ca);
  if (check) return std::nullopt;
  auto stored = load_or_create_certificate(state_directory());
  auto ctx = TlsContext::server(stored.cert.string(), stored.key.string(), cfg.tls->client_ca);
  spdlog::info("{} self-signed TLS certificate {}", stored.generated ? "generated a" : "using the",
               stored.cert.string());
  return ctx;
}

// SIGHUP: the file again, flags still over it. Anything wrong and nothing
// changes: each problem is logged as --check prints it.
void reload(const Flags& f, CommonServer& server) {
  const auto refuse = [&](const std::vector<std::string>& problems) {
    spdlog::error("reload: {} is not valid; the running configuration stays",
                  f.config_file.empty() ? "the configuration" : f.config_file);
    for (auto& p : problems) spdlog::error("{}", p);
  };
  ServerConfig cfg;
  std::string token;
  std::optional<TlsContext> tls;
  try {
    cfg = build_config(f);
    token = open_token(f, cfg, true);
  } catch (const ConfigError& e) {
    refuse(e.problems());
    return;
  } catch (const std::exception& e) {
    refuse({std::string("cannot set up a token: ") + e.what()});
    return;
  }
  try {
    tls = server_tls(cfg, false);
  } catch (const std::exception& e) {
    refuse({tls_where(f) + ": " + e.what()});
    return;
  }
  warn_about_exposed_secrets(f, cfg);
  spdlog::set_level(cfg.log_level);
  if (tls) spdlog::info("reload: TLS certificate fingerprint {}", tls->own_fingerprint());
  spdlog::info("{}", server.reload(std::move(cfg), std::move(token), std::move(tls)));
}

}  // namespace

int main(int argc, char** argv) {
  hold_stop_signals();
  CLI::App app{"ntp-server: the public side of the ntp reverse tunnel", "ntp-server"};
  Flags f;
  app.add_option("--bind", f.bind, "HOST:PORT for clients to connect to (default 0.0.0.0:7000)");
  app.add_option("-c,--config", f.config_file, "server.json");
  app.add_option("--token", f.token,
                 "the server-wide token (else NTP_TOKEN, the file, or a generated one)")
      ->each([&](const std::string&) { f.token_set = true; });
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error, critical or off");
  app.add_flag("--check", f.check,
               "validate the configuration and that the bind port can be bound");
  app.add_flag("--gen-token", f.gen_token, "print a fresh random 192-bit token and exit");
  app.set_version_flag("--version", std::string("ntp-server ") + NTP_VERSION);
  if (auto code = parse_command_line(app, argc, argv)) return *code;
  if (f.gen_token) {
    std::cout << random_hex(kGeneratedTokenBytes) << "\n";
    return kExitOk;
  }

  ServerConfig cfg;
  try {
    cfg = build_config(f);
  } catch (const ConfigError& e) {
    for (auto& p : e.problems()) std::cerr << p << "\n";
    return kExitConfig;
  }
  setup_logging(cfg.log_level);
  warn_about_exposed_secrets(f, cfg);
  {
    std::vector<std::string> ignored;  // checked in build_config
    if (cfg.groups && configured_token(f, cfg, ignored))
      spdlog::warn(
          "ready groups are configured: the server-wide token is ignored; each group "
          "logs in with its own token");
  }

  // One loop thread. Measured against the splice on two more loops (an io_context
  // per thread, and one io_context shared by two threads with a strand per stream;
  // bench/experiments/threads.patch): on 2 cores no throughput gained, conn/s 11%
  // lower, and with the shared loop RR latency 38% higher. README, Performance.
  asio::io_context io(1);
  if (f.check) {
    try {
      server_tls(cfg, true);
    } catch (const std::exception& e) {
      std::cerr << tls_where(f) << ": " << e.what() << "\n";
      return kExitConfig;
    }
    CommonServer probe(io.get_executor(), cfg, open_token(f, cfg, false), std::nullopt);
    try {
      probe.listen();
    } catch (const std::system_error& e) {
      std::cerr << e.what() << "\n";
      return kExitConfig;
    }
    std::cout << "ntp-server: configuration OK"
              << (f.config_file.empty() ? "" : " (" + f.config_file + ")") << "\n";
    return kExitOk;
  }

  std::string token;
  try {
    token = open_token(f, cfg, true);
  } catch (const ConfigError& e) {
    for (auto& p : e.problems()) spdlog::error("{}", p);
    return kExitConfig;
  } catch (const std::exception& e) {
    spdlog::error("cannot set up a token: {}", e.what());
    return kExitRuntime;
  }

  std::optional<TlsContext> tls;
  try {
    tls = server_tls(cfg, false);
  } catch (const std::exception& e) {
    spdlog::error("cannot set up TLS: {}", e.what());
    return kExitRuntime;
  }
  if (tls) {
    spdlog::info(
        "TLS 1.3 on; certificate fingerprint {} (clients may pin it as "
        "tls.server_fingerprint)",
        tls->own_fingerprint());
    const auto ktls = ktls_available();
    spdlog::info("kTLS: {}; each connection's path is logged at debug level",
                 !ktls   ? "cannot tell (/proc/sys/net/ipv4/tcp_available_ulp is not readable)"
                 : *ktls ? "the kernel offers it: TLS records may be sealed by the kernel"
                         : "not in this kernel (no \"tls\" module): TLS records are sealed "
                           "and copied in user space");
  }
  CommonServer server(io.get_executor(), cfg, token, std::move(tls));
  try {
    server.listen();
  } catch (const std::system_error& e) {
    spdlog::error("{}", e.what());
    return kExitRuntime;
  }
  raise_open_files_limit();
  spdlog::info("ntp-server {} starting ({})", NTP_VERSION,
               cfg.groups ? fmt::format("ready groups: {}", cfg.groups->size()) : "open mode");

  asio::co_spawn(io, server.run(), LogFailure{"bind port listener failed"});
  return run_until_signalled(
      io, server.streams(), [&] { server.stop(); }, [&] { reload(f, server); });
}
