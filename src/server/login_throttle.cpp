#include "login_throttle.hpp"

#include <algorithm>

namespace ntp {

std::string LoginThrottle::source_of(const asio::ip::address& a) {
  if (a.is_v6() && !a.to_v6().is_v4_mapped()) {
    auto bytes = a.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return asio::ip::address_v6(bytes).to_string() + "/64";
  }
  return a.is_v6() ? asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string()
                   : a.to_string();
}

std::optional<LoginThrottle::Clock::duration> LoginThrottle::wait(const std::string& source,
                                                                  const std::string& group,
                                                                  Clock::time_point now) const {
  Clock::duration wait{};
  if (auto it = pairs_.find({source, group}); it != pairs_.end() && now < it->second.next)
    wait = it->second.next - now;
  // The budget is spent while kSourceBudget failures lie within the window.
  if (auto it = budgets_.find(source); it != budgets_.end() && it->second.size() >= kSourceBudget) {
    const auto& times = it->second;
    const auto oldest_in_budget = times[times.size() - kSourceBudget];
    if (now < oldest_in_budget + kBudgetWindow)
      wait = std::max<Clock::duration>(wait, oldest_in_budget + kBudgetWindow - now);
  }
  if (wait == Clock::duration::zero()) return std::nullopt;
  return wait;
}

LoginThrottle::Clock::duration LoginThrottle::failed(const std::string& source,
                                                     const std::string& group,
                                                     Clock::time_point now) {
  if (pairs_.size() >= kMaxKeys || budgets_.size() >= kMaxKeys) forget_old(now);
  auto& e = pairs_[{source, group}];
  if (e.failures > 0 && now - e.last > kMemory) e.failures = 0;  // an old story
  e.failures = std::min<std::uint32_t>(e.failures + 1, 32);
  Clock::duration delay = kMaxDelay;
  if (e.failures <= 7)
    delay = std::min<Clock::duration>(kFirstDelay * (1 << (e.failures - 1)), kMaxDelay);
  e.next = now + delay;
  e.last = now;
  auto& times = budgets_[source];
  times.push_back(now);
  while (times.size() > kSourceBudget) times.pop_front();  // only the newest count
  return delay;
}

void LoginThrottle::succeeded(const std::string& source, const std::string& group) {
  pairs_.erase({source, group});
}

void LoginThrottle::forget_old(Clock::time_point now) {
  std::erase_if(pairs_, [&](const auto& kv) { return now - kv.second.last > kMemory; });
  std::erase_if(budgets_, [&](const auto& kv) { return now - kv.second.back() > kBudgetWindow; });
  // Still full: an attack from very many addresses. Each of them is then
  // forgotten in turn rather than the maps growing without bound.
  if (pairs_.size() >= kMaxKeys) pairs_.erase(pairs_.begin());
  if (budgets_.size() >= kMaxKeys) budgets_.erase(budgets_.begin());
}

}  // namespace ntp
