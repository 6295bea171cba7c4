// Per-source backoff after failed logins: a brute force from one address gets a
// handful of guesses a minute, while every other address is never slowed down.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "ntp/asio.hpp"

namespace ntp {

class LoginThrottle {
 public:
  using Clock = steady_clock;
  static constexpr auto kFirstDelay = std::chrono::seconds(1);  // doubled per failure
  static constexpr auto kMaxDelay = std::chrono::seconds(60);
  // A source is forgotten this long after its last failure.
  static constexpr auto kMemory = std::chrono::minutes(10);
  static constexpr std::size_t kMaxSources = 65536;  // memory bound under a spread-out attack

  // The key an address is throttled under: the address itself for IPv4, its /64
  // for IPv6 (one host usually owns a whole /64).
  static std::string source_of(const asio::ip::address& a);

  // How long `source` must still wait before its next handshake; nullopt: go on.
  std::optional<Clock::duration> wait(const std::string& source, Clock::time_point now) const;
  // A failed login from `source`; returns the delay it now has to wait.
  Clock::duration failed(const std::string& source, Clock::time_point now);
  // A successful login: the source starts afresh.
  void succeeded(const std::string& source) { sources_.erase(source); }
  std::size_t size() const { return sources_.size(); }

 private:
  struct Entry {
    std::uint32_t failures = 0;
    Clock::time_point next;  // no handshake before this
    Clock::time_point last;  // the last failure
  };
  void forget_old(Clock::time_point now);

  std::map<std::string, Entry> sources_;
};

}  // namespace ntp
