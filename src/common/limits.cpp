#include "ntp/limits.hpp"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>

namespace ntp {
namespace {

struct Unit {
  std::string_view name;
  double bytes;
};
constexpr std::array<Unit, 11> kUnits{{{"B/s", 1},
                                       {"KB/s", 1e3},
                                       {"KiB/s", 1024},
                                       {"MB/s", 1e6},
                                       {"MiB/s", 1024.0 * 1024},
                                       {"GB/s", 1e9},
                                       {"GiB/s", 1024.0 * 1024 * 1024},
                                       {"kbit/s", 1e3 / 8},
                                       {"Kbit/s", 1e3 / 8},
                                       {"Mbit/s", 1e6 / 8},
                                       {"Gbit/s", 1e9 / 8}}};

}  // namespace

std::optional<std::uint64_t> parse_rate(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0 || i > 20) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + i, value);
  if (ec != std::errc{} || end != text.data() + i) return std::nullopt;
  auto unit = text.substr(i);
  if (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  for (auto& u : kUnits) {
    if (u.name != unit) continue;
    const double bytes = value * u.bytes;
    if (!(bytes >= 1) || bytes > 1e15) return std::nullopt;
    return static_cast<std::uint64_t>(std::llround(bytes));
  }
  return std::nullopt;
}

std::string format_rate(std::uint64_t r) {
  if (r % (1024 * 1024) == 0) return fmt::format("{} MiB/s", r / (1024 * 1024));
  if (r % 1024 == 0) return fmt::format("{} KiB/s", r / 1024);
  return fmt::format("{} B/s", r);
}

bool Cidr::contains(const asio::ip::address& a) const {
  auto addr = a;
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  if (addr.is_v4() != network.is_v4()) return false;
  auto bits_match = [this](const auto& x, const auto& y) {
    unsigned left = prefix;
    for (std::size_t i = 0; i < x.size() && left > 0; ++i, left = left >= 8 ? left - 8 : 0) {
      const unsigned char mask = left >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - left));
      if ((x[i] & mask) != (y[i] & mask)) return false;
    }
    return true;
  };
  if (addr.is_v4()) return bits_match(addr.to_v4().to_bytes(), network.to_v4().to_bytes());
  return bits_match(addr.to_v6().to_bytes(), network.to_v6().to_bytes());
}

std::string Cidr::str() const {
  return network.to_string() + "/" + std::to_string(prefix);
}

std::optional<Cidr> parse_cidr(std::string_view text) {
  const auto slash = text.find('/');
  error_code ec;
  auto addr = asio::ip::make_address(std::string(text.substr(0, slash)), ec);
  if (ec) return std::nullopt;
  const unsigned max = addr.is_v4() ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    auto p = text.substr(slash + 1);
    auto [end, pec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || pec != std::errc{} || end != p.data() + p.size() || prefix > max)
      return std::nullopt;
  }
  return Cidr{addr, prefix};
}

TokenBucket::TokenBucket(std::uint64_t rate)
    : rate_(rate),
      burst_(std::max(static_cast<double>(rate) / 10, 64.0 * 1024)),
      tokens_(burst_),
      last_(steady_clock::now()) {}

bool TokenBucket::has_room(std::size_t n, steady_clock::time_point now) {
  take(0, now);  // refills
  return tokens_ >= static_cast<double>(n);
}

void TokenBucket::set_rate(std::uint64_t rate) {
  rate_ = rate;
  burst_ = std::max(static_cast<double>(rate) / 10, 64.0 * 1024);
  tokens_ = std::min(tokens_, burst_);
}

steady_clock::duration TokenBucket::take(std::size_t n, steady_clock::time_point now) {
  if (now > last_) {
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * static_cast<double>(rate_));
    last_ = now;
  }
  tokens_ -= static_cast<double>(n);
  if (tokens_ >= 0) return steady_clock::duration::zero();
  return std::chrono::duration_cast<steady_clock::duration>(
      std::chrono::duration<double>(-tokens_ / static_cast<double>(rate_)));
}

Quota::Quota(std::optional<std::uint32_t> max_conns, std::optional<std::uint64_t> bandwidth)
    : max_conns_(max_conns), limited_(bandwidth.has_value()) {
  if (bandwidth) {
    up_.emplace(*bandwidth);
    down_.emplace(*bandwidth);
  }
}

void Quota::set_limits(std::optional<std::uint32_t> max_conns,
                       std::optional<std::uint64_t> bandwidth) {
  max_conns_ = max_conns;
  limited_ = bandwidth.has_value();
  if (!bandwidth) return;  // the buckets stay for the streams that hold them
  if (!up_) {
    up_.emplace(*bandwidth);
    down_.emplace(*bandwidth);
  } else if (up_->rate() != *bandwidth) {
    // In place: running streams point at these buckets.
    up_->set_rate(*bandwidth);
    down_->set_rate(*bandwidth);
  }
}

Quota::Ticket& Quota::Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    if (q_) --q_->conns_;
    q_ = std::move(o.q_);
  }
  return *this;
}

Quota::Ticket::~Ticket() {
  if (q_) --q_->conns_;
}

Quota::Ticket Quota::enter(const std::shared_ptr<Quota>& q) {
  if (!q || (q->max_conns_ && q->conns_ >= *q->max_conns_)) return {};
  ++q->conns_;
  return Ticket(q);
}

}  // namespace ntp
