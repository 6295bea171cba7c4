#include "replay_window.hpp"

namespace ntp {

bool ReplayWindow::accept(std::uint64_t seq) {
  if (empty_ || seq > newest_) {
    if (empty_ || seq - newest_ >= kSize) {
      seen_.reset();
    } else {
      for (auto n = newest_ + 1; n < seq; ++n) seen_.reset(n % kSize);  // not seen yet
    }
    empty_ = false;
    newest_ = seq;
    seen_.set(seq % kSize);
    return true;
  }
  if (newest_ - seq >= kSize || seen_.test(seq % kSize)) return false;
  seen_.set(seq % kSize);
  return true;
}

}  // namespace ntp
