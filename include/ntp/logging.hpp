// One logging setup for both daemons: spdlog to stderr (journald keeps it).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace ntp {

using LogLevel = spdlog::level::level_enum;

// trace, debug, info, warn, error, critical, off.
std::optional<LogLevel> parse_log_level(std::string_view name);
void setup_logging(LogLevel level);

// Text a peer chose (an error message, a name that failed its check), made safe
// for a log line: control characters, backslashes and bytes past ASCII as \xNN,
// so it can neither forge a line nor drive a terminal; cut at `cap` bytes with
// how many more there were.
inline constexpr std::size_t kLoggedPeerText = 200;
std::string log_safe(std::string_view peer_text, std::size_t cap = kLoggedPeerText);

// Lets `burst` lines through per `period`; the rest are counted, and the count is
// reported with the next line that passes, so a flood cannot fill a disk.
class RateLimit {
 public:
  RateLimit(int burst, std::chrono::steady_clock::duration period)
      : burst_(burst), period_(period) {}
  // true when a line may be written; `suppressed` gets how many were dropped since.
  bool allow(std::uint64_t& suppressed) {
    return allow(suppressed, std::chrono::steady_clock::now());
  }
  bool allow(std::uint64_t& suppressed, std::chrono::steady_clock::time_point now);

 private:
  int burst_;
  std::chrono::steady_clock::duration period_;
  std::chrono::steady_clock::time_point window_start_{};
  int used_ = 0;
  std::uint64_t dropped_ = 0;
};

// Raises the soft open-files limit to the hard limit (each tunneled connection
// costs two sockets per daemon) and logs both.
void raise_open_files_limit();

}  // namespace ntp
