#include "ntp/daemon.hpp"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <stop_token>
#include <thread>

#include <spdlog/spdlog.h>

namespace ntp {

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return kExitOk;
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what() << "\n";
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": " << e.what() << "\nRun with --help for usage.\n";
    return kExitConfig;
  }
  return std::nullopt;
}

void LogFailure::operator()(std::exception_ptr e) const {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    spdlog::error("{}: {}", context, x.what());
  }
}

void override_log_level(const std::string& flag, LogLevel& level,
                        std::vector<std::string>& problems) {
  if (flag.empty()) return;
  if (auto l = parse_log_level(flag))
    level = *l;
  else
    problems.push_back(
        "--log-level: expected one of trace, debug, info, warn, error, critical, off, got \"" +
        flag + "\"");
}

int run_until_signalled(asio::io_context& io, LiveStreams& streams, std::function<void()> stop) {
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is an error code, not a signal
  asio::signal_set signals(io, SIGINT, SIGTERM);
  std::jthread last_resort;
  std::atomic<bool> forced{false};
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        auto [ec, signo] = co_await signals.async_wait(nothrow);
        if (ec) co_return;
        spdlog::info("{}: closing listeners; {} live stream(s) get {} s to finish",
                     signo == SIGTERM ? "SIGTERM" : "SIGINT", streams.size(),
                     kShutdownGrace.count());
        stop();
        co_await streams.wait_empty(kShutdownGrace);
        if (streams.size() > 0) {
          spdlog::info("closing {} stream(s) still open after the grace period", streams.size());
          streams.close_all();
        }
        // Everything is closed; whatever still runs ends within moments. If
        // something does not, stop the loop rather than hang a service manager.
        last_resort = std::jthread([&io, &forced](std::stop_token st) {
          std::mutex m;
          std::unique_lock lock(m);
          std::condition_variable_any cv;
          if (!cv.wait_for(lock, st, std::chrono::seconds(5), [] { return false; }) &&
              !st.stop_requested()) {
            forced = true;
            io.stop();
          }
        });
      },
      LogFailure{"shutdown"});
  io.run();
  if (forced) {
    // Coroutines still suspended refer to objects main() is about to destroy
    // before the io_context: leave without running any destructor.
    spdlog::warn("stopped: something was still running 5 s after the shutdown");
    spdlog::shutdown();
    std::_Exit(kExitOk);
  }
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace ntp
