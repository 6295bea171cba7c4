// The bind port's connections that have not proven themselves yet, by source (an
// IPv4 address or an IPv6 /64), and the two caps on them:
// - per source: a source holding `per_source` connections whose handshake has run
//   for over kStalled has its oldest closed to make room for its next one. Fresh
//   ones never count, so a burst of a client's data connections is never cut,
//   while a flood of silent or trickling ones (a slowloris) cannot hold up that
//   source's real clients behind it.
// - in all: at `max_total` the oldest connection of the source holding the most
//   is closed, so a flood from one address never evicts another address's
//   handshake.
// Single-threaded, like the loop that owns it.
#pragma once

#include <cstddef>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ntp/asio.hpp"

namespace ntp {

class HandshakeTable {
 public:
  // Far longer than a handshake takes (two round trips and a little CPU).
  static constexpr auto kStalled = std::chrono::seconds(1);

  HandshakeTable(std::size_t max_total, std::size_t per_source)
      : max_total_(max_total), per_source_(per_source) {}
  // A reload's new caps, for the connections that come from now on.
  void set_limits(std::size_t max_total, std::size_t per_source) {
    max_total_ = max_total;
    per_source_ = per_source;
  }

  class Entry {
   public:
    Entry(HandshakeTable& table, std::string source, tcp::socket& s);
    ~Entry();
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

   private:
    friend class HandshakeTable;
    HandshakeTable* table_;
    std::string source_;
    tcp::socket* socket_;
    steady_clock::time_point since_ = steady_clock::now();
    bool listed_ = true;  // false once closed to make room: it no longer counts
  };

  std::size_t size() const { return size_; }
  std::size_t of(const std::string& source) const;  // connections of one source

  // Before a new connection from `source` joins: closes what must make room for
  // it. Returns, per connection closed, the source it was from and which cap.
  struct Closed {
    std::string source, cap;
  };
  std::vector<Closed> make_room(const std::string& source,
                                steady_clock::time_point now = steady_clock::now());
  void close_all();

 private:
  struct Source {
    std::list<Entry*> entries;  // oldest first
  };
  void close(Entry& e);  // and unlist it at once, so it counts no more
  void leave(Entry& e);

  std::size_t max_total_, per_source_;
  std::size_t size_ = 0;
  std::map<std::string, Source> sources_;
};

}  // namespace ntp
