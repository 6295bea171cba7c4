// What both daemons share around their main loop: command-line parsing with
// DESIGN's exit codes, and the SIGTERM/SIGINT shutdown with its grace period.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "ntp/live_streams.hpp"

namespace ntp {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitConfig = 2;
inline constexpr auto kShutdownGrace = std::chrono::seconds(3);

// Parses argv; returns the exit code when the program must stop now (--help and
// --version print to stdout and give 0; usage errors print to stderr and give 2).
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv);

// Runs `io` on this thread until a signal has stopped the daemon: `stop` closes
// listeners and sessions, live streams get kShutdownGrace to finish, the rest are
// closed. Returns kExitOk.
int run_until_signalled(asio::io_context& io, LiveStreams& streams, std::function<void()> stop);

}  // namespace ntp
