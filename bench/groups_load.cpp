// ntp-groups-load: the control-plane load test (issue 6). Logs in many groups
// at once against a real ntp-server from one process, registers no app, keeps
// every session alive with heartbeats for a while, and reports how many logged
// in, how many were dropped, and the server's CPU and RSS.
//
//   ntp-groups-load --server 127.0.0.1:7000 --token T --groups 1000 --hold 60
//                   [--plain] [--rate 200] [--heartbeat 10] [--server-pid PID]
//
// Prints "key value" lines (bench/run records them) and exits 0 only when every
// group logged in and none was dropped.
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "ntp/address.hpp"
#include "ntp/auth.hpp"
#include "ntp/config.hpp"
#include "ntp/listener.hpp"
#include "ntp/logging.hpp"
#include "ntp/message.hpp"
#include "ntp/stream.hpp"
#include "ntp/tls.hpp"

namespace {

using namespace ntp;

struct Options {
  std::string server, token;
  int groups = 1000, hold_s = 60, rate = 200, heartbeat_s = 10;
  bool plain = false;
  int server_pid = 0;
};

struct Tally {
  int logged_in = 0, failed = 0, dropped = 0;
  std::uint64_t pings = 0, pongs = 0;
  std::string first_error;
  void fail(int& counter, const std::string& why) {
    ++counter;
    if (first_error.empty()) first_error = why;
  }
};

// CPU seconds (user + system) and RSS in KiB of a process, from /proc.
std::pair<double, long> usage_of(int pid) {
  if (pid <= 0) return {0, 0};
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; fields >> f; ++i)
    if (i == 14 || i == 15) ticks += std::stod(f);
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  long rss = 0;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stol(line.substr(6));
  return {ticks / static_cast<double>(sysconf(_SC_CLK_TCK)), rss};
}

awaitable<void> session(int i, const Options& o, const std::vector<tcp::endpoint>& server,
                        const TlsContext* tls, steady_clock::time_point until, Tally& t) {
  const auto group = "load-" + std::to_string(i);
  Stream s(tcp::socket(co_await asio::this_coro::executor));
  auto setup = [&]() -> awaitable<std::string> {
    if (auto ec = co_await connect_any(s.socket(), server, std::chrono::seconds(10)))
      co_return "connect: " + ec.message();
    if (tls) {
      s.start_tls(*tls);
      if (auto ec = co_await s.handshake()) co_return "TLS: " + ec.message();
    }
    const auto prefix = client_prefix();
    std::string buf, peer_error;
    msg::Challenge challenge;
    if (auto ec = co_await s.write_all(asio::buffer(prefix))) co_return ec.message();
    if (auto ec = co_await expect_message(s, buf, challenge, &peer_error))
      co_return "challenge: " + (peer_error.empty() ? ec.message() : peer_error);
    const auto nonce = random_hex(kNonceBytes);
    auto proofs =
        login_proofs(o.token, group, nonce, challenge.nonce, s.channel_binding().value_or(""));
    const Message login = msg::Login{group, nonce, proofs.client};
    msg::Welcome welcome;
    if (auto ec = co_await write_message(s, login)) co_return ec.message();
    if (auto ec = co_await expect_message(s, buf, welcome, &peer_error))
      co_return "login: " + (peer_error.empty() ? ec.message() : peer_error);
    if (!proof_equal(welcome.proof, proofs.server)) co_return "the server's proof is wrong";
    const Message reg = msg::Register{};
    msg::Registered registered;
    if (auto ec = co_await write_message(s, reg)) co_return ec.message();
    if (auto ec = co_await expect_message(s, buf, registered))
      co_return "register: " + ec.message();
    co_return std::string();
  };
  auto r = co_await with_timeout(setup(), std::chrono::seconds(30));
  if (!r || !r->empty()) {
    t.fail(t.failed, r ? *r : "login not done within 30 s");
    co_return;
  }
  ++t.logged_in;
  // Heartbeats as ntp-client sends them (every 10 s by default, a third of the
  // default 30 s timeout). Each session starts at its own moment: they spread out.
  std::string buf;
  while (steady_clock::now() < until) {
    if (!co_await sleep_for(std::min<steady_clock::duration>(std::chrono::seconds(o.heartbeat_s),
                                                             until - steady_clock::now())))
      break;
    const Message ping = msg::Ping{};
    ++t.pings;
    msg::Pong pong;
    if (auto ec = co_await write_message(s, ping)) {
      t.fail(t.dropped, group + ": " + ec.message());
      co_return;
    }
    auto got = co_await with_timeout(expect_message(s, buf, pong), std::chrono::seconds(10));
    if (!got || *got) {
      t.fail(t.dropped, group + ": no pong: " + (got ? got->message() : "timed out"));
      co_return;
    }
    ++t.pongs;
  }
  s.close();
}

awaitable<void> run(const Options& o, const std::vector<tcp::endpoint>& server,
                    const TlsContext* tls, Tally& t, double& login_s) {
  auto ex = co_await asio::this_coro::executor;
  const auto began = steady_clock::now();
  const auto until = began + std::chrono::seconds(o.hold_s);
  const auto gap = std::chrono::microseconds(1'000'000 / std::max(o.rate, 1));
  int done = 0;
  for (int i = 0; i < o.groups; ++i) {
    asio::co_spawn(ex, session(i, o, server, tls, until, t), [&](std::exception_ptr e) {
      if (e) t.fail(t.failed, "exception");
      ++done;
    });
    co_await sleep_for(gap);  // a bounded pace of new logins
  }
  while (t.logged_in + t.failed < o.groups) co_await sleep_for(std::chrono::milliseconds(10));
  login_s = std::chrono::duration<double>(steady_clock::now() - began).count();
  while (done < o.groups) co_await sleep_for(std::chrono::milliseconds(50));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ntp-groups-load: log in many groups at once and hold them"};
  Options o;
  app.add_option("--server", o.server, "HOST:PORT of the ntp-server")->required();
  app.add_option("--token", o.token, "the server-wide token (open mode)")->required();
  app.add_option("--groups", o.groups, "groups to log in (default 1000)")
      ->check(CLI::Range(1, 5000));
  app.add_option("--hold", o.hold_s, "seconds to keep them (default 60)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--rate", o.rate, "new logins per second (default 200)")
      ->check(CLI::Range(1, 10000));
  app.add_option("--heartbeat", o.heartbeat_s, "seconds between heartbeats (default 10)")
      ->check(CLI::Range(1, 3600));
  app.add_flag("--plain", o.plain, "plain TCP (the server has \"tls\": false)");
  app.add_option("--server-pid", o.server_pid, "report this process's CPU and RSS");
  CLI11_PARSE(app, argc, argv);

  auto hp = parse_host_port(o.server);
  if (!hp) {
    std::cerr << "--server: expected host:port\n";
    return 2;
  }
  auto ep = literal_endpoint(hp->host, hp->port);
  if (!ep) {
    std::cerr << "--server: expected an IP address\n";
    return 2;
  }
  std::optional<TlsContext> tls;
  if (!o.plain) tls = TlsContext::client(ClientTls{}, hp->host);
  const std::vector<tcp::endpoint> server{*ep};

  raise_open_files_limit();  // a socket per group
  const auto [cpu0, rss0] = usage_of(o.server_pid);
  asio::io_context io(1);
  Tally t;
  double login_s = 0;
  std::pair<double, long> held{0, 0};
  asio::co_spawn(io, run(o, server, tls ? &*tls : nullptr, t, login_s), asio::detached);
  // Sample the server while all sessions are held, a second before the end.
  asio::steady_timer sample(io, std::chrono::seconds(std::max(o.hold_s - 1, 1)));
  sample.async_wait([&](error_code) { held = usage_of(o.server_pid); });
  io.run();
  const auto [cpu1, rss1] = usage_of(o.server_pid);

  std::cout << "groups " << o.groups << "\n"
            << "logged_in " << t.logged_in << "\n"
            << "failed " << t.failed << "\n"
            << "dropped " << t.dropped << "\n"
            << "pings " << t.pings << "\n"
            << "pongs " << t.pongs << "\n"
            << "login_seconds " << login_s << "\n";
  if (o.server_pid > 0)
    std::cout << "server_cpu_seconds " << (cpu1 - cpu0) << "\n"
              << "server_rss_kib_before " << rss0 << "\n"
              << "server_rss_kib_held " << held.second << "\n"
              << "server_kib_per_group "
              << (t.logged_in ? static_cast<double>(held.second - rss0) / t.logged_in : 0) << "\n";
  if (!t.first_error.empty()) std::cout << "first_error " << t.first_error << "\n";
  return t.logged_in == o.groups && t.dropped == 0 ? 0 : 1;
}
