// Inputs the fuzz targets (fuzz/) turned up, kept as regression tests. Each runs
// on a thread with a small, fixed stack, so a parser that recurses once per JSON
// nesting level fails here in every build, not only where the stack happens to
// be too small (a sanitizer build, a smaller thread stack).
#include <gtest/gtest.h>
#include <pthread.h>

#include <functional>
#include <string>

#include "ntp/message.hpp"

namespace ntp {
namespace {

// Runs `fn` on a thread with a 512 KiB stack: ample for the parsers, and about a
// tenth of what 32k nesting levels take when something recurses on them.
void run_on_small_stack(std::function<void()> fn) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 512 * 1024), 0);
  pthread_t thread;
  auto body = [](void* arg) -> void* {
    (*static_cast<std::function<void()>*>(arg))();
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&thread, &attr, body, &fn), 0);
  pthread_attr_destroy(&attr);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
}

std::string nested_array(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

// fuzz_message: a peer's register/registered frame with an app nested as deep as
// a 64 KiB frame allows. decode() copied each app entry, and copying a json value
// recurses per level: a stack overflow (ASan: stack-overflow in basic_json's
// copy constructor) before a single field was checked.
TEST(FuzzFindings, DecodeDeeplyNestedAppNeedsLittleStack) {
  for (std::string type : {"register", "registered"}) {
    std::string body = R"({"type":")" + type + R"(","apps":[{"name":)";
    const std::size_t depth = (kMaxFrame - body.size() - 4) / 2;
    body += nested_array(depth) + "}]}";
    ASSERT_LE(body.size(), kMaxFrame);
    bool ok = true;
    std::string error;
    run_on_small_stack([&] {
      Message m;
      ok = decode(body, m, error);
    });
    EXPECT_FALSE(ok) << type;
    EXPECT_EQ(error, "name: expected a string") << type;
  }
}

}  // namespace
}  // namespace ntp
