#include "ntp/daemon.hpp"

#include <pthread.h>
#include <algorithm>
#include <atomic>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <stop_token>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

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

namespace {

bool in_my_groups(gid_t gid) {
  if (gid == ::getegid()) return true;
  std::vector<gid_t> groups(static_cast<std::size_t>(std::max(::getgroups(0, nullptr), 0)));
  const int n = ::getgroups(static_cast<int>(groups.size()), groups.data());
  return std::find(groups.begin(), groups.begin() + std::max(n, 0), gid) != groups.end();
}

}  // namespace

std::optional<std::string> exposure_warning(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  const bool world = (st.st_mode & S_IRWXO) != 0;
  // The packaged layout, 0640 root:ntp-tunnel, shares the file with the daemon's own group.
  const bool group = (st.st_mode & S_IRWXG) != 0 && !in_my_groups(st.st_gid);
  if (!world && !group) return std::nullopt;
  return fmt::format("{} holds a secret and other users can read it (mode {:04o}): chmod {}-rwx {}",
                     file.string(), st.st_mode & 07777,
                     world && group ? "go"
                     : world        ? "o"
                                    : "g",
                     file.string());
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

namespace {
// SIGHUP too: its default action would kill a daemon that a reload reached
// during start-up.
sigset_t held_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

void hold_stop_signals() {
  const auto set = held_signals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int run_until_signalled(asio::io_context& io, LiveStreams& streams, std::function<void()> stop,
                        std::function<void()> reload) {
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is an error code, not a signal
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::signal_set hangups(io, SIGHUP);
  // Ready: a signal held back since start-up is delivered now, to `signals`.
  const auto set = held_signals();
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (;;) {
          auto [ec, signo] = co_await hangups.async_wait(nothrow);
          if (ec) co_return;
          spdlog::info("SIGHUP: reloading the configuration");
          reload();
        }
      },
      LogFailure{"reload"});
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
        error_code ignored;  // no reload once stopping
        hangups.cancel(ignored);
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
