// libFuzzer target: ntp::parse_server_config. ConfigError is its answer to a bad
// file; any other exception, or a ConfigError listing no problem, is a finding.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ntp/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto cfg = ntp::parse_server_config(text, "server.json");
    // Invariants the server relies on once the file is accepted.
    if (cfg.heartbeat_timeout_s < 1 || cfg.max_handshakes < 1) std::abort();
    if (cfg.token && cfg.token->empty()) std::abort();
    for (const auto& r : cfg.allow_ports)
      if (r.first == 0 || r.first > r.last) std::abort();
    if (cfg.groups)
      for (const auto& [name, g] : *cfg.groups)
        if (!ntp::valid_name(name) || g.token.empty()) std::abort();
  } catch (const ntp::ConfigError& e) {
    if (e.problems().empty()) std::abort();
  }
  return 0;
}
