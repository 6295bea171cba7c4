// Sockets that someone else may need to close: unauthenticated connections at
// shutdown, a client's pool when its session ends, data connections a user is
// waiting on when the group goes away. Entries are RAII; single-threaded.
#pragma once

#include <cstddef>
#include <list>

#include "ntp/asio.hpp"

namespace ntp {

class SocketSet {
 public:
  class Entry {
   public:
    Entry(SocketSet& set, tcp::socket& s)
        : set_(&set), it_(set.sockets_.insert(set.sockets_.end(), &s)) {}
    ~Entry() { release(); }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    // The socket is no longer the set's business (e.g. it is being spliced).
    void release() {
      if (set_) set_->sockets_.erase(it_);
      set_ = nullptr;
    }

   private:
    SocketSet* set_;
    std::list<tcp::socket*>::iterator it_;
  };

  std::size_t size() const { return sockets_.size(); }
  void close_all() {
    error_code ignored;  // the peer may have closed first
    for (auto* s : sockets_) s->close(ignored);
  }

 private:
  std::list<tcp::socket*> sockets_;
};

}  // namespace ntp
