// Backoff after failed logins, keyed by (source, group): a brute force on one
// group's token from one address gets a handful of guesses a minute, while other
// groups logging in from the same address (neighbours behind one NAT, or a
// client's own good group beside a misconfigured one) are never slowed. A budget
// per source across all groups stops rotating group names from buying guesses
// (in open mode every group shares one token).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "ntp/asio.hpp"

namespace ntp {

class LoginThrottle {
 public:
  using Clock = steady_clock;
  static constexpr auto kFirstDelay = std::chrono::seconds(1);  // doubled per failure
  static constexpr auto kMaxDelay = std::chrono::seconds(60);
  // A (source, group) is forgotten this long after its last failure.
  static constexpr auto kMemory = std::chrono::minutes(10);
  // At most this many failures per source in any kBudgetWindow, over all groups.
  static constexpr std::size_t kSourceBudget = 30;
  static constexpr auto kBudgetWindow = std::chrono::minutes(1);
  static constexpr std::size_t kMaxKeys = 65536;  // memory bound under a spread-out attack

  // The key an address is throttled under: the address itself for IPv4, its /64
  // for IPv6 (one host usually owns a whole /64).
  static std::string source_of(const asio::ip::address& a);

  // How long `source` must still wait before its next proof for `group` is
  // checked; nullopt: go on.
  std::optional<Clock::duration> wait(const std::string& source, const std::string& group,
                                      Clock::time_point now) const;
  // A failed proof; returns the delay the pair now has to wait.
  Clock::duration failed(const std::string& source, const std::string& group,
                         Clock::time_point now);
  // An accepted login (a refused one clears nothing): the pair starts afresh.
  void succeeded(const std::string& source, const std::string& group);
  std::size_t size() const { return pairs_.size(); }  // (source, group) records

 private:
  struct Entry {
    std::uint32_t failures = 0;
    Clock::time_point next;  // no proof checked before this
    Clock::time_point last;  // the last failure
  };
  using Key = std::pair<std::string, std::string>;
  void forget_old(Clock::time_point now);

  std::map<Key, Entry> pairs_;
  std::map<std::string, std::deque<Clock::time_point>> budgets_;  // per source, newest last
};

}  // namespace ntp
