#include "ntp/logging.hpp"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace ntp {

std::optional<LogLevel> parse_log_level(std::string_view name) {
  static constexpr std::pair<std::string_view, LogLevel> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
      {"off", spdlog::level::off}};
  for (auto& [n, l] : kLevels)
    if (n == name) return l;
  return std::nullopt;
}

void setup_logging(LogLevel level) {
  // Unsynchronised sink: each daemon logs from its one loop thread.
  auto logger =
      std::make_shared<spdlog::logger>("ntp", std::make_shared<spdlog::sinks::stderr_sink_st>());
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %-5l %v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

std::string log_safe(std::string_view text, std::size_t cap) {
  std::string out;
  const auto shown = text.substr(0, cap);
  out.reserve(shown.size());
  for (const char ch : shown) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f || c == '\\')
      out += fmt::format("\\x{:02x}", c);
    else
      out += ch;
  }
  if (text.size() > cap) out += fmt::format("... ({} more bytes)", text.size() - cap);
  return out;
}

bool RateLimit::allow(std::uint64_t& suppressed, std::chrono::steady_clock::time_point now) {
  if (now - window_start_ >= period_) {
    window_start_ = now;
    used_ = 0;
  }
  if (used_ >= burst_) {
    ++dropped_;
    return false;
  }
  ++used_;
  suppressed = dropped_;
  dropped_ = 0;
  return true;
}

void raise_open_files_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  auto soft = lim.rlim_cur;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
      spdlog::warn("open files limit: cannot raise soft limit {} to hard limit {}: {}", soft,
                   lim.rlim_max, std::strerror(errno));
      return;
    }
  }
  spdlog::debug("open files limit: soft {} (was {}), hard {}", lim.rlim_cur, soft, lim.rlim_max);
}

}  // namespace ntp
