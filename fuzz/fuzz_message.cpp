// libFuzzer target: ntp::decode, the control-message parser every frame body
// from the network goes through, plus the encode/decode round trip.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ntp/message.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "fuzz_message: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  ntp::Message m;
  std::string error;
  if (!ntp::decode(body, m, error)) {
    // The caller logs the reason; a refusal without one is a bug.
    if (error.empty()) fail("decode refused without saying why", body);
    return 0;
  }

  // What we decoded must encode to something we decode again, to the same message.
  const std::string once = ntp::encode(m);
  ntp::Message again;
  std::string again_error;
  if (!ntp::decode(once, again, again_error)) fail("encode() made a body decode() refuses", once);
  if (again.index() != m.index()) fail("the round trip changed the message type", once);
  const std::string twice = ntp::encode(again);
  if (twice != once) fail("the round trip changed the message", once + " vs " + twice);
  // Everything decode() accepts must fit in one frame when sent back.
  if (once.size() > ntp::kMaxFrame) fail("re-encoded message larger than a frame", once);
  return 0;
}
