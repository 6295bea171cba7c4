// Listening sockets: opened the same way everywhere, and an accept that survives
// running out of file descriptors.
#pragma once

#include <optional>
#include <string>

#include "ntp/asio.hpp"

namespace ntp {

// SO_REUSEADDR (a restarted daemon rebinds at once), dual-stack on "::", backlog 1024.
// TCP_NODELAY and SO_KEEPALIVE are set on the listener: accepted sockets inherit
// them, which saves two setsockopt calls per connection.
tcp::acceptor open_listener(const asio::any_io_executor& ex, const tcp::endpoint& ep,
                            error_code& ec);

struct Accepted {
  tcp::socket socket;
  tcp::endpoint peer;  // from accept() itself: no getpeername per connection
};

// The next connection, or nullopt once the acceptor is closed. On EMFILE and the
// like it backs off briefly (logging, rate-limited, under `context`) instead of
// spinning, so existing streams are untouched.
awaitable<std::optional<Accepted>> accept_next(tcp::acceptor& acceptor, const std::string& context);

// The endpoint for "host" + port when host is an IP literal; nullopt for DNS names.
std::optional<tcp::endpoint> literal_endpoint(const std::string& host, std::uint16_t port);

// Resolves host:port (IP literals without a resolver round trip).
awaitable<std::pair<error_code, std::vector<tcp::endpoint>>> resolve(const std::string& host,
                                                                     std::uint16_t port);

// Connects to the first endpoint that answers, within `timeout`.
awaitable<error_code> connect_any(tcp::socket& s, const std::vector<tcp::endpoint>& eps,
                                  steady_clock::duration timeout);

// Connects `s` to the Unix stream socket at `path` (a local app on one): the
// socket then carries its descriptor, and a splice treats it as any other.
awaitable<error_code> connect_unix(tcp::socket& s, const std::string& path,
                                   steady_clock::duration timeout);

}  // namespace ntp
