// Control messages of protocol v1 (docs/protocol.md) as plain structs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ntp/frame.hpp"

namespace ntp::msg {

struct Challenge {
  std::string nonce;
};
struct Login {
  std::string group, nonce, proof;
};
struct Welcome {
  std::string session, proof;
  int heartbeat_timeout_s = 0;
};
struct DataLogin {
  std::string session;
  std::uint64_t seq = 0;  // this data connection's number within the session: never reused
  std::string proof;
};
struct DataOk {
  std::string proof;
};
struct AppRequest {
  AppRequest() = default;
  AppRequest(std::string n, std::uint16_t port, std::optional<std::uint32_t> conns = {},
             std::optional<std::uint64_t> rate = {}, std::vector<std::string> cidrs = {})
      : name(std::move(n)),
        remote_port(port),
        max_conns(conns),
        bandwidth(rate),
        allow_cidrs(std::move(cidrs)) {}

  std::string name;
  std::uint16_t remote_port = 0;
  // Optional limits (apps.json), applied by the server within the group's.
  std::optional<std::uint32_t> max_conns;
  std::optional<std::uint64_t> bandwidth;   // bytes/s
  std::vector<std::string> allow_cidrs;     // checked again by the server
  std::string type = "tcp";                 // or "udp"
  std::optional<std::uint32_t> max_flows;   // udp: flows at once
  std::optional<std::uint32_t> udp_idle_s;  // udp: a flow ends after this long idle
  // `start` names the user's address and the remote port's own (the client
  // writes them to the app as a PROXY protocol header).
  bool addresses = false;
  bool operator==(const AppRequest&) const = default;
};
struct Register {
  std::vector<AppRequest> apps;
};
struct AppResult {
  std::string name;
  std::uint16_t remote_port = 0;  // the port bound, when error is empty
  std::string error;
};
struct Registered {
  std::vector<AppResult> apps;
};
struct Ping {};
struct Pong {};
struct NeedData {
  std::uint32_t count = 1;
};
struct Start {
  std::string app;
  std::uint64_t conn = 0;
  // With an app that asked for addresses: "198.51.100.9:40112" and the remote
  // port's "203.0.113.1:6022" (IPv6 in brackets); empty otherwise.
  std::string user, remote;
};
struct Connected {};
struct Error {
  std::string message;
};

}  // namespace ntp::msg

namespace ntp {

// Idle data connections per session. The client keeps this many ready; the
// server closes any beyond it, so a burst of dial-backs (need_data) settles back.
inline constexpr std::size_t kDataPoolSize = 8;
// The most data connections one need_data asks for (a larger count is not a
// well-formed message).
inline constexpr std::uint32_t kMaxNeedData = 1024;

using Message = std::variant<msg::Challenge, msg::Login, msg::Welcome, msg::DataLogin, msg::DataOk,
                             msg::Register, msg::Registered, msg::Ping, msg::Pong, msg::NeedData,
                             msg::Start, msg::Connected, msg::Error>;

std::string encode(const Message& m);

// false, with `error` saying what was wrong, for anything but a well-formed message.
bool decode(std::string_view body, Message& out, std::string& error);

// One frame in, decoded. `buf` is the caller's reusable frame buffer.
template <class Stream>
awaitable<error_code> read_message(Stream& s, std::string& buf, Message& out) {
  if (auto ec = co_await read_frame(s, buf)) co_return ec;
  std::string why;
  if (!decode(buf, out, why)) co_return make_error_code(ProtocolError::bad_message);
  co_return error_code{};
}

// GCC 12 destroys a braced aggregate temporary twice when it appears in a co_await
// expression (`co_await write_message(s, msg::Start{...})` double-frees), so callers
// pass named messages, and errors go through write_error, which takes a string.
template <class Stream>
awaitable<error_code> write_message(Stream& s, const Message& m) {
  const auto frame = encode(m);
  co_return co_await write_frame(s, frame);
}

template <class Stream>
awaitable<error_code> write_error(Stream& s, std::string message) {
  const Message m = msg::Error{std::move(message)};
  co_return co_await write_message(s, m);
}

// Reads one message and requires it to be a T (an Error from the peer is returned in
// `peer_error` so callers can show the peer's reason).
template <class T, class Stream>
awaitable<error_code> expect_message(Stream& s, std::string& buf, T& out,
                                     std::string* peer_error = nullptr) {
  Message m;
  if (auto ec = co_await read_message(s, buf, m)) co_return ec;
  if (auto* t = std::get_if<T>(&m)) {
    out = std::move(*t);
    co_return error_code{};
  }
  if (auto* e = std::get_if<msg::Error>(&m); e && peer_error) *peer_error = e->message;
  co_return make_error_code(ProtocolError::unexpected_message);
}

}  // namespace ntp
