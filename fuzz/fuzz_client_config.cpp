// libFuzzer target: ntp::parse_client_config. ConfigError is its answer to a bad
// file; any other exception, or a ConfigError listing no problem, is a finding.
//
// NTP_TOKEN is always passed (empty when the input starts with '!', else set), so the
// parser never opens a `token_file` path taken from the input: the fuzzer must
// not read /dev/zero, block on a FIFO or walk the file system. The token_file
// branch is covered by tests/unit/config_test.cpp instead.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "ntp/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // A leading '!' sets NTP_TOKEN but empty: an error the parser must report.
  const bool empty_env = text.starts_with('!');
  if (empty_env) text.remove_prefix(1);
  const std::optional<std::string> env = empty_env ? "" : "fuzz-token";
  try {
    const auto cfg = ntp::parse_client_config(text, "apps.json", env);
    if (cfg.token != *env || cfg.apps.empty() || !ntp::valid_name(cfg.group)) std::abort();
    if (cfg.heartbeat_interval_s < 1) std::abort();
    for (const auto& a : cfg.apps)
      if (!ntp::valid_name(a.name) || a.local.port == 0 || a.type != "tcp") std::abort();
  } catch (const ntp::ConfigError& e) {
    if (e.problems().empty()) std::abort();
  }
  return 0;
}
