// The spliced streams a daemon is carrying, so shutdown can give them a grace
// period and then close what is left, and a reload can end those of a revoked
// group or a removed app at once.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <string>

#include "ntp/asio.hpp"

namespace ntp {

class LiveStreams {
  struct Pair {
    tcp::socket* a;
    tcp::socket* b;
    std::string owner;  // the server's group, the client's app
  };

 public:
  explicit LiveStreams(asio::any_io_executor ex) : empty_(std::move(ex)) {}

  // Registered for the lifetime of one splice.
  class Entry {
   public:
    Entry(LiveStreams& set, tcp::socket& a, tcp::socket& b, std::string owner);
    ~Entry();
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;

   private:
    LiveStreams& set_;
    std::list<Pair>::iterator it_;
  };

  std::size_t size() const { return pairs_.size(); }
  // Returns when no stream is left or `grace` has passed, whichever is first.
  awaitable<void> wait_empty(steady_clock::duration grace);
  void close_all();
  // Closes the streams whose owner `revoked` names; returns how many.
  std::size_t close_owned_if(const std::function<bool(const std::string&)>& revoked);

 private:
  std::list<Pair> pairs_;
  asio::steady_timer empty_;  // cancelled when the last stream ends
};

}  // namespace ntp
