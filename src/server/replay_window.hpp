// ReplayWindow: the data-connection numbers (`seq`) a session has accepted, so a
// recorded data handshake cannot be played again.
#pragma once

#include <bitset>
#include <cstdint>

namespace ntp {

class ReplayWindow {
 public:
  // How far behind the newest number one may arrive. The client numbers a data
  // connection when it is connected and has at most 256 dialing, so an honest
  // number is never this far behind.
  static constexpr std::uint64_t kSize = 1024;

  // true the first time `seq` is offered; false for a repeat, or for a number too
  // far behind the newest to tell (kSize or more).
  bool accept(std::uint64_t seq);

 private:
  std::bitset<kSize> seen_;  // bit n % kSize: n accepted, for n in (newest - kSize, newest]
  std::uint64_t newest_ = 0;
  bool empty_ = true;
};

}  // namespace ntp
