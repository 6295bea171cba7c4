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
        : set_(&set), socket_(&s), it_(set.entries_.insert(set.entries_.end(), this)) {}
    ~Entry() { release(); }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    // The socket is no longer the set's business (e.g. it is being spliced).
    void release() {
      if (set_) set_->entries_.erase(it_);
      set_ = nullptr;
    }

   private:
    friend class SocketSet;
    SocketSet* set_;
    tcp::socket* socket_;
    std::list<Entry*>::iterator it_;
  };

  std::size_t size() const { return entries_.size(); }

  void close_all() {
    error_code ignored;  // the peer may have closed first
    for (auto* e : entries_) e->socket_->close(ignored);
  }

  // Closes the socket registered first and forgets it at once, so the next call
  // closes the next one even before the first owner has unwound.
  void close_oldest() {
    if (entries_.empty()) return;
    auto* e = entries_.front();
    error_code ignored;  // the peer may have closed first
    e->socket_->close(ignored);
    e->release();
  }

 private:
  std::list<Entry*> entries_;
};

}  // namespace ntp
