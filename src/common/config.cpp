#include "ntp/config.hpp"

#include <algorithm>
#include <cstdlib>

#include "config_checker.hpp"

namespace ntp {

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error(config_detail::join_lines(problems)), problems_(std::move(problems)) {}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

std::optional<std::string> token_problem(std::string_view token, std::string_view where) {
  if (token.size() >= kMinTokenLength) return std::nullopt;
  return fmt::format(
      "{}: expected at least {} characters (ntp-server --gen-token makes one), got {}", where,
      kMinTokenLength, token.size());
}

std::optional<std::string> env_token() {
  if (const char* t = std::getenv("NTP_TOKEN")) return std::string(t);
  return std::nullopt;
}

}  // namespace ntp
