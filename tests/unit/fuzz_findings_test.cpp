// Inputs the fuzz targets (fuzz/) turned up, kept as regression tests. Each runs
// on a thread with a small, fixed stack, so a parser that recurses once per JSON
// nesting level fails here in every build, not only where the stack happens to
// be too small (a sanitizer build, a smaller thread stack).
#include <gtest/gtest.h>
#include <pthread.h>

#include <functional>
#include <string>

#include "ntp/config.hpp"
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

// fuzz_server_config / fuzz_client_config: a value of the wrong type that is a
// deeply nested array. The error message shows the value (Checker::problem ->
// shown() -> json::dump()), and dump() recurses per level: a stack overflow
// instead of "server.json: bind: expected a string, got [[[[...". Config files
// are the operator's, but a typo'd or generated file must get an error, not a
// crash. Fails until src/common/config.cpp stops dumping unbounded nesting.
TEST(FuzzFindings, ConfigWithDeeplyNestedValueIsAnError) {
  const std::string server = R"({"bind":)" + nested_array(30000) + "}";
  const std::string client = R"({"group":)" + nested_array(30000) +
                             R"(,"token":"t","apps":[{"name":"a","local":"h:1","remote_port":0}]})";
  bool server_error = false, client_error = false;
  run_on_small_stack([&] {
    try {
      parse_server_config(server, "server.json");
    } catch (const ConfigError&) {
      server_error = true;
    }
    try {
      parse_client_config(client, "apps.json", std::nullopt);
    } catch (const ConfigError&) {
      client_error = true;
    }
  });
  EXPECT_TRUE(server_error);
  EXPECT_TRUE(client_error);
}

// fuzz_server_config / fuzz_client_config: a number too large for a double.
// nlohmann::json::parse throws json::out_of_range (406, "number overflow") for
// it, not json::parse_error, and parse_document() catches only parse_error: the
// exception escapes, and `ntp-server --check -c f.json` with
// {"heartbeat_timeout_s": 1e999} aborts (SIGABRT, exit 134) instead of exiting 2
// with the file's name. Fails until src/common/config.cpp catches json::exception.
TEST(FuzzFindings, ConfigWithOverflowingNumberIsAnError) {
  try {
    parse_server_config(R"({"heartbeat_timeout_s": 1e999})", "server.json");
    ADD_FAILURE() << "accepted 1e999";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.problems().size(), 1u);
    EXPECT_TRUE(e.problems()[0].starts_with("server.json: ")) << e.problems()[0];
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ConfigError: " << e.what();
  }
  try {
    parse_client_config(
        R"({"group":"g","token":"t","heartbeat_interval_s":-1e400,"apps":[{"name":"a","local":"h:1","remote_port":0}]})",
        "apps.json", std::nullopt);
    ADD_FAILURE() << "accepted -1e400";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.problems().size(), 1u);
    EXPECT_TRUE(e.problems()[0].starts_with("apps.json: ")) << e.problems()[0];
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ConfigError: " << e.what();
  }
}

}  // namespace
}  // namespace ntp
