// Limits the server enforces on users of remote ports: concurrent connections,
// bandwidth (a token bucket applied in the splice) and who may connect at all.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ntp/asio.hpp"

namespace ntp {

// "10MiB/s", "1.5 MB/s", "800KiB/s", "100Mbit/s": bytes per second, > 0.
std::optional<std::uint64_t> parse_rate(std::string_view text);
std::string format_rate(std::uint64_t bytes_per_second);  // "10 MiB/s"

// "10.0.0.0/8", "2001:db8::/32", or one address ("192.0.2.7" = /32).
struct Cidr {
  asio::ip::address network;
  unsigned prefix = 0;
  bool contains(const asio::ip::address& a) const;
  std::string str() const;
};
std::optional<Cidr> parse_cidr(std::string_view text);

// Bytes per second with a burst of a tenth of a second (at least 64 KiB). Shared
// by every stream under one limit; a stream that takes more than is there runs
// the balance negative and waits it out, so many streams share fairly.
class TokenBucket {
 public:
  explicit TokenBucket(std::uint64_t rate);
  // Takes `n` bytes' worth; returns how long the caller must wait before sending.
  steady_clock::duration take(std::size_t n, steady_clock::time_point now);
  // Whether `n` bytes could be taken now without a wait (a datagram that cannot
  // is dropped, not delayed).
  bool has_room(std::size_t n, steady_clock::time_point now);
  std::uint64_t rate() const { return rate_; }
  void set_rate(std::uint64_t rate);  // keeps the balance, within the new burst

 private:
  std::uint64_t rate_;
  double burst_, tokens_;
  steady_clock::time_point last_;
};

// One limit scope (a group or an app): concurrent users and bandwidth, each
// direction with its own bucket. Shared: streams outlive sessions and listeners.
class Quota {
 public:
  Quota(std::optional<std::uint32_t> max_conns, std::optional<std::uint64_t> bandwidth);
  // New limits for new users and bytes; users inside stay and count.
  void set_limits(std::optional<std::uint32_t> max_conns, std::optional<std::uint64_t> bandwidth);

  std::optional<std::uint32_t> max_conns() const { return max_conns_; }
  std::uint32_t conns() const { return conns_; }
  // The buckets new users pass through; null when unlimited. A bucket outlives a
  // change of limits (streams that took it keep it).
  TokenBucket* up() { return limited_ ? &*up_ : nullptr; }      // user -> app
  TokenBucket* down() { return limited_ ? &*down_ : nullptr; }  // app -> user

  // A place for one user, held for its stream's life; empty at max_conns.
  class Ticket {
   public:
    Ticket() = default;
    explicit Ticket(std::shared_ptr<Quota> q) : q_(std::move(q)) {}
    Ticket(Ticket&&) noexcept = default;
    Ticket& operator=(Ticket&& o) noexcept;
    ~Ticket();
    explicit operator bool() const { return q_ != nullptr; }

   private:
    std::shared_ptr<Quota> q_;
  };
  static Ticket enter(const std::shared_ptr<Quota>& q);

 private:
  std::optional<std::uint32_t> max_conns_;
  bool limited_ = false;
  std::uint32_t conns_ = 0;
  std::optional<TokenBucket> up_, down_;
};

}  // namespace ntp
