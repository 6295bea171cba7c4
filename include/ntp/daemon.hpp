// What both daemons share around their main loop: command-line parsing with
// DESIGN's exit codes, the SIGTERM/SIGINT shutdown with its grace period, and
// SIGHUP's reload.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ntp/live_streams.hpp"
#include "ntp/logging.hpp"

namespace ntp {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitConfig = 2;
inline constexpr auto kShutdownGrace = std::chrono::seconds(3);

// Parses argv; returns the exit code when the program must stop now (--help and
// --version print to stdout and give 0; usage errors print to stderr and give 2).
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv);

// A co_spawn completion handler that logs an escaped exception under `context`
// (the data path reports errors as values; this catches what should never be).
struct LogFailure {
  std::string context;
  void operator()(std::exception_ptr e) const;
};

// Applies --log-level over the file's level, or records the problem.
void override_log_level(const std::string& flag, LogLevel& level,
                        std::vector<std::string>& problems);

// For a file holding a token or key: a warning when users other than this
// daemon's can read or write it (world bits, or group bits of a group this
// process is not in), naming the chmod that fixes it; nullopt when it is private
// or cannot be read at all (the parser says so then).
std::optional<std::string> exposure_warning(const std::filesystem::path& file);

// Holds SIGINT, SIGTERM and SIGHUP back from the start of main() until
// run_until_signalled() is ready for them: one sent during start-up (a service
// manager stopping a unit it just started) then stops the daemon cleanly
// instead of killing it by the signal.
void hold_stop_signals();

// Runs `io` on this thread until a signal has stopped the daemon: `stop` closes
// listeners and sessions, live streams get kShutdownGrace to finish, the rest are
// closed. Each SIGHUP before then calls `reload` (DESIGN, Reload). Returns kExitOk.
int run_until_signalled(asio::io_context& io, LiveStreams& streams, std::function<void()> stop,
                        std::function<void()> reload);

}  // namespace ntp
