#include "ntp/live_streams.hpp"

namespace ntp {

LiveStreams::Entry::Entry(LiveStreams& set, tcp::socket& a, tcp::socket& b, std::string owner)
    : set_(set), it_(set.pairs_.insert(set.pairs_.end(), Pair{&a, &b, std::move(owner)})) {}

LiveStreams::Entry::~Entry() {
  set_.pairs_.erase(it_);
  if (set_.pairs_.empty()) set_.empty_.cancel();
}

awaitable<void> LiveStreams::wait_empty(steady_clock::duration grace) {
  if (pairs_.empty()) co_return;
  empty_.expires_after(grace);
  co_await empty_.async_wait(nothrow);
}

void LiveStreams::close_all() {
  error_code ignored;  // the peer may have closed first
  for (auto& p : pairs_) {
    p.a->close(ignored);
    p.b->close(ignored);
  }
}

std::size_t LiveStreams::close_owned_if(const std::function<bool(const std::string&)>& revoked) {
  std::size_t n = 0;
  error_code ignored;  // the peer may have closed first
  for (auto& p : pairs_) {
    if (!revoked(p.owner)) continue;
    p.a->close(ignored);
    p.b->close(ignored);
    ++n;
  }
  return n;
}

}  // namespace ntp
