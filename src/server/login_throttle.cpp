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
                                                                  Clock::time_point now) const {
  auto it = sources_.find(source);
  if (it == sources_.end() || now >= it->second.next) return std::nullopt;
  return it->second.next - now;
}

LoginThrottle::Clock::duration LoginThrottle::failed(const std::string& source,
                                                     Clock::time_point now) {
  if (sources_.size() >= kMaxSources) forget_old(now);
  auto& e = sources_[source];
  if (e.failures > 0 && now - e.last > kMemory) e.failures = 0;  // an old story
  e.failures = std::min<std::uint32_t>(e.failures + 1, 32);
  Clock::duration delay = kMaxDelay;
  if (e.failures <= 7)
    delay = std::min<Clock::duration>(kFirstDelay * (1 << (e.failures - 1)), kMaxDelay);
  e.next = now + delay;
  e.last = now;
  return delay;
}

void LoginThrottle::forget_old(Clock::time_point now) {
  std::erase_if(sources_, [&](const auto& kv) { return now - kv.second.last > kMemory; });
  // Still full: an attack from very many addresses. Each of them is then
  // forgotten in turn rather than the map growing without bound.
  if (sources_.size() >= kMaxSources) sources_.erase(sources_.begin());
}

}  // namespace ntp
