// The client's end of one user's stream: reach the LocalApp, tell the server,
// splice.
#pragma once

#include <cstdint>
#include <string>

#include "ntp/config.hpp"
#include "ntp/live_streams.hpp"
#include "ntp/message.hpp"
#include "ntp/splice.hpp"
#include "ntp/stream.hpp"

namespace ntp {

inline constexpr auto kLocalConnectTimeout = std::chrono::seconds(5);
// How long `connected` waits for the app's first bytes to go with them (one
// wake-up of the server, not two). Bytes from the user flow meanwhile; only a
// user who sends more than the server's 64 KiB send-ahead before the app
// answers waits, once, for up to this long.
inline constexpr auto kConnectedHold = std::chrono::milliseconds(10);

// `data` has just received a start frame for `app`. Connects to app.local, answers
// "connected" (or the error, so the server can tell the user why), then splices
// until both ends are done. `connected` goes with the app's first bytes when
// they come within kConnectedHold.
awaitable<void> serve_local_app(const LocalApp& app, Stream data, const msg::Start& start,
                                const std::string& group_context, LiveStreams& streams,
                                SpliceMode mode);

}  // namespace ntp
